"""bench/nested.py's pure parts: overlap scores, the two-kinds-at-once counter, the DocBin conversion and the report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_bench
from test_nested import nested_model  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def nested():
    return load_bench("nested")


def test_overlap_counts_half_coverage_of_the_gold_span_from_both_sides(nested):
    gold = [{("Law", 0, 100), ("Arb", 200, 300)}, {("Law", 10, 20)}]
    pred = [{("Law", 40, 120),    # covers 60 of Law's 100 characters: found, and correct
             ("Arb", 0, 240),     # covers 40 of Arb's 100: neither
             ("Law", 150, 160)},  # covers nothing: wrong
            {("Arb", 10, 20)}]    # the right range with the wrong type: neither
    rep = nested.overlap_scores(gold, pred)
    assert rep["recall"] == pytest.approx(1 / 3) and rep["precision"] == pytest.approx(1 / 4)
    assert rep["per_type"]["Law"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert rep["per_type"]["Arb"]["recall"] == 0.0 and rep["per_type"]["Arb"]["support"] == 1
    # exactly half is enough, a character less is not
    assert nested.overlap_scores([{("A", 0, 10)}], [{("A", 5, 30)}])["recall"] == 1.0
    assert nested.overlap_scores([{("A", 0, 10)}], [{("A", 6, 30)}])["recall"] == 0.0
    # one long prediction covering two gold clauses finds both and is one correct prediction
    both = nested.overlap_scores([{("A", 0, 10), ("A", 10, 20)}], [{("A", 0, 20)}])
    assert (both["recall"], both["precision"]) == (1.0, 1.0)
    assert nested.overlap_scores([set()], [set()])["f1"] == 0.0
    with pytest.raises(ValueError):
        nested.overlap_scores([set()], [])


def test_exact_equals_overlap_when_predictions_are_exact(nested):
    gold = [{("A", 0, 5), ("B", 0, 5), ("A", 7, 9)}, {("B", 1, 3)}]
    pred = [{("A", 0, 5), ("A", 7, 9)}, {("B", 1, 3), ("B", 10, 12)}]
    ex, ov = nested.exact_scores(gold, pred), nested.overlap_scores(gold, pred)
    for k in ("precision", "recall", "f1"):
        assert ex[k] == pytest.approx(ov[k])
    assert set(ex["nested"]) == {"outermost", "inner"}


def test_two_kinds_counts_same_range_pairs_and_those_found_as_both(nested):
    gold = [{("Law", 0, 50), ("Jur", 0, 50), ("Arb", 60, 90)},           # one pair
            {("A", 0, 10), ("B", 0, 10), ("C", 0, 10)},                   # three types: three pairs
            {("A", 0, 10), ("B", 0, 12)}]                                 # different ranges: no pair
    pred = [{("Law", 0, 50), ("Jur", 0, 50)},                            # found as both
            {("A", 0, 10), ("B", 0, 10), ("C", 2, 10)},                   # A+B exact; A+C, B+C by overlap only
            {("A", 0, 10), ("B", 0, 12)}]
    assert nested.two_kinds(gold, pred) == {"pairs": 4, "found_both": 2}
    assert nested.two_kinds(gold, pred, 0.5) == {"pairs": 4, "found_both": 2, "found_both_overlap": 4}
    # one of the two found is not both
    assert nested.two_kinds([{("A", 0, 10), ("B", 0, 10)}], [{("A", 0, 10)}], 0.5)["found_both_overlap"] == 0


def test_docbin_keeps_every_nested_span_and_counts_the_unalignable(nested, tmp_path):
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    records = [
        {"text": "IL-2 gene expression in T cells .",
         "entities": [{"start": 0, "end": 31, "label": "event"},               # 6 tokens: beyond 1-3-grams
                      {"start": 0, "end": 9, "label": "DNA"}, {"start": 0, "end": 4, "label": "protein"},
                      {"start": 0, "end": 4, "label": "DNA"},                 # the same range with a second type
                      {"start": 24, "end": 31, "label": "cell_type"}]},
        {"text": "Aspirin  caused rash.",
         "entities": [{"start": 1, "end": 5, "label": "Drug"},               # inside a token: expanded to it
                      {"start": 7, "end": 8, "label": "Drug"},               # only whitespace: cannot be aligned
                      {"start": 16, "end": 20, "label": "AdverseEffect"}]},
        {"text": "Nothing here.", "entities": []},
    ]
    db, stats = nested.to_docbin(records, nlp)
    assert stats == {"spans": 8, "kept": 7, "unaligned": 1, "expanded": 1}
    db.to_disk(tmp_path / "x.spacy")
    docs = list(DocBin().from_disk(tmp_path / "x.spacy").get_docs(nlp.vocab))
    assert len(docs) == 3
    got = [sorted((s.label_, s.start_char, s.end_char) for s in d.spans["sc"]) for d in docs]
    assert got[0] == sorted([("event", 0, 31), ("DNA", 0, 9), ("protein", 0, 4), ("DNA", 0, 4), ("cell_type", 24, 31)])
    assert got[1] == [("AdverseEffect", 16, 20), ("Drug", 0, 7)]
    assert got[2] == []
    cover = nested.suggester_coverage(records, nlp, [1, 2, 3])
    # the 6-token span is beyond the suggester's reach; the whitespace span has no tokens
    assert cover == {"spans": 8, "proposable": 6, "sizes": [1, 2, 3]}


def _run(ds, system, f1, **kw):
    nest = {"outermost": {"precision": f1, "recall": f1, "f1": f1, "support": 9},
            "inner": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}}
    exact = {"precision": f1, "recall": f1, "f1": f1, "nested": nest,
             "per_type": {"Law": {"precision": f1, "recall": f1, "f1": f1, "support": 5}}}
    return {"ds": ds, "system": system, "exact": exact, "two_kinds": {"pairs": 3, "found_both": 1}, "wall_s": 12.5,
            "words_per_s": 1234.5, **kw}


def test_report_has_a_row_per_run_the_machine_and_per_category_tables(nested, tmp_path):
    overlap = {"precision": 0.8, "recall": 0.6, "f1": 0.6857, "threshold": 0.5,
               "per_type": {"Law": {"precision": 0.8, "recall": 0.6, "f1": 0.6857, "support": 5}}}
    runs = [_run("tos-clauses", "spancat", 0.1, overlap=overlap,
                 two_kinds={"pairs": 3, "found_both": 0, "found_both_overlap": 2},
                 conversion={"train": {"spans": 10, "kept": 9, "unaligned": 1, "expanded": 4}},
                 suggester={"spans": 8, "proposable": 1, "sizes": [1, 2, 3]}),
            _run("genia-small", "flat", 0.5, design="sparse-epochs", int8_equals_torch=0.99, nerkit_test={"f1": 0.51}, layers=1),
            _run("genia-small", "nested", 0.6, design=nested.DESIGNS["nested"], int8_equals_torch=1.0, onnx_equals_torch=1.0, nerkit_test={"f1": 0.61}, layers=2,
                 two_kinds={"pairs": 0, "found_both": 0}, decoder="tags+spans"),
            {"ds": "ade", "system": "nested", "error": "boom"}]
    nested.write_report(runs, tmp_path, "nested", "a note", {"cpu": "X"}, "X, 2 cores")
    md = (tmp_path / "nested.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| genia") or ln.startswith("| tos")]
    assert [r.split(" | ")[:2] for r in rows] == [["| genia-small", "nested"], ["| genia-small", "flat"],
                                                  ["| tos-clauses", "spancat"]]
    assert "Machine: X, 2 cores." in md and md.startswith("a note")
    assert "| 60.0 (60.0 / 60.0) | 60.0 | 0.0 (2) |" in rows[0] and "100.0 %" in rows[0]
    assert "fp32 ONNX = torch 100.0 %; 2 tag layers; nerkit.json test F1 61.0" in rows[0] and "1 tag layer;" in rows[1]
    assert "span head, decoder tags+spans; inner recall 0.0 %" in rows[0] and "decoder" not in rows[1]
    assert nested._label({"system": "nested"}) == "nested (earlier: tag layers)"  # a cached run of the old design
    assert nested._label({"system": "nested", "design": nested.DESIGNS["nested"]}) == "nested"
    assert nested._label({"system": "nested", "design": "span-head"}) == "nested (earlier: span-head)"
    assert "| no pairs |  |" in rows[0]  # no gold pair to find; no overlap scored on GENIA
    assert "68.6 (80.0 / 60.0)" in rows[2] and "| 0 of 3 | 2 of 3 |" in rows[2]
    assert "unaligned 1" in rows[2] and "suggester sizes 1-3 reach 1 of 8 test spans" in rows[2]
    assert "| Law | 5 | 10.0 / 68.6 |" in md  # tos-clauses per category: exact / overlap
    assert "boom" not in md
    data = json.loads((tmp_path / "nested.json").read_text())
    assert data["machine"] == {"cpu": "X"} and len(data["runs"]) == 3 and data["note"] == "a note"


def test_cache_key_separates_quick_runs_from_full_ones(nested, tmp_path):
    full = {"ds": "ade", "system": "nested", "limit": None, "dev_limit": None, "test_limit": None, "steps": None,
            "seed": 13}
    quick = {**full, "limit": 40, "steps": 20}
    assert nested.key(full) != nested.key(quick)
    log = tmp_path / "runs.jsonl"
    log.write_text(json.dumps({**full, "f1": 1}) + "\n" + json.dumps({**quick, "error": "x"}) + "\n")
    assert list(nested.load_runs(log)) == [nested.key(full)]  # failures are not cached: they run again
    # a run of the nested system's earlier design (tag layers, no "design" recorded) is not taken for the span head's
    assert nested.key({**full, "design": nested.DESIGNS["nested"]}) != nested.key(full)


def test_steps_need_limit_and_unknown_names_are_refused(nested, capsys):
    for argv, msg in ((["--steps", "5"], "--steps is for quick runs"), (["--systems", "nested,crf"], "unknown crf"),
                      (["--datasets", "conll"], "unknown conll")):
        with pytest.raises(SystemExit) as exc:
            nested.main(argv)
        assert exc.value.code == 2 and msg in capsys.readouterr().err


def test_inner_bands_count_every_inner_entity_once_and_agree_with_the_inner_recall(nested_model):
    from nerkit.evaluation import evaluate
    from nerkit.formats import load
    from nerkit.predict import Tagger

    decoders = load_bench("nested_decoders")
    tagger = Tagger.load(nested_model["dir"], backend="torch", bf16="off")
    docs = load(nested_model["dev"])
    inner = evaluate(tagger, docs)["nested"]["inner"]
    bands = decoders.inner_bands(tagger, docs)
    assert set(bands) <= set(decoders.BAND_NAMES)
    assert sum(bands.values()) == inner["support"] > 0
    assert bands["found"] == round(inner["recall"] * inner["support"]) > 0
    head = tagger.span_head
    head.threshold, head.thresholds = 1.5, {}  # nothing is kept: every inner entity is missed, by its probability
    missed = decoders.inner_bands(tagger, docs)
    assert missed["found"] == missed["over the threshold, left out"] == 0
    assert sum(missed.values()) == inner["support"]
    assert missed["near"] + missed["low"] + missed["none"] == inner["support"]


def test_consistency_counts_repeats_inside_entities_of_their_document_and_adds_them_above_the_floor(tmp_path):
    consistency = load_bench("nested_consistency")
    recs = [  # doc A names "IL-2" alone, then twice inside a DNA entity (annotated once); doc B never names it alone
        {"text": "IL-2 is made", "entities": [{"start": 0, "end": 4, "label": "protein"}], "doc": "A"},
        {"text": "the IL-2 gene and IL-2 promoter", "doc": "A", "entities": [
            {"start": 4, "end": 13, "label": "DNA"}, {"start": 4, "end": 8, "label": "protein"},
            {"start": 18, "end": 31, "label": "DNA"}]},
        {"text": "IL-2 gene", "entities": [{"start": 0, "end": 9, "label": "DNA"}], "doc": "B"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    line = consistency.annotation_consistency(path)
    assert "2 occurrences" in line and "1 annotated (50.0 %)" in line and "1 of 1 inner entities" in line

    rows = [("A", ["IL-2", "is", "made"], {("protein", 0, 1)}, {("protein", 0, 1)}, {}),
            ("A", ["the", "IL-2", "gene"], {("DNA", 1, 3), ("protein", 1, 2)}, {("DNA", 1, 3)},
             {("protein", 1, 2): 0.02}),
            ("B", ["IL-2", "gene"], {("DNA", 0, 2), ("protein", 0, 1)}, {("DNA", 0, 2)}, {("protein", 0, 1): 0.5})]
    alone = consistency.propagated(rows, None)
    assert (alone["added"], alone["inner_recall"], alone["precision"], alone["recall"]) == (0, 0.0, 1.0, 0.6)
    low = consistency.propagated(rows, 0.01)  # only doc A's repeat: doc B never found "IL-2" alone
    assert (low["added"], low["inner_recall"], low["precision"], low["recall"]) == (1, 0.5, 1.0, 0.8)
    assert consistency.propagated(rows, 0.05)["added"] == 0  # the span head gave it 0.02
