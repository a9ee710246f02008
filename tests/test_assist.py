"""Pre-annotation, uncertainty sampling and learning curves, on a tiny randomly initialised BERT (seconds on CPU)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from nerkit.annotate import assist
from nerkit.cli import main
from nerkit.curve import format_curve, learning_curve, parse_fractions, per_doubling, subsets
from nerkit.errors import NerkitError
from nerkit.formats import ChangeLog, read
from nerkit.types import Document, Sentence

TEXTS = ["John Smith lives in Paris", "Mary visited London today", "the city of Berlin", "john smith lives in paris",
         "It was 12 degrees in New York", "It was 30 degrees in New York"]


# ---------------------------------------------------------------- pre-annotation


def test_preannotate_label_studio_tasks(tmp_path, model_dir, tagger):
    out = tmp_path / "tasks.json"
    report = assist.preannotate(model_dir, TEXTS, out, "labelstudio", backend="torch")
    tasks = json.loads(out.read_text())
    assert len(tasks) == len(TEXTS) and report.records_out == len(TEXTS)
    expected = tagger(TEXTS)
    n_regions = 0
    for task, text, ents in zip(tasks, TEXTS, expected):
        assert task["data"]["text"] == text and "annotations" not in task
        [pred] = task["predictions"]
        assert pred["model_version"].startswith("nerkit:model")
        regions = pred["result"]
        assert [(r["value"]["start"], r["value"]["end"], r["value"]["labels"]) for r in regions] == \
            [(e.start, e.end, [e.label]) for e in ents]
        for r in regions:
            v = r["value"]
            assert text[v["start"]:v["end"]] == v["text"] and 0 <= r["score"] <= 1
            assert (r["from_name"], r["to_name"], r["type"]) == ("label", "text", "labels")
        n_regions += len(regions)
    assert n_regions > 0, "the tiny model should predict some entities"
    # Label Studio treats predictions as suggestions: read back as an export, nothing is annotated yet.
    rep = ChangeLog()
    assert read(out, "labelstudio", rep) == [] and rep.counts()["skipped-record"] == len(TEXTS)


def test_preannotate_other_formats(tmp_path, model_dir, tagger):
    assist.preannotate(model_dir, TEXTS, tmp_path / "p.jsonl", "doccano", backend="torch")
    back = read(tmp_path / "p.jsonl", "doccano")
    assert [[(s.start, s.end, s.label) for s in r.spans] for r in back] == \
        [[(e.start, e.end, e.label) for e in ents] for ents in tagger(TEXTS)]
    with pytest.raises(NerkitError, match="no texts"):
        assist.preannotate(model_dir, ["  "], tmp_path / "x.json")


def test_cli_preannotate(tmp_path, model_dir, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n\n")
    assert main(["preannotate", str(model_dir), str(texts), "--to", "labelstudio", "--backend", "torch"]) == 0
    assert "pre-annotated 6 texts" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "texts.tasks.json").read_text())) == 6


# ---------------------------------------------------------------- uncertainty


def test_token_uncertainty_by_hand():
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    assert assist.token_uncertainty(probs, "margin") == pytest.approx([1 - 0.85, 1 - 0.05, 1.0])
    ent = [-(0.9 * np.log(0.9) + 2 * 0.05 * np.log(0.05)), -(0.4 * np.log(0.4) + 0.35 * np.log(0.35) + 0.25 * np.log(0.25)),
           np.log(3)]
    assert assist.token_uncertainty(probs, "entropy") == pytest.approx(ent)
    assert assist.text_uncertainty(probs, "margin") == pytest.approx(1.0)  # the least certain word decides
    assert assist.text_uncertainty(np.zeros((0, 3))) == 0.0
    with pytest.raises(NerkitError, match="strategy"):
        assist.token_uncertainty(probs, "random")


class FakeTagger:
    """word_probs from a table: text -> per-word probabilities (to test ranking without a model)."""

    def __init__(self, table):
        self.table = table
        self.calls = []

    def word_probs(self, texts):
        self.calls.append(list(texts))
        return [(t.split(), [], np.array(self.table[t])) for t in texts]


def test_suggest_ranks_dedupes_and_excludes():
    table = {"sure one": [[0.99, 0.01], [0.98, 0.02]], "Unsure  Two": [[0.55, 0.45], [0.9, 0.1]],
             "unsure two": [[0.55, 0.45]], "medium": [[0.7, 0.3]], "done before": [[0.5, 0.5]], "UNSURE TWO 7": [[0.6, 0.4]],
             "unsure two 8": [[0.6, 0.4]]}
    fake = FakeTagger(table)
    texts = list(table)
    got = assist.suggest(fake, texts, n=3, strategy="margin", exclude=["Done  before"])
    assert [(s.rank, s.text) for s in got] == [(1, "Unsure  Two"), (2, "UNSURE TWO 7"), (3, "medium")]
    assert got[0].duplicates == 1 and got[1].duplicates == 1  # "unsure two", "unsure two 8"
    assert got[0].score == pytest.approx(1 - 0.10)
    assert sorted(t for call in fake.calls for t in call) == sorted(["sure one", "Unsure  Two", "medium", "UNSURE TWO 7"])
    by_entropy = assist.suggest(FakeTagger(table), texts, n=1, strategy="entropy")
    assert by_entropy[0].text == "done before"


def test_suggest_with_a_model_matches_direct_scores(tagger):
    got = assist.suggest(tagger, TEXTS, n=10, strategy="entropy")
    assert len(got) == 4  # the "john smith" texts differ in case, the "degrees" texts in digits: one of each
    direct = {t: assist.text_uncertainty(p, "entropy") for t, (_, _, p) in zip(TEXTS, tagger.word_probs(TEXTS))}
    assert [s.score for s in got] == sorted((s.score for s in got), reverse=True)
    for s in got:
        assert s.score == pytest.approx(direct[s.text], abs=1e-5)


def test_export_suggestions(tmp_path, tagger):
    items = assist.suggest(tagger, TEXTS, n=2)
    assist.export_suggestions(items, tmp_path / "s.txt", "txt")
    assert (tmp_path / "s.txt").read_text().splitlines() == [s.text for s in items]
    assist.export_suggestions(items, tmp_path / "s.jsonl", "jsonl")
    rows = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["score"] == items[0].score
    assist.export_suggestions(items, tmp_path / "s.json", "labelstudio", tagger)
    tasks = json.loads((tmp_path / "s.json").read_text())
    assert [t["data"]["text"] for t in tasks] == [s.text for s in items] and "predictions" in tasks[0]


def test_cli_suggest(tmp_path, model_dir, capsys):
    src = tmp_path / "unlabelled.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    done = tmp_path / "done.jsonl"
    done.write_text(json.dumps({"text": TEXTS[2], "entities": []}) + "\n")
    out = tmp_path / "next.txt"
    assert main(["suggest", str(model_dir), str(src), "-n", "3", "--output", str(out), "--exclude", str(done),
                 "--backend", "torch"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and TEXTS[2] not in lines
    assert main(["suggest", str(model_dir), str(src), "-n", "2", "--strategy", "entropy", "--backend", "torch"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2].startswith("1\t") and printed[-1].startswith("2\t")


# ---------------------------------------------------------------- learning curve


def _docs(n):
    out = []
    for d in range(n // 2):
        sents = [Sentence(["John", "lives", "in", "Paris"], ["B-PER", "O", "O", "B-LOC"]),
                 Sentence(["Mary", "visited", "London"], ["B-PER", "O", "B-LOC"])]
        out.append(Document(f"d{d}", sents))
    return out


def test_subsets_are_nested_and_keep_order():
    docs = _docs(20)
    subs = subsets(docs, [0.1, 0.5, 1.0], seed=3)
    units = [{(d.id, id(s)) for d in sub for s in d.sentences} for sub in subs]
    assert [len(u) for u in units] == [2, 10, 20]
    assert units[0] <= units[1] <= units[2]
    ids = [d.id for d in subs[2]]
    assert ids == [d.id for d in docs]  # document order kept
    assert parse_fractions("1, 0.25,0.5") == [0.25, 0.5, 1.0]
    with pytest.raises(NerkitError):
        parse_fractions("0,0.5")


def test_learning_curve_with_a_stub_trainer(tmp_path):
    calls = []

    def fake_fit(train, dev=None, output=None, config=None):
        n = sum(len(d.sentences) for d in train)
        calls.append((n, config.seed, output))
        return {"metrics": {"dev": {"f1": n / 40, "precision": 0.5, "recall": 0.5}}}

    rows = learning_curve(_docs(20), _docs(4), [0.25, 0.5, 1.0], tmp_path / "curve", seed=7, fit=fake_fit)
    assert [c[:2] for c in calls] == [(5, 7), (10, 7), (20, 7)] and calls[0][2] is None
    assert [r["dev_f1"] for r in rows] == [0.125, 0.25, 0.5] and rows[-1]["entities"] == 40
    tsv = (tmp_path / "curve" / "curve.tsv").read_text().splitlines()
    assert tsv[0].startswith("fraction\tsentences") and tsv[3].split("\t")[:2] == ["1", "20"]
    assert (tmp_path / "curve" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "curve" / "curve.json").read_text()) == rows
    with pytest.raises(NerkitError, match="--dev"):
        learning_curve(_docs(4), None, [1.0], tmp_path / "x", fit=fake_fit)


def _scored_fit(calls):
    """A stub trainer whose dev figures grow with the subset: exact F1 5 points a doubling, the overlap score 6, the
    inner entities' recall 5 (sentences 5, 10, 20)."""
    def fit(train, dev=None, output=None, config=None):
        k = math.log2(sum(len(d.sentences) for d in train) / 5)
        calls.append(k)
        f1, ovl, inner = 0.40 + 0.05 * k, 0.55 + 0.06 * k, 0.20 + 0.05 * k
        return {"metrics": {"dev": {"f1": f1, "precision": f1, "recall": f1,
                                    "per_type": {"LOC": {"f1": f1 - 0.1}, "PER": {"f1": f1 + 0.1}},
                                    "nested": {"outermost": {"recall": f1, "support": 9},
                                               "inner": {"recall": inner, "support": 3}},
                                    "overlap": {"f1": ovl}}}}
    return fit


