"""Nested and overlapping entities (issue 23 item 6): nerkit's nested model, nerkit's flat model and spaCy's span
categorizer on GENIA (nested), ADE (overlapping) and the Terms-of-Service clauses (long, two kinds at once).

    python bench/nested.py                                   # everything (hours on 2 CPU cores)
    python bench/nested.py --datasets ade --systems nested,spancat
    python bench/nested.py --limit 40 --dev-limit 20 --test-limit 30 --steps 20 --out /tmp/nb   # minutes: a check
    python bench/nested.py --report            # the tables again from the cached runs of these settings

Systems, trained on the same train/valid files and tested on the same test texts:

- "nested": ``nerkit train`` with no options (``--nested auto``: a nested model where train nests; its span head
  and the decoder chosen on dev);
- "layers": the same with ``--nested-head layers`` (the nested model's tag layers alone, the previous design);
- "flat": the same with ``--nested off`` (a flat model on the outermost entities);
- "spancat": spaCy's span categorizer, its own config (``spacy init config --pipeline spancat --optimize
  efficiency``, CPU) and CLI (``spacy train``); the splits are converted to DocBins (``spacy.blank("en")``
  tokenization, every span in ``doc.spans["sc"]`` through ``doc.char_span(..., alignment_mode="expand")``; spans
  that cannot be aligned are counted and left out, spans whose edges moved to token edges are counted and kept).
  Its config's suggester proposes 1-3-token n-grams: the report says how many test spans it can reach at all (its
  recall ceiling; hardly a clause).

Every system's test predictions are scored by one scorer, ``nerkit.evaluation.score_sets`` over exact
``(type, start, end)`` character-offset sets per record: micro P/R/F1, per type, and outermost / inner. The nerkit
models are exported (``nerkit export``) and their test predictions come from the int8 ONNX Tagger; the share of the
first 200 test texts on which it gives the same entities as the torch Tagger is reported. For the clauses also:

- overlap scores (``overlap_scores``): a gold clause is found when a predicted clause of the same type covers at
  least 50 % of its characters; a predicted clause is correct when it covers at least 50 % of the characters of a gold
  clause of its type (the same relation, counted from the predicted side; a prediction may be longer than the
  clause it finds, so the exact scores stay beside these);
- "two kinds at once" (``two_kinds``): gold pairs of entities with the same range and two different types, and how
  many of those pairs were found as both (exactly; and by overlap for the clauses).

Training time is the wall clock of the training command (a subprocess); words/s is the best of 3 passes over the
test texts (words: whitespace-split) with the int8 Tagger for nerkit and ``nlp.pipe`` for spaCy. Each run is itself a
subprocess; finished runs are cached in OUT/nested_runs/runs.jsonl (an interrupted benchmark resumes), models under
runs/nested_bench/. Writes OUT/nested.md and OUT/nested.json.
"""
# size: one benchmark script (subsets, three systems, the scorers, the report) so that it runs as a file
from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from itertools import combinations
from pathlib import Path

import jobs  # bench/jobs.py, beside this script

from nerkit.evaluation import OVERLAP, covers, overlap_scores  # noqa: F401  (overlap_scores: this bench's scorer)

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ["genia-small", "ade", "tos-clauses"]
SYSTEMS = ["nested", "layers", "flat", "spancat"]
# What a system's runs were made with: a cached run of another design of the same system is not reused.
# (flat: since sparse data draws its entity-free windows anew each epoch; genia-small and ade are not sparse, their
# earlier flat runs were marked as such by hand, tos-clauses' runs again.)
# (nested, span-head-near: an entity's near neighbours of its type left out of the span loss and of decoding, and
# span-head-unsure before it: unannotated inner entities left out of the loss; span-head-near-reused: the same
# model, its dev choices on one network run of dev (7bc6f01: the cache had been dead since 6b124da, so the
# span-head-near rows' training times are those of a network run per trial); span-head-epochs-x2: the same model
# trained twice the derived epochs, train.SPAN_EPOCHS_X, session 19; span-head-dropout: its encoder trained with
# dropout 0.1, TrainConfig.span_dropout, session 25, with the merged decoder of session 23.)
DESIGNS = {"nested": "span-head-dropout", "layers": "tag-layers", "flat": "sparse-epochs"}
OVERLAP_DATASETS = ("tos-clauses",)  # long clauses: edges are a matter of taste, coverage is what a reader needs
EQUAL_TEXTS = 200  # int8 against torch on the first 200 test texts
SPANS_KEY = "sc"  # spancat's default spans_key
SETTINGS = ("limit", "dev_limit", "test_limit", "steps", "seed")  # what makes two runs of one system comparable

