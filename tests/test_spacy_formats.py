"""spaCy data in every form users have it: DocBin files (ents and span groups), Doc.to_json() lines, v2 training
data as one JSON array of (text, annotations) pairs, and spaCy's JSON training format (``spacy convert``)."""
import json

import pytest

spacy = pytest.importorskip("spacy")
from spacy.tokens import DocBin, Span as SpacySpan  # noqa: E402

from nerkit import formats  # noqa: E402
from nerkit.cli import main  # noqa: E402
from nerkit.errors import DataError, NerkitError  # noqa: E402
from nerkit.types import Span  # noqa: E402

T1 = "Angela Merkel visited Paris 🇬🇷 on Monday."
T2 = "Apple Inc. hired Tim Cook."


def make_docs():
    nlp = spacy.blank("en")
    d1 = nlp(T1)
    d1.ents = [SpacySpan(d1, 0, 2, "PER"), SpacySpan(d1, 3, 4, "LOC")]
    d1.spans["sc"] = [SpacySpan(d1, 0, 1, "FIRST"), SpacySpan(d1, 0, 2, "PER")]
    d1.spans["dates"] = [SpacySpan(d1, 7, 8, "DATE")]
    d2 = nlp(T2)
    d2.ents = [SpacySpan(d2, 0, 2, "ORG"), SpacySpan(d2, 3, 5, "PER")]
    return [d1, d2]


def structure(doc):
    return ([(e.start_char, e.end_char, e.label_) for e in doc.ents],
            {k: [(s.start_char, s.end_char, s.label_) for s in g] for k, g in doc.spans.items()})


def read_docbin(path):
    from spacy.vocab import Vocab

    return list(DocBin().from_disk(path).get_docs(Vocab()))


def test_docbin_round_trip_keeps_ents_and_span_groups(tmp_path):
    docs = make_docs()
    DocBin(docs=docs).to_disk(tmp_path / "in.spacy")
    log = formats.ChangeLog()
    records = formats.read(tmp_path / "in.spacy", None, log)
    assert [r.text for r in records] == [T1, T2]
    assert records[0].spans == [Span(0, 6, "FIRST"), Span(0, 13, "PER"), Span(22, 27, "LOC"), Span(34, 40, "DATE")]
    assert not log.changes
    assert main(["convert", str(tmp_path / "in.spacy"), str(tmp_path / "out.spacy")]) == 0
    back = read_docbin(tmp_path / "out.spacy")
    assert [d.text for d in back] == [T1, T2]
    assert [structure(d) for d in back] == [structure(d) for d in docs]


def test_docbin_for_training_and_from_other_formats(tmp_path):
    DocBin(docs=make_docs()).to_disk(tmp_path / "in.spacy")
    from nerkit.data import DataWarning

    with pytest.warns(DataWarning, match=r"read as docbin with 1 changes \(1 x overlapping span dropped"):
        docs = formats.load(tmp_path / "in.spacy")  # nested spans flattened (longest kept), never silently
    s = docs[0].sentences[0]
    assert s.words[:4] == ["Angela", "Merkel", "visited", "Paris"] and "🇬🇷" in s.words
    assert s.tags[:4] == ["B-PER", "I-PER", "O", "B-LOC"]
    # nerkit JSONL with nested spans -> DocBin: non-overlapping spans as ents, all of them in span group "sc"
    src = tmp_path / "n.jsonl"
    src.write_text(json.dumps({"text": "New York City", "entities": [
        {"start": 0, "end": 13, "label": "LOC"}, {"start": 0, "end": 8, "label": "GPE"}]}) + "\n", encoding="utf-8")
    log = formats.convert(src, tmp_path / "n.spacy")
    assert log.counts()["ents-overlap"] == 1
    (doc,) = read_docbin(tmp_path / "n.spacy")
    assert structure(doc) == ([(0, 13, "LOC")], {"sc": [(0, 8, "GPE"), (0, 13, "LOC")]})


def test_doc_to_json_lines_read_ents_and_span_groups(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d.to_json(), ensure_ascii=False) + "\n" for d in make_docs()), encoding="utf-8")
    assert formats.detect_format(path) == "spacy"
    log = formats.ChangeLog()
    records = formats.read(path, None, log)
    assert records[0].spans == [Span(0, 6, "FIRST"), Span(0, 13, "PER"), Span(22, 27, "LOC"), Span(34, 40, "DATE")]
    assert records[1].spans == [Span(0, 10, "ORG"), Span(17, 25, "PER")]
    assert "no-labels" not in log.counts()


def test_a_file_with_no_annotation_field_anywhere_stops(tmp_path, capsys):
    nlp = spacy.blank("en")
    path = tmp_path / "plain.jsonl"  # Doc.to_json() of docs without entities has no "ents" key
    path.write_text("".join(json.dumps(nlp(t).to_json()) + "\n" for t in (T1, T2)), encoding="utf-8")
    with pytest.raises(DataError, match=r'no record has .*"ents"'):
        formats.convert(path, tmp_path / "out.jsonl")
    assert main(["convert", str(path), str(tmp_path / "out.jsonl")]) == 2
    assert "no record has" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()
    with pytest.raises(DataError, match="no record has"):
        formats.load(path)


def test_v2_training_data_as_one_json_array(tmp_path):
    path = tmp_path / "train.json"
    data = [[T2, {"entities": [[0, 10, "ORG"], [17, 25, "PER"]]}], ["Nothing here.", {"entities": []}]]
    path.write_text(json.dumps(data), encoding="utf-8")
    assert formats.detect_format(path) == "spacy"
    records = formats.read(path)
    assert [(r.text, r.spans) for r in records] == [(T2, [Span(0, 10, "ORG"), Span(17, 25, "PER")]),
                                                    ("Nothing here.", [])]
    assert [s.tags for d in formats.load(path) for s in d.sentences][0][:2] == ["B-ORG", "I-ORG"]


def test_spacy_convert_json_training_format(tmp_path):
    from spacy.training import docs_to_json

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp(T2)
    doc.ents = [SpacySpan(doc, 0, 2, "ORG"), SpacySpan(doc, 3, 5, "PER")]
    path = tmp_path / "spacy_convert.json"
    path.write_text(json.dumps([docs_to_json([doc])]), encoding="utf-8")
    assert formats.detect_format(path) == "spacy-json"
    (rec,) = formats.read(path)
    assert (rec.text, rec.spans) == (T2, [Span(0, 10, "ORG"), Span(17, 25, "PER")])


def test_recognised_but_unsupported_and_undecodable(tmp_path):
    (tmp_path / "x.spacy").write_bytes(b"not a docbin")
    with pytest.raises(DataError, match="is not a spaCy DocBin file"):
        formats.read(tmp_path / "x.spacy")
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(NerkitError, match="Python pickle .* not supported"):
        formats.detect_format(tmp_path / "model.pkl")
    # a DocBin under another name is told by its bytes, not read as UTF-8 text
    DocBin(docs=make_docs()).to_disk(tmp_path / "data.bin")
    assert formats.detect_format(tmp_path / "data.bin") == "docbin"