def test_learning_curve_shows_what_a_doubling_buys_by_the_scores_nested_and_long_entities_are_judged_by(tmp_path):
    rows = learning_curve(_docs(20), _docs(4), [0.25, 0.5, 1.0], tmp_path / "c", fit=_scored_fit([]))
    assert [r["sentences"] for r in rows] == [5, 10, 20]
    assert rows[-1]["dev_overlap_f1"] == pytest.approx(0.67) and rows[-1]["dev_inner_recall"] == pytest.approx(0.30)
    assert rows[0]["dev_f1_per_type"] == {"LOC": pytest.approx(0.30), "PER": pytest.approx(0.50)}
    table = format_curve(rows).splitlines()
    assert table[0].split() == ["fraction", "sentences", "entities", "dev", "F1", "overlap", "F1", "inner", "R"]
    assert table[3].split()[3:] == ["50.00", "67.00", "30.00"]
    assert table[-1] == ("from 10 to 20 sentences, per doubling of them: dev F1 +5.00, overlap F1 +6.00, "
                         "inner R +5.00 points")
    tsv = (tmp_path / "c" / "curve.tsv").read_text().splitlines()
    assert tsv[0].split("\t")[-4:] == ["dev_overlap_f1", "dev_inner_recall", "dev_f1:LOC", "dev_f1:PER"]
    assert tsv[3].split("\t")[-2:] == ["0.4000", "0.6000"]
    assert (tmp_path / "c" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Flat names: the overlap score repeats the exact one and there is no inner entity: dev F1 alone, and its gain.
    flat = [{**r, "dev_overlap_f1": r["dev_f1"]} for r in rows]
    for r in flat:
        del r["dev_inner_recall"]
    assert format_curve(flat).splitlines()[0].split() == ["fraction", "sentences", "entities", "dev", "F1"]
    assert format_curve(flat).splitlines()[-1] == "from 10 to 20 sentences, per doubling of them: dev F1 +5.00 points"
    assert per_doubling(rows[:1]) is None


def test_learning_curve_refuses_before_training_to_write_over_what_it_did_not_write(tmp_path):
    calls = []
    fit = _scored_fit(calls)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(NerkitError, match="not a directory"):
        learning_curve(_docs(4), _docs(2), [1.0], a_file, fit=fit)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "curve.png").write_text("a plot of my own")
    with pytest.raises(NerkitError, match="curve.png that no learning curve of nerkit wrote"):
        learning_curve(_docs(4), _docs(2), [1.0], theirs, fit=fit)
    foreign_model = tmp_path / "kept"
    (foreign_model / "model-1").mkdir(parents=True)
    (foreign_model / "model-1" / "weights.bin").write_text("not nerkit's")
    with pytest.raises(NerkitError, match="not a nerkit model"):
        learning_curve(_docs(4), _docs(2), [0.5, 1.0], foreign_model, keep_models=True, fit=fit)
    assert calls == [] and a_file.read_text() == "mine" and (theirs / "curve.png").read_text() == "a plot of my own"
    # A curve nerkit wrote is replaced by the next one.
    learning_curve(_docs(4), _docs(2), [1.0], tmp_path / "c", fit=fit)
    rows = learning_curve(_docs(4), _docs(2), [0.5, 1.0], tmp_path / "c", fit=fit)
    assert json.loads((tmp_path / "c" / "curve.json").read_text()) == rows and len(calls) == 3


