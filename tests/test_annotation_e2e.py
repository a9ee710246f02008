"""End to end, through the CLI: two simulated annotators' Label Studio exports of the same 50 texts
-> `nerkit agree` -> `nerkit adjudicate` (review file, decided by a simulated person, `--apply`)
-> `nerkit convert` -> `nerkit train` (tiny random BERT) -> `nerkit evaluate`."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PEOPLE = ["John Smith", "Mary Jones", "Anna Berg", "Tom Hardy", "Lena Fischer", "Omar Haddad"]
CITIES = ["Paris", "London", "Berlin", "New York", "Cairo", "San Francisco"]
ORGS = ["Google", "Acme Corp", "the United Nations", "Siemens", "Red Cross"]
TEMPLATES = [
    "{PER} visited {LOC} with {ORG} colleagues .",
    "{PER} works for {ORG} in {LOC} .",
    "{ORG} opened an office in {LOC} last year .",
    "{PER} and {PER2} met in {LOC} today .",
    "{PER} left {ORG} and moved to {LOC} .",
]
N_TEXTS = 50
DISAGREEMENTS = ["label", "boundary", "missed", "label", "boundary", "missed"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "nerkit.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)


def fill(template: str, rng: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    """The text of a template with random names, and its true (start, end, label) spans."""
    values = {"PER": rng.choice(PEOPLE), "LOC": rng.choice(CITIES), "ORG": rng.choice(ORGS)}
    values["PER2"] = rng.choice([p for p in PEOPLE if p != values["PER"]])
    text, spans, rest = "", [], template
    while "{" in rest:
        before, _, after = rest.partition("{")
        key, _, rest = after.partition("}")
        text += before
        value = values[key]
        if key == "ORG" and value.startswith("the "):  # "the" is not part of the name
            text += "the "
            value = value[4:]
        spans.append((len(text), len(text) + len(value), key.rstrip("2")))
        text += value
    return text + rest, spans


def make_corpus(seed: int = 13) -> list[tuple[str, list[tuple[int, int, str]]]]:
    rng = random.Random(seed)
    corpus, seen = [], set()
    while len(corpus) < N_TEXTS:
        text, spans = fill(rng.choice(TEMPLATES), rng)
        if text not in seen:
            seen.add(text)
            corpus.append((text, spans))
    return corpus


def inject(corpus, seed: int = 13):
    """Annotator B's spans: A's (the truth) with one disagreement in each of a few texts."""
    rng = random.Random(seed + 1)
    b = [list(spans) for _, spans in corpus]
    changed = {}  # text index -> the true span B got wrong
    for kind in DISAGREEMENTS:
        eligible = [i for i, (t, spans) in enumerate(corpus) if i not in changed
                    and (kind != "boundary" or any(" " in t[s:e] for s, e, _ in spans))]
        i = rng.choice(eligible)
        text, spans = corpus[i]
        if kind == "boundary":  # drop the first word of a multi-word name
            k = next(k for k, (s, e, _) in enumerate(spans) if " " in text[s:e])
            s, e, lab = spans[k]
            b[i][k] = (text.index(" ", s) + 1, e, lab)
        else:
            k = rng.randrange(len(spans))
            s, e, lab = spans[k]
            if kind == "label":
                b[i][k] = (s, e, {"PER": "ORG", "LOC": "ORG", "ORG": "LOC"}[lab])
            else:
                del b[i][k]
        changed[i] = (spans[k], kind)
    return b, changed


def labelstudio_export(corpus, spans_per_text, annotator: int) -> list[dict]:
    """Label Studio's JSON export: tasks with data.text and one annotation's result regions."""
    tasks = []
    for i, ((text, _), spans) in enumerate(zip(corpus, spans_per_text)):
        result = [{"id": f"r{i}_{k}", "from_name": "label", "to_name": "text", "type": "labels", "origin": "manual",
                   "value": {"start": s, "end": e, "text": text[s:e], "labels": [lab]}}
                  for k, (s, e, lab) in enumerate(spans)]
        tasks.append({"id": 100 + i, "data": {"text": text},
                      "annotations": [{"id": 1000 * annotator + i, "completed_by": annotator, "was_cancelled": False,
                                       "result": result, "ground_truth": False, "lead_time": 3.5}],
                      "predictions": []})
    return tasks


def test_two_annotators_agree_adjudicate_train_evaluate(tiny_model, tmp_path):
    corpus = make_corpus()
    truth = [spans for _, spans in corpus]
    b_spans, changed = inject(corpus)
    a_file, b_file = tmp_path / "A.json", tmp_path / "B.json"
    a_file.write_text(json.dumps(labelstudio_export(corpus, truth, 1), indent=1), encoding="utf-8")
    b_file.write_text(json.dumps(labelstudio_export(corpus, b_spans, 2), indent=1), encoding="utf-8")
    n_a, n_b = sum(map(len, truth)), sum(map(len, b_spans))
    n_missed = DISAGREEMENTS.count("missed")
    assert n_b == n_a - n_missed

    # --- agree: the figures reflect exactly the injected disagreements
    r = run_cli("agree", str(a_file), str(b_file), "--json", "--report", str(tmp_path / "disagreements.txt"))
    assert r.returncode == 0, r.stderr
    ag = json.loads(r.stdout)
    assert ag["annotators"] == ["A", "B"] and ag["items"] == N_TEXTS
    assert ag["disagreements"] == len(DISAGREEMENTS)
    matches = n_a - len(DISAGREEMENTS)  # every injected disagreement breaks one exact match
    assert abs(ag["exact_f1"] - 2 * matches / (n_a + n_b)) < 1e-9
    assert 0.5 < ag["exact_f1"] < 1
    pair = ag["pairs"][0]
    assert abs(pair["exact"]["precision"] - matches / n_b) < 1e-9
    assert abs(pair["exact"]["recall"] - matches / n_a) < 1e-9
    # label changes and shifted boundaries still overlap a same-label span only for boundaries
    partial_matches = n_a - DISAGREEMENTS.count("label") - n_missed
    assert abs(ag["partial_f1"] - 2 * partial_matches / (n_a + n_b)) < 1e-9
    assert ag["exact_f1"] < ag["partial_f1"] < 1
    assert 0.5 < ag["kappa"]["cohen"] < 1
    report = (tmp_path / "disagreements.txt").read_text(encoding="utf-8")
    assert report.startswith(f"{len(DISAGREEMENTS)} regions where annotators disagree")
    for i, ((s, e, _), _kind) in changed.items():
        assert f"== {100 + i} " in report and f"«{corpus[i][0][s:e]}»" in report
    r = run_cli("agree", str(a_file), str(b_file))  # the human-readable summary
    assert r.returncode == 0, r.stderr
    assert "entity F1 exact" in r.stdout and f"{N_TEXTS} shared texts" in r.stdout

    # --- adjudicate: with two annotators every disagreement is a tie for review
    merged, review = tmp_path / "merged.json", tmp_path / "merged.review.jsonl"
    r = run_cli("adjudicate", str(a_file), str(b_file), "--output", str(merged))
    assert r.returncode == 0, r.stderr
    assert f"{len(DISAGREEMENTS)} for review" in r.stdout and review.is_file()
    items = [json.loads(line) for line in review.read_text(encoding="utf-8").splitlines()]
    assert len(items) == len(DISAGREEMENTS)
    assert sorted(c["index"] for c in items) == sorted(changed)

    # applying an undecided review is refused
    final_ls = tmp_path / "final.json"
    r = run_cli("adjudicate", "--apply", str(review), str(merged), "--output", str(final_ls))
    assert r.returncode == 2 and "no decision" in r.stderr and not final_ls.exists()

    # a simulated reviewer decides every item: the option matching the truth, or (first item) spans of their own
    for n, c in enumerate(items):
        i = c["index"]
        assert c["kind"] == "tie" and c["text"] == corpus[i][0]
        assert sorted(a for o in c["options"] for a in o["annotators"]) == ["A", "B"]
        want = [(s, e, lab) for s, e, lab in truth[i] if s < c["end"] and c["start"] < e]
        assert want == [changed[i][0]]
        if n == 0:
            c["decision"] = [{"start": s, "end": e, "label": lab, "text": corpus[i][0][s:e]} for s, e, lab in want]
        else:
            c["decision"] = next(o["option"] for o in c["options"]
                                 if [(x["start"], x["end"], x["label"]) for x in o["spans"]] == want)
            assert c["options"][c["decision"] - 1]["annotators"] == ["A"]
    review.write_text("".join(json.dumps(c) + "\n" for c in items), encoding="utf-8")
    r = run_cli("adjudicate", "--apply", str(review), str(merged), "--output", str(final_ls))
    assert r.returncode == 0, r.stderr
    assert f"applied {len(DISAGREEMENTS)} decisions" in r.stdout
    # applying the same review twice is an error
    r = run_cli("adjudicate", "--apply", str(review), str(final_ls), "--output", str(tmp_path / "twice.json"))
    assert r.returncode == 2 and "twice" in r.stderr

    # --- convert the adjudicated Label Studio file to nerkit JSONL (what `nerkit train` reads)
    adj = tmp_path / "adjudicated.jsonl"
    r = run_cli("convert", str(final_ls), str(adj), "--to", "nerkit", "--strict")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in adj.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert [row["text"] for row in rows] == [t for t, _ in corpus]
    got = [sorted((e["start"], e["end"], e["label"]) for e in row["entities"]) for row in rows]
    assert got == [sorted(s) for s in truth]  # adjudication recovered annotator A's (true) spans
    n_gold = sum(len(s) for s in truth)

    # --- train a tiny model on the adjudicated data and evaluate it there
    model = tmp_path / "model"
    r = run_cli("train", "--train", str(adj), "--dev", str(adj), "--model", str(tiny_model), "--max-steps", "3",
                "--batch-tokens", "512", "--output", str(model))
    assert r.returncode == 0, r.stderr
    meta = json.loads((model / "nerkit.json").read_text(encoding="utf-8"))
    assert {"B-PER", "B-LOC", "B-ORG"} <= set(meta["labels"])
    r = run_cli("evaluate", str(model), str(adj), "--json", "--backend", "torch")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["support"] == n_gold
    per_type = {t: sum(lab == t for s in truth for _, _, lab in s) for t in ("PER", "LOC", "ORG")}
    assert {t: v["support"] for t, v in ev["per_type"].items()} == per_type
    assert 0.0 <= ev["f1"] <= 1.0
