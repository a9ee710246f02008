"""Import/export of annotation tools' formats: hand-written exports in each tool's documented format,
the documented resolutions of problem spans, and exact round trips (property tests)."""
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nerkit import formats
from nerkit.cli import main
from nerkit.errors import DataError, NerkitError
from nerkit.formats import Record, ChangeLog
from nerkit.types import Span

FIX = Path(__file__).parent / "fixtures" / "annotate"
T1 = "Angela Merkel visited Paris on Monday."
T2 = "Apple Inc. hired Tim Cook in Cupertino."
S1 = [Span(0, 13, "PER"), Span(22, 27, "LOC")]
S2 = [Span(0, 10, "ORG"), Span(17, 25, "PER"), Span(29, 38, "LOC")]


def read(name, fmt=None):
    report = ChangeLog()
    return formats.read(FIX / name, fmt, report), report


def by_text(records):
    return {r.text: r.spans for r in records}


# ---------------------------------------------------------------- the environment users set


@pytest.mark.parametrize("value, bar", [("1", False), ("0", True)])
def test_train_honours_tqdm_disable(tmp_path, tiny_model, capsys, monkeypatch, value, bar):
    """TQDM_DISABLE (tqdm's own switch, which logs set) turns nerkit train's progress bar off."""
    monkeypatch.setenv("TQDM_DISABLE", value)
    assert main(["train", "--train", str(FIX / "iob2.conll"), "--model", str(tiny_model), "--max-steps", "2",
                 "--output", str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err
    assert ("training:" in err and "step" in err) is bar
    assert "training budget:" in err  # the bar goes, the log lines stay


# ---------------------------------------------------------------- each tool's export


def test_labelstudio_export():
    records, report = read("labelstudio_export.json")
    assert [(r.id, r.annotator) for r in records] == [("101", "1"), ("101", "2"), ("102", "1"), ("102", "2"), ("103", "1")]
    assert records[0].spans == S1
    assert records[1].spans == [Span(0, 13, "PER"), Span(22, 27, "ORG")]
    assert records[2].spans == S2
    assert records[3].spans[0] == Span(0, 5, "ORG")
    counts = report.counts()
    # cancelled annotation + predictions-only task; relation + choices; two UTF-16 offsets after the emoji
    assert counts == {"skipped-record": 2, "not-entity": 2, "utf16": 2}
    emoji = records[4]
    assert [emoji.text[s.start:s.end] for s in emoji.spans] == ["Berlin", "Anna"]
    assert records[0].source.endswith("labelstudio_export.json:2 task 101 annotation 1")  # findings name the task


def test_labelstudio_json_min_export():
    records, report = read("labelstudio_min.json")
    assert [(r.text, r.spans, r.annotator) for r in records] == [(T1, S1, "1")]
    assert not report.changes


def test_doccano_exports():
    records, report = read("doccano.jsonl")
    assert [r.id for r in records] == ["1", "2", "3"]
    assert by_text(records)[T2] == sorted(S2 + [Span(0, 5, "ORG")])  # nested span kept as read
    assert records[2].spans == [] and not report.changes
    rel, report = read("doccano_relations.jsonl")
    assert rel[0].spans == S1 and report.counts() == {"not-entity": 1}


def test_prodigy_and_spacy_jsonl():
    records, report = read("prodigy.jsonl")
    assert by_text(records) == {T1: S1, T2: S2}
    assert report.counts() == {"skipped-record": 1}  # the rejected answer
    v2, _ = read("spacy_v2.jsonl")
    assert by_text(v2) == {T1: S1}


def test_brat_directory():
    records, report = read("brat")
    news1, news2 = records
    assert news1.id == "news1" and news1.spans == [Span(0, 13, "PER"), Span(22, 27, "LOC"), Span(39, 49, "ORG"),
                                                   Span(56, 64, "PER"), Span(68, 77, "LOC")]
    assert news2.spans == [Span(0, 23, "LOC"), Span(10, 23, "LOC")]
    assert report.counts() == {"not-entity": 3, "discontinuous": 1}
    assert news1.where[0].endswith("news1.ann:1")
    single, _ = read("brat/news2.ann")
    assert single[0].id == "news2"


def test_conll_schemes_read_alike_and_convert_exactly(tmp_path):
    docs = {name: read(f"{name}.conll")[0] for name in ("iob1", "iob2", "bioes")}
    spans = {k: [(r.text, r.spans) for r in v] for k, v in docs.items()}
    assert spans["iob1"] == spans["iob2"] == spans["bioes"]
    assert spans["iob2"][1] == ("He met Anna Bob today .", [Span(7, 11, "PER"), Span(12, 15, "PER")])
    report = formats.convert(FIX / "iob1.conll", tmp_path / "out.conll", dst_fmt="conll-bioes")
    assert (tmp_path / "out.conll").read_text() == (FIX / "bioes.conll").read_text()
    assert not report.changes and report.spans_out == 4
    formats.convert(FIX / "bioes.conll", tmp_path / "iob2.conll", "conll-bioes", "conll-iob2")
    assert (tmp_path / "iob2.conll").read_text() == (FIX / "iob2.conll").read_text()
    formats.convert(FIX / "iob2.conll", tmp_path / "iob1.conll", "conll", "iob1")
    assert read_lines(tmp_path / "iob1.conll", -1) == read_lines(FIX / "iob1.conll", -1)


def read_lines(path, col):
    return [ln.split()[col] if ln.split() else "" for ln in Path(path).read_text().splitlines()]


def test_nerkit_jsonl():
    records, report = read("nerkit.jsonl")
    assert [(r.id, r.text, r.spans) for r in records] == [("n1", T1, S1), ("n2", T2, S2)]


def test_every_tool_gives_the_same_spans():
    expected = {T1: S1, T2: S2}
    for name in ("labelstudio_min.json", "prodigy.jsonl", "nerkit.jsonl"):
        got = by_text(read(name)[0])
        common = got.keys() & expected.keys()  # each file holds one or both texts
        assert common and {t: got[t] for t in common} == {t: expected[t] for t in common}, name
    brat = read("brat")[0][0]
    shifted = [Span(s.start - 39, s.end - 39, s.label) for s in brat.spans[2:]]
    assert brat.spans[:2] == S1 and shifted == S2


def test_detect_format():
    assert formats.detect_format(FIX / "labelstudio_export.json") == "labelstudio"
    assert formats.detect_format(FIX / "labelstudio_min.json") == "labelstudio"
    assert formats.detect_format(FIX / "doccano.jsonl") == "doccano"
    assert formats.detect_format(FIX / "doccano_relations.jsonl") == "doccano"
    assert formats.detect_format(FIX / "prodigy.jsonl") == "spacy"
    assert formats.detect_format(FIX / "spacy_v2.jsonl") == "spacy"
    assert formats.detect_format(FIX / "nerkit.jsonl") == "nerkit"
    assert formats.detect_format(FIX / "brat") == "brat"
    assert formats.detect_format(FIX / "iob1.conll") == "conll"


# ---------------------------------------------------------------- problems and their resolutions


def test_problem_spans_are_reported_not_dropped_silently(tmp_path):
    report = ChangeLog()
    [rec] = formats.read(FIX / "doccano_problems.jsonl", "doccano", report)
    # [3,3) zero-length, [20,90) outside the text, the second [14,20) a duplicate
    assert report.counts() == {"zero-length": 1, "out-of-range": 1, "duplicate": 1}
    assert rec.spans == [Span(0, 4, "MISC"), Span(6, 13, "LOC"), Span(14, 20, "LOC"), Span(14, 25, "LOC")]
    report = ChangeLog()
    formats.write([rec], tmp_path / "out.conll", "conll", report)
    counts = report.counts()
    # " Paris," -> trimmed; "France" inside "France next" dropped; "Visi|t" split
    assert counts == {"trimmed": 1, "overlap": 1, "word-split": 1}
    lines = [ln.split() for ln in (tmp_path / "out.conll").read_text().splitlines() if ln and not ln.startswith("-DOC")]
    assert lines[:4] == [["Visi", "B-MISC"], ["t", "O"], ["Paris", "B-LOC"], [",", "I-LOC"]]
    assert ["France", "B-LOC"] in lines and ["next", "I-LOC"] in lines
    dropped = next(c for c in report.changes if c.kind == "overlap")
    assert "doccano_problems.jsonl:1 label 2" in dropped.where and "'France'" in dropped.detail


def test_wordless_texts_are_skipped_with_a_count(tmp_path):
    report = ChangeLog()
    formats.write([Record("a", " . "), Record("b", "   "), Record("c", T1, S1)], tmp_path / "o.jsonl", "nerkit", report)
    assert report.counts() == {"skipped-record": 1} and report.records_out == 2
    report = ChangeLog()
    formats.write([Record("b", "   "), Record("c", T1, S1)], tmp_path / "o.conll", "conll", report)
    assert report.counts() == {"skipped-record": 1}


def test_misaligned_expand(tmp_path):
    rec = Record("x", "Visit Parisian shops", [Span(6, 11, "LOC")])
    report = ChangeLog()
    formats.write([rec], tmp_path / "out.jsonl", "nerkit", report)  # nerkit JSONL keeps character spans
    assert json.loads((tmp_path / "out.jsonl").read_text())["entities"][0]["end"] == 11
    report = ChangeLog()
    formats.write([rec], tmp_path / "out.conll", "conll", report, misaligned="expand")
    assert report.counts() == {"expanded": 1}
    assert "Parisian B-LOC" in (tmp_path / "out.conll").read_text()


def test_strict_mode_refuses_changes(tmp_path):
    with pytest.raises(NerkitError, match="zero-length.*strict"):
        formats.convert(FIX / "doccano_problems.jsonl", tmp_path / "o.json", strict=True)
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("name,content,fmt,match", [
    ("bad.json", '[\n {"data": {"text": "a"}, "annotations": []}\n {"data": {"text": "b"}}\n]', "labelstudio",
     r"bad.json:3: invalid JSON: expected ',' or '\]'"),
    ("bad.jsonl", '{"text": "a", "label": []}\n{"text": "b", "label": [[0, 1]]}\n', "doccano",
     r"bad.jsonl:2 label 1: expected \[start, end, label\]"),
    ("cls.jsonl", '{"text": "Great movie!", "label": ["positive"]}\n', "doccano", "text classification export"),
    ("notext.json", '[{"data": {"a": 1, "b": 2}, "annotations": []}]', "labelstudio", 'no "text" field'),
    ("x.ann", "T1\tPER zero 4\tJohn\n", "brat", r"x.ann:1: text-bound annotation is not"),
    ("floats.jsonl", '{"text": "abc", "spans": [{"start": 0.5, "end": 2, "label": "X"}]}\n', "spacy",
     "offsets must be integers"),
    ("empty.json", "  \n", "labelstudio", "the file is empty"),
])
def test_malformed_exports_name_file_and_line(tmp_path, name, content, fmt, match):
    (tmp_path / name).write_text(content, encoding="utf-8")
    if name.endswith(".ann"):
        (tmp_path / "x.txt").write_text("John", encoding="utf-8")
    with pytest.raises(DataError, match=match):
        formats.read(tmp_path / name, fmt)


def test_claimed_text_realigns_or_drops():
    report = ChangeLog()
    text = "Paris and Paris again"
    s = formats.make_span(text, 1, 6, "LOC", "Paris", "f:1", report)
    assert s == Span(0, 5, "LOC") and report.counts() == {"realigned": 1}
    assert formats.make_span(text, 0, 5, "LOC", "Rome", "f:2", report) is None
    assert report.counts()["text-mismatch"] == 1


def test_sentences_from_lines_and_merge_when_a_span_crosses():
    rec = Record("d", "Angela Merkel\nvisited Paris.\nNew\nYork", [Span(0, 13, "PER"), Span(29, 37, "LOC")])
    report = ChangeLog()
    [doc] = formats.to_documents([rec], report)
    assert [s.words for s in doc.sentences] == [["Angela", "Merkel"], ["visited", "Paris", "."], ["New", "York"]]
    assert doc.sentences[2].tags == ["B-LOC", "I-LOC"] and report.counts() == {"sentences-merged": 1}
    assert doc.sentences[1].text == "visited Paris." and doc.sentences[1].offsets[1] == (8, 13)


def test_documents_round_trip_through_records():
    from nerkit.data import read_conll

    docs = read_conll(FIX / "iob2.conll")
    back = formats.to_documents(formats.from_documents(docs))
    assert [[(s.words, s.tags) for s in d.sentences] for d in back] == [[(s.words, s.tags) for s in d.sentences] for d in docs]


def test_label_studio_extra_annotations_are_counted_on_convert(tmp_path):
    report = formats.convert(FIX / "labelstudio_export.json", tmp_path / "out.jsonl", dst_fmt="doccano")
    assert report.counts()["extra-annotation"] == 2
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["label"] for o in out][:1] == [[[0, 13, "PER"], [22, 27, "LOC"]]]


def test_writes_are_atomic_and_leave_no_temporaries(tmp_path):
    formats.write([Record("a", T1, S1)], tmp_path / "x.json", "labelstudio")
    formats.write([Record("a", T1, S1)], tmp_path / "b", "brat")
    assert sorted(os.listdir(tmp_path)) == ["b", "x.json"]
    assert sorted(os.listdir(tmp_path / "b")) == ["a.ann", "a.txt", "annotation.conf"]
    assert "[entities]\nLOC\nPER\n" in (tmp_path / "b" / "annotation.conf").read_text()
    with pytest.raises(NerkitError, match="already holds other brat files"):
        formats.write([Record("other", T1, S1)], tmp_path / "b", "brat")


def test_cli_convert_prints_counts(tmp_path, capsys):
    assert main(["convert", str(FIX / "doccano_problems.jsonl"), str(tmp_path / "o.conll"), "--to", "conll"]) == 0
    out = capsys.readouterr().out
    assert "6 changes:" in out and "zero-length span dropped" in out and "overlapping span dropped" in out
    assert main(["convert", str(FIX / "doccano.jsonl"), str(tmp_path / "o.json")]) == 0
    assert "no changes" in capsys.readouterr().out
    assert main(["convert", str(FIX / "doccano.jsonl"), str(tmp_path / "o.x"), "--to", "nope"]) == 2
    assert "unknown format" in capsys.readouterr().err


def test_brat_span_across_a_line_break_round_trips(tmp_path):
    rec = Record("a", "New\nYork is big", [Span(0, 8, "LOC")])
    formats.write([rec], tmp_path / "b", "brat")
    assert (tmp_path / "b" / "a.ann").read_text() == "T1\tLOC 0 3;4 8\tNew York\n"
    report = ChangeLog()
    [back] = formats.read(tmp_path / "b", "brat", report)
    assert back.spans == rec.spans and back.text == rec.text and not report.changes


# ---------------------------------------------------------------- round trips (property tests)

LABELS = st.sampled_from(["PER", "LOC", "ORG", "MISC"])
TEXT = st.text(alphabet=st.sampled_from(list("abcXYZ é.,'-") + ["\n", "🎉", "0"]), min_size=1, max_size=40)


@st.composite
def records(draw, nested=True, edges_ok=True):
    out = []
    for i in range(draw(st.integers(1, 3))):
        text = draw(TEXT)
        spans = set()
        for _ in range(draw(st.integers(0, 5))):
            a = draw(st.integers(0, len(text) - 1))
            b = draw(st.integers(a + 1, len(text)))
            piece = text[a:b]
            if not piece.strip():
                continue
            if not edges_ok and (piece != piece.strip()):
                continue
            span = Span(a, b, draw(LABELS))
            if not nested and any(s.start < span.end and span.start < s.end for s in spans):
                continue
            spans.add(span)
        out.append(Record(f"r{i}", text, sorted(spans)))
    return out


def _round_trip(tmp_path, recs, fmt, name):
    path = tmp_path / name
    report = ChangeLog()
    formats.write(recs, path, fmt, report)
    back_report = ChangeLog()
    back = formats.read(path, fmt, back_report)
    return back, report, back_report


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(recs=records())
@pytest.mark.parametrize("fmt,name", [("labelstudio", "x.json"), ("doccano", "x.jsonl"), ("spacy", "x.jsonl")])
def test_span_formats_round_trip_exactly(tmp_path, fmt, name, recs):
    back, report, back_report = _round_trip(tmp_path, recs, fmt, name)
    assert [(r.id, r.text, r.spans) for r in back] == [(r.id, r.text, r.spans) for r in recs]
    assert not report.changes and not back_report.changes


@SETTINGS
@given(recs=records())
def test_brat_round_trips_exactly(tmp_path, recs):
    # brat's line-based .ann cannot hold a line break at a span's edge (it would be written as a fragment gap)
    assume(all(not (r.text[s.start] in "\n" or r.text[s.end - 1] in "\n") for r in recs for s in r.spans))
    back, report, back_report = _round_trip(Path(tempfile.mkdtemp(dir=tmp_path)), recs, "brat", "b")
    assert [(r.text, r.spans) for r in back] == [(r.text, r.spans) for r in recs]
    assert not report.changes and not back_report.changes


@pytest.mark.filterwarnings("ignore::UserWarning")  # nerkit's reader warns that it splits words at span edges
@SETTINGS
@given(recs=records(nested=False, edges_ok=False))
def test_nerkit_jsonl_round_trips_flat_spans_exactly(tmp_path, recs):
    assume(all(any(c.isalnum() for c in r.text) for r in recs))  # wordless texts are skipped (reported)
    back, report, back_report = _round_trip(tmp_path, recs, "nerkit", "x.jsonl")
    assert [(r.id, r.text, r.spans) for r in back] == [(r.id, r.text, r.spans) for r in recs]
    assert not report.changes
    from nerkit.data import read_jsonl, sentence_spans  # and nerkit's own reader sees the same entities

    docs = read_jsonl(tmp_path / "x.jsonl")
    assert [sentence_spans(d.sentences[0]) for d in docs] == [r.spans for r in recs]


WORD = st.one_of(st.from_regex(r"[A-Za-z]{1,6}", fullmatch=True), st.sampled_from([".", ",", "(", ")", "é"]))


@st.composite
def tokenized(draw):
    out = []
    for i in range(draw(st.integers(1, 3))):
        words = draw(st.lists(WORD, min_size=1, max_size=10))
        text = " ".join(words)
        starts = [sum(len(w) + 1 for w in words[:k]) for k in range(len(words))]
        spans, k = [], 0
        while k < len(words):
            if draw(st.booleans()):
                n = draw(st.integers(1, min(3, len(words) - k)))
                spans.append(Span(starts[k], starts[k + n - 1] + len(words[k + n - 1]), draw(LABELS)))
                k += n + draw(st.integers(0, 1))  # adjacent entities of one type exercise IOB1's B-
            else:
                k += 1
        out.append(Record(f"r{i}", text, spans))
    return out


@SETTINGS
@given(recs=tokenized())
@pytest.mark.parametrize("fmt", ["conll-iob1", "conll-iob2", "conll-bioes"])
def test_conll_round_trips_word_aligned_spans_exactly(tmp_path, fmt, recs):
    back, report, back_report = _round_trip(tmp_path, recs, fmt, "x.conll")
    assert [(r.text, r.spans) for r in back] == [(r.text, r.spans) for r in recs]
    assert not report.changes and not back_report.changes


@SETTINGS
@given(recs=records())
def test_conversion_chain_keeps_spans(tmp_path, recs):
    """Label Studio -> doccano -> spaCy -> Label Studio: identical records."""
    cur = tmp_path / "a.json"
    formats.write(recs, cur, "labelstudio")
    for fmt, name in [("doccano", "b.jsonl"), ("spacy", "c.jsonl"), ("labelstudio", "d.json")]:
        formats.convert(cur, tmp_path / name, None, fmt, strict=True)
        cur = tmp_path / name
    assert [(r.text, r.spans) for r in formats.read(cur)] == [(r.text, r.spans) for r in recs]