def test_cli_curve_refuses_a_file_as_its_output_in_one_line(tmp_path, capsys):
    conll = Path(__file__).parent / "fixtures" / "annotate" / "iob2.conll"
    (tmp_path / "out").write_text("mine")
    assert main(["curve", "--train", str(conll), "--dev", str(conll), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists and is not a directory" in err[0] and (tmp_path / "out").read_text() == "mine"


def test_learning_curve_counts_inner_entities_too(tmp_path):
    nested = [Document("n", [Sentence(["IL-2", "gene"], ["B-DNA", "I-DNA"], layers=[["B-protein", "O"]])])]
    rows = learning_curve(nested, nested, [1.0], tmp_path / "c",
                          fit=lambda train, dev=None, output=None, config=None: {"metrics": {"dev": {"f1": 1.0}}})
    assert rows[0]["entities"] == 2  # the DNA and the protein inside it (it counted the outermost layer only)


def test_learning_curve_trains_a_tiny_model(tmp_path, model_dir):
    from nerkit.train import TrainConfig

    cfg = TrainConfig(model=str(model_dir), max_steps=1, progress=False, context=0)
    rows = learning_curve(_docs(8), _docs(2), [0.5, 1.0], tmp_path / "c", cfg)
    assert [r["sentences"] for r in rows] == [4, 8]
    assert all(r["dev_f1"] is not None and 0 <= r["dev_f1"] <= 1 for r in rows)
    assert (tmp_path / "c" / "curve.png").is_file()


def test_cli_curve(tmp_path, model_dir, capsys):
    conll = Path(__file__).parent / "fixtures" / "annotate" / "iob2.conll"
    assert main(["curve", "--train", str(conll), "--dev", str(conll), "--fractions", "0.5,1", "--output",
                 str(tmp_path / "c"), "--model", str(model_dir), "--max-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "fraction  sentences" in out and (tmp_path / "c" / "curve.tsv").read_text().count("\n") == 3