Span = tuple  # (type, start, end), character offsets


# ---------------------------------------------------------------- data

def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file (one object per non-empty line)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{n}: invalid JSON ({exc.msg})") from None
    return out


def _sample(records: list[dict], n: int | None, seed: str) -> list[dict]:
    """A seeded sample of ``n`` records in their original order (all of them when ``n`` is None)."""
    if n is None or n >= len(records):
        return records
    keep = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in keep]


def make_split(data: Path, ds: str, work: Path, settings: dict) -> Path:
    """WORK/splits/DS/<settings>/{train,valid,test}.jsonl: the (sub)sets every system of this setting uses."""
    tag = "-".join(f"{k}{settings[k]}" for k in ("limit", "dev_limit", "test_limit", "seed") if settings.get(k) is not None)
    d = work / "splits" / ds / (tag or "full")
    if (d / "test.jsonl").is_file():
        return d
    d.mkdir(parents=True, exist_ok=True)
    seed = settings.get("seed", 13)
    for split, n in (("train", settings.get("limit")), ("valid", settings.get("dev_limit")),
                     ("test", settings.get("test_limit"))):
        recs = read_jsonl(data / ds / f"{split}.jsonl")
        recs = _sample(recs, n, f"{seed}-{ds}-{split}")
        _write(d / f"{split}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    return d


def _write(path: Path, text: str) -> None:
    """Write a file atomically (a reader never sees half a report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def gold_sets(records: list[dict]) -> list[set[Span]]:
    """The gold ``(type, start, end)`` set of each record."""
    return [{(e["label"], e["start"], e["end"]) for e in r.get("entities", [])} for r in records]


def words_of(texts: list[str]) -> int:
    """Whitespace-split words: the unit of words/s for every system."""
    return sum(len(t.split()) for t in texts)


# ---------------------------------------------------------------- scoring

def exact_scores(gold: list[set[Span]], pred: list[set[Span]]) -> dict:
    """nerkit's scorer over exact sets: micro P/R/F1, per type, outermost and inner (without the error breakdown)."""
    from nerkit.evaluation import score_sets

    rep = score_sets(gold, pred)
    return {k: rep[k] for k in ("precision", "recall", "f1", "per_type", "nested")}


def two_kinds(gold: list[set[Span]], pred: list[set[Span]], threshold: float | None = None) -> dict:
    """Gold pairs of spans with the same range and two types, and how many were found as both: exactly, and (given
    ``threshold``) each of the two covered by a prediction of its type as in ``overlap_scores``. A range with three
    types makes three pairs."""
    pairs = found = found_overlap = 0
    for g, p in zip(gold, pred):
        by_range: dict[tuple[int, int], list[str]] = {}
        for t, a, b in g:
            by_range.setdefault((a, b), []).append(t)
        for (a, b), types in by_range.items():
            for s, t in combinations(sorted(types), 2):
                pairs += 1
                found += (s, a, b) in p and (t, a, b) in p
                if threshold is not None:
                    found_overlap += all(any(covers(y, (k, a, b), threshold) for y in p) for k in (s, t))
    out = {"pairs": pairs, "found_both": found}
    if threshold is not None:
        out["found_both_overlap"] = found_overlap
    return out


def score_all(ds: str, gold: list[set[Span]], pred: list[set[Span]]) -> dict:
    """Every score the report shows for one data set's test predictions."""
    clauses = ds in OVERLAP_DATASETS
    out = {"exact": exact_scores(gold, pred),
           "two_kinds": two_kinds(gold, pred, OVERLAP if clauses else None)}
    if clauses:
        out["overlap"] = overlap_scores(gold, pred)
    return out


# ---------------------------------------------------------------- spaCy

def to_docbin(records: list[dict], nlp, key: str = SPANS_KEY):
    """A DocBin of ``records`` tokenized by ``nlp`` with every span in ``doc.spans[key]`` (``alignment_mode=
    "expand"``), and counts: spans, kept, unaligned (no token under them: left out), expanded (edges moved)."""
    from spacy.tokens import DocBin

    db = DocBin(store_user_data=False)
    stats = Counter(spans=0, kept=0, unaligned=0, expanded=0)
    for r in records:
        doc = nlp.make_doc(r["text"])
        spans = []
        for e in r.get("entities", []):
            stats["spans"] += 1
            sp = doc.char_span(e["start"], e["end"], label=e["label"], alignment_mode="expand")
            if sp is None or len(sp) == 0 or not sp.text.strip():
                stats["unaligned"] += 1
                continue
            stats["expanded"] += (sp.start_char, sp.end_char) != (e["start"], e["end"])
            spans.append(sp)
        doc.spans[key] = spans
        stats["kept"] += len(spans)
        db.add(doc)
    return db, dict(stats)


def suggester_coverage(records: list[dict], nlp, sizes: list[int]) -> dict:
    """How many gold spans the n-gram suggester can propose at all (their expanded token length is in ``sizes``):
    spancat's recall ceiling."""
    n = ok = 0
    for r in records:
        doc = nlp.make_doc(r["text"])
        for e in r.get("entities", []):
            n += 1
            sp = doc.char_span(e["start"], e["end"], alignment_mode="expand")
            ok += sp is not None and len(sp) in sizes
    return {"spans": n, "proposable": ok, "sizes": sizes}


def _suggester_sizes(config: Path) -> list[int]:
    """The n-gram sizes of the spancat suggester in a spaCy config (empty if it is not the n-gram suggester)."""
    from spacy.util import load_config

    sug = load_config(config)["components"]["spancat"]["suggester"]
    return list(sug.get("sizes", [])) if "ngram_suggester" in sug.get("@misc", "") else []


def run_spancat(split: Path, out: Path, steps: int | None, threads: int) -> dict:
    """Convert, ``spacy init config``, ``spacy train`` (timed); returns the model path, time and conversion counts."""
    import spacy

    nlp = spacy.blank("en")
    out.mkdir(parents=True, exist_ok=True)
    conv = {}
    for name in ("train", "valid", "test"):
        db, conv[name] = to_docbin(read_jsonl(split / f"{name}.jsonl"), nlp)
        db.to_disk(out / f"{name}.spacy")
    cfg = out / "config.cfg"
    jobs.check([sys.executable, "-m", "spacy", "init", "config", str(cfg), "--lang", "en", "--pipeline", "spancat",
                "--optimize", "efficiency", "--force"], threads)
    extra = []
    if steps:  # quick checks only (main refuses --steps without --limit)
        extra = ["--training.max_steps", str(steps), "--training.eval_frequency", str(max(1, steps // 2))]
    t0 = time.time()
    jobs.check([sys.executable, "-m", "spacy", "train", str(cfg), "--paths.train", str(out / "train.spacy"),
                "--paths.dev", str(out / "valid.spacy"), "--output", str(out / "model"), *extra], threads)
    wall = time.time() - t0
    best = out / "model" / "model-best"
    model = best if best.is_dir() else out / "model" / "model-last"
    sizes = _suggester_sizes(cfg)
    return {"model": str(model), "wall_s": round(wall, 1), "conversion": conv,
            "suggester": suggester_coverage(read_jsonl(split / "test.jsonl"), nlp, sizes)}


def spacy_predict(model: Path, texts: list[str]) -> tuple[list[set[Span]], float]:
    """spaCy's test spans (character offsets) and its words/s, best of 3 ``nlp.pipe`` passes."""
    import spacy

    nlp = spacy.load(model)
    preds, best = [], float("inf")
    for i in range(3):
        t0 = time.perf_counter()
        docs = list(nlp.pipe(texts))
        best = min(best, time.perf_counter() - t0)
        if i == 0:
            preds = [{(s.label_, s.start_char, s.end_char) for s in d.spans.get(SPANS_KEY, [])} for d in docs]
    return preds, words_of(texts) / best if best > 0 else 0.0


# ---------------------------------------------------------------- nerkit

def run_nerkit(split: Path, out: Path, system: str, steps: int | None, threads: int) -> dict:
    """``nerkit train`` (timed), then ``nerkit export``; returns both directories and nerkit.json's figures."""
    if out.exists():
        shutil.rmtree(out)  # ours (runs/nested_bench): a half-written model of an interrupted run
    extra = ({"flat": ["--nested", "off"], "layers": ["--nested-head", "layers"]}.get(system, [])
             + (["--max-steps", str(steps)] if steps else []))
    t0 = time.time()
    jobs.check([sys.executable, "-m", "nerkit.cli", "train", "--train", str(split / "train.jsonl"), "--dev",
                str(split / "valid.jsonl"), "--test", str(split / "test.jsonl"), "--output", str(out / "model"),
                *extra], threads)
    wall = time.time() - t0
    jobs.check([sys.executable, "-m", "nerkit.cli", "export", str(out / "model"), "--output", str(out / "int8")],
               threads)
    meta = json.loads((out / "model" / "nerkit.json").read_text(encoding="utf-8"))
    test = meta["metrics"]["test"]
    return {"model": str(out / "model"), "int8": str(out / "int8"), "wall_s": round(wall, 1),
            "train_s": meta.get("train_seconds"), "total_s": meta.get("total_seconds"), "steps_done": meta.get("steps"),
            "epochs": meta["train_args"].get("epochs"), "lr": meta["train_args"].get("lr"),
            # whether --nested auto did train a nested model (a small sample may not nest)
            "layers": (meta.get("nested") or {}).get("layers", 1),
            "decoder": (meta.get("nested") or {}).get("decoder"),
            "nerkit_test": {"f1": test["f1"], "precision": test["precision"], "recall": test["recall"],
                            **({"nested": test["nested"]} if "nested" in test else {})}}


def _sets(entities) -> list[set[Span]]:
    return [{(e.label, e.start, e.end) for e in ents} for ents in entities]


def nerkit_predict(model: Path, int8: Path, texts: list[str]) -> tuple[list[set[Span]], float, dict]:
    """int8 test spans, int8 words/s (best of 3) and the shares of the first 200 texts where torch gives the same
    entities as int8 and as the fp32 ONNX graph (which tells quantization from export)."""
    from nerkit.predict import Tagger

    tagger = Tagger.load(int8, backend="onnx-int8")
    preds, best = [], float("inf")
    for i in range(3):
        t0 = time.perf_counter()
        ents = tagger(texts)
        best = min(best, time.perf_counter() - t0)
        if i == 0:
            preds = _sets(ents)
    head = texts[:EQUAL_TEXTS]
    torch_preds = _sets(Tagger.load(model, backend="torch")(head)) if head else []
    fp32 = _sets(Tagger.load(int8, backend="onnx")(head)) if head else []

    def share(other: list[set[Span]]) -> float:
        return sum(a == b for a, b in zip(other, torch_preds)) / len(head) if head else 1.0

    equal = {"int8_equals_torch": share(preds), "onnx_equals_torch": share(fp32)}
    return preds, words_of(texts) / best if best > 0 else 0.0, equal


# ---------------------------------------------------------------- runs

def key(job: dict) -> str:
    """The cache key of a run: data set, system and the settings that change its numbers."""
    return jobs.key(job, ("design", *SETTINGS))


def run_job(job: dict, data: Path, work: Path, threads: int) -> dict:
    """One data set x system: train, predict the test texts, score (called in a subprocess by ``execute``)."""
    split = make_split(data, job["ds"], work, job)
    test = read_jsonl(split / "test.jsonl")
    texts = [r["text"] for r in test]
    gold = gold_sets(test)
    out = work / "models" / job["ds"] / Path(split).name / job["system"]
    if job["system"] == "spancat":
        res = run_spancat(split, out, job.get("steps"), threads)
        pred, wps = spacy_predict(Path(res.pop("model")), texts)
    else:
        res = run_nerkit(split, out, job["system"], job.get("steps"), threads)
        pred, wps, equal = nerkit_predict(Path(res.pop("model")), Path(res.pop("int8")), texts)
        res.update(equal)
    return {**job, **res, **score_all(job["ds"], gold, pred), "words_per_s": round(wps, 1),
            "test_texts": len(texts), "test_words": words_of(texts)}


def execute(job: dict, args) -> dict:
    """Run one job in a subprocess of this script; its JSON result, or an error record."""
    return jobs.execute(__file__, job, args)


def load_runs(path: Path) -> dict[str, dict]:
    """Finished runs by key (the last of each; failed ones are not cached)."""
    return jobs.load_runs(path, key)


# ---------------------------------------------------------------- report

def _pct(x: float | None) -> str:
    return "" if x is None else f"{x * 100:.1f}"


def _both(d: dict | None, name: str) -> str:
    if not d:
        return ""
    found = d["found_both"] if name == "exact" else d.get("found_both_overlap")
    if found is None:
        return ""
    return f"{found} of {d['pairs']}" if d["pairs"] else "no pairs"


def _label(run: dict) -> str:
    """A run's system, with its design where it is not the system's current one (an earlier run kept in the cache)."""
    system = run["system"]
    if run.get("design") == DESIGNS.get(system):
        return system
    earlier = run.get("design") or ("tag layers" if system == "nested" else "before sparse epochs")
    return f"{system} (earlier: {earlier})"


def markdown(runs: list[dict], note: str, machine_line: str) -> str:
    """The report: one row per data set x system, then per-category exact and overlap F1 where overlap was scored."""
    lines = [note, "", f"Machine: {machine_line}.", "",
             "| data set | system | test F1 (P / R) | outermost F1 | inner F1 (support) | overlap F1 (P / R) "
             "| two kinds at once, found as both: exact | by overlap | train wall s | words/s | int8 = torch | notes |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    order = {s: i for i, s in enumerate(SYSTEMS)}
    runs = sorted(runs, key=lambda r: (DATASETS.index(r["ds"]) if r["ds"] in DATASETS else 99, order.get(r["system"], 9)))
    for r in runs:
        ex, ov, nest = r["exact"], r.get("overlap"), r["exact"]["nested"]
        notes = []
        if "conversion" in r:
            c = r["conversion"]["train"]
            notes.append(f"train spans unaligned {c['unaligned']}, edges expanded {c['expanded']} of {c['spans']}")
            s = r["suggester"]
            if s["spans"]:
                notes.append(f"suggester sizes {_sizes(s['sizes'])} reach {s['proposable']} of {s['spans']} test spans")
        if "onnx_equals_torch" in r:
            notes.append(f"fp32 ONNX = torch {_pct(r['onnx_equals_torch'])} %")
        if "layers" in r:
            notes.append(f"{r['layers']} tag layer{'s' * (r['layers'] > 1)}")
        if "nerkit_test" in r:
            notes.append(f"nerkit.json test F1 {_pct(r['nerkit_test']['f1'])}")
        if r.get("decoder"):
            notes.append(f"span head, decoder {r['decoder']}")
        if nest["inner"]["support"]:
            notes.append(f"inner recall {_pct(nest['inner']['recall'])} %")
        eq = _pct(r.get("int8_equals_torch")) + " %" if "int8_equals_torch" in r else ""
        over = f"{_pct(ov['f1'])} ({_pct(ov['precision'])} / {_pct(ov['recall'])})" if ov else ""
        lines.append(
            f"| {r['ds']} | {_label(r)} | {_pct(ex['f1'])} ({_pct(ex['precision'])} / {_pct(ex['recall'])}) "
            f"| {_pct(nest['outermost']['f1'])} | {_pct(nest['inner']['f1'])} ({nest['inner']['support']}) "
            f"| {over} "
            f"| {_both(r['two_kinds'], 'exact')} | {_both(r['two_kinds'], 'overlap')} | {r['wall_s']} "
            f"| {r['words_per_s']:,.0f} | {eq} | {'; '.join(notes)} |")
    for ds in sorted({r["ds"] for r in runs if "overlap" in r}, key=DATASETS.index):
        mine = [r for r in runs if r["ds"] == ds]
        types = sorted({t for r in mine for t in (*r["exact"]["per_type"], *r["overlap"]["per_type"])})
        lines += ["", f"{ds}, per category: exact F1 / overlap F1 (gold test support):", "",
                  "| category | support | " + " | ".join(_label(r) for r in mine) + " |",
                  "| --- | ---: |" + " ---: |" * len(mine)]
        for t in types:
            support = max(r["overlap"]["per_type"].get(t, {}).get("support", 0) for r in mine)
            cells = [f"{_pct(r['exact']['per_type'].get(t, {}).get('f1', 0.0))} / "
                     f"{_pct(r['overlap']['per_type'].get(t, {}).get('f1', 0.0))}" for r in mine]
            lines.append(f"| {t} | {support} | " + " | ".join(cells) + " |")
    lines += ["", "Scores: exact (type, start, end) character-offset sets per test record, nerkit.evaluation.score_sets "
              "for every system (inner: inside another gold entity; found wherever predicted). Overlap: a gold span "
              f"is found when a prediction of its type covers >= {OVERLAP:.0%} of its characters; a prediction is "
              f"correct when it covers >= {OVERLAP:.0%} of a gold span of its type. Two kinds at once: gold pairs with "
              "the same range and two types, found as both. nerkit's predictions are the int8 ONNX Tagger's; "
              f"int8 = torch: share of the first {EQUAL_TEXTS} test texts with identical entities (torch with nerkit's "
              "default bf16 policy, see the machine line; fp32 ONNX = torch in the notes: the same for the unquantized "
              "graph). Train wall s: the training command's wall clock; words/s: whitespace words, best of 3 passes "
              "over the test texts."]
    return "\n".join(lines) + "\n"


def _sizes(sizes: list[int]) -> str:
    if not sizes:
        return "(not n-gram)"
    return f"{min(sizes)}-{max(sizes)}" if sizes == list(range(min(sizes), max(sizes) + 1)) else ",".join(map(str, sizes))


def write_report(runs: list[dict], out: Path, stem: str, note: str, machine_info: dict, machine_line: str) -> None:
    """OUT/STEM.md and OUT/STEM.json from finished runs (errors left out)."""
    runs = [r for r in runs if "error" not in r]
    _write(out / f"{stem}.md", markdown(runs, note, machine_line))
    _write(out / f"{stem}.json", json.dumps({"note": note, "machine": machine_info, "runs": runs}, indent=1) + "\n")


# ---------------------------------------------------------------- main

def speed_side_by_side(datasets: list[str], work: Path, data: Path, settings: dict, rounds: int = 3) -> list[dict]:
    """int8 words/s of the nerkit systems' exported models of each data set, measured in one process, passes
    alternating between the systems (best of ``rounds``): the ratio is not disturbed by what else ran when each
    training finished."""
    from machine import best_interleaved

    from nerkit.predict import Tagger

    rows = []
    for ds in datasets:
        split = make_split(data, ds, work, settings)
        texts = [r["text"] for r in read_jsonl(split / "test.jsonl")]
        taggers = {}
        for system in ("nested", "layers", "flat"):
            int8 = work / "models" / ds / split.name / system / "int8"
            if int8.is_dir():
                taggers[system] = Tagger.load(int8, backend="onnx-int8")
        best = best_interleaved({s: (lambda tagger=tagger: tagger(texts)) for s, tagger in taggers.items()}, rounds)
        wps = {s: round(words_of(texts) / t, 1) for s, t in best.items()}
        rows.append({"ds": ds, "words_per_s": wps, "texts": len(texts), "words": words_of(texts),
                     **({"nested_over_flat": round(wps["nested"] / wps["flat"], 3)} if {"nested", "flat"} <= set(wps)
                        else {})})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = jobs.parser(__doc__, "nested", DATASETS, SYSTEMS, "records (a seeded sample)")
    ap.add_argument("--speed", action="store_true",
                    help="only measure the cached nerkit models' int8 words/s side by side (OUT/nested_speed.json)")
    args = ap.parse_args(argv)
    if args.job:
        print(json.dumps(run_job(json.loads(args.job), args.data, args.work, args.threads)))
        return
    datasets, systems = jobs.chosen(ap, args, DATASETS, SYSTEMS,
                                    lambda ds: ("train.jsonl", "valid.jsonl", "test.jsonl"))
    sys.path.insert(0, str(ROOT / "bench"))
    from machine import describe, machine

    info = machine()
    args.machine = describe(info)
    settings = {"limit": args.limit, "dev_limit": args.dev_limit, "test_limit": args.test_limit,
                "steps": args.steps, "seed": args.seed}
    if args.speed:
        os.environ.setdefault("NERKIT_THREADS", str(args.threads))
        rows = speed_side_by_side(datasets, args.work, args.data, settings)
        _write(args.out / "nested_speed.json", json.dumps({"machine": info, "threads": args.threads, "runs": rows},
                                                           indent=2) + "\n")
        for r in rows:
            print(f"{r['ds']}: int8 words/s {r['words_per_s']}" + (f", nested / flat {r['nested_over_flat']:.2f}x"
                                                                   if "nested_over_flat" in r else ""))
        return
    cache = args.out / "nested_runs" / "runs.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = load_runs(cache)
    wanted = [{"ds": ds, "system": s, **({"design": DESIGNS[s]} if s in DESIGNS else {}), **settings}
              for ds in datasets for s in systems]
    todo = [] if args.report else [j for j in wanted if key(j) not in done]
    print(f"{len(todo)} runs to do ({len(done)} cached in {cache})", flush=True)
    failed = jobs.run_all(todo, cache, lambda job: execute(job, args), done, key, lambda res: (
        f"test F1 {_pct(res['exact']['f1'])} ({res['wall_s']:.0f} s training)"))
    runs = [r for r in done.values() if all(r.get(k) == settings[k] for k in SETTINGS)]
    note = jobs.note("nested", argv, len(runs), cache, settings)
    write_report(runs, args.out, args.stem, note, info, args.machine)
    print(markdown(runs, note, args.machine))
    jobs.exit_if(failed)


if __name__ == "__main__":
    main()
