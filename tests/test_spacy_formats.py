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
    assert records[0].spans == [Span(0, 13, "PER"), Span(22, 27, "LOC")]  # doc.ents by default
    assert not log.changes
    every = formats.read(tmp_path / "in.spacy", None, log, spans_key="*")  # entities and every span group
    assert every[0].spans == [Span(0, 6, "FIRST"), Span(0, 13, "PER"), Span(22, 27, "LOC"), Span(34, 40, "DATE")]
    assert main(["convert", str(tmp_path / "in.spacy"), str(tmp_path / "out.spacy")]) == 0
    back = read_docbin(tmp_path / "out.spacy")
    assert [d.text for d in back] == [T1, T2]
    assert [structure(d) for d in back] == [structure(d) for d in docs]


def test_docbin_for_training_and_from_other_formats(tmp_path):
    DocBin(docs=make_docs()).to_disk(tmp_path / "in.spacy")
    from nerkit.data import DataWarning

    with pytest.warns(DataWarning, match=r"entities from doc.ents and every span group"):
        docs = formats.load(tmp_path / "in.spacy", spans_key="*")  # nested spans kept, on a second tag layer
    s = docs[0].sentences[0]
    assert s.words == [t.text for t in make_docs()[0]]  # spaCy's own tokens (it splits the flag in two)
    assert s.tags[:4] == ["B-PER", "I-PER", "O", "B-LOC"]
    assert s.layers[0][:2] == ["B-FIRST", "O"]  # the span group's FIRST inside PER
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
    records = formats.read(path, None, log, spans_key="*")
    assert records[0].spans == [Span(0, 6, "FIRST"), Span(0, 13, "PER"), Span(22, 27, "LOC"), Span(34, 40, "DATE")]
    assert records[1].spans == [Span(0, 10, "ORG"), Span(17, 25, "PER")]
    assert "no-labels" not in log.counts()
    # as a DocBin: doc.ents by default, spaCy's own tokens as the words, what was not read said
    log = formats.ChangeLog()
    records = formats.read(path, None, log)
    assert records[0].spans == [Span(0, 13, "PER"), Span(22, 27, "LOC")]
    assert records[0].meta["words"] == [(t.idx, t.idx + len(t)) for t in make_docs()[0]]
    assert log.notes[1] == "entities from doc.ents; not read: span group 'sc' (2 spans), span group 'dates' (1 span) " \
                           "(--spans-key KEY chooses)"
    assert formats.read(path, None, log, spans_key="dates")[0].spans == [Span(34, 40, "DATE")]


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


# ---------------------------------------------------------------- the Doc's own tokens, sentences and structure


def annotated_doc(nlp, text, heads, ents):
    """A Doc as a spaCy pipeline leaves it: POS, lemmas, a dependency parse (so sentences), entities by token."""
    base = nlp(text)
    n = len(base)
    doc = spacy.tokens.Doc(nlp.vocab, words=[t.text for t in base], spaces=[bool(t.whitespace_) for t in base],
                           pos=["PROPN" if t.text[:1].isupper() else "NOUN" for t in base],
                           lemmas=[t.text.lower() for t in base], heads=heads, deps=["dep"] * n)
    doc.ents = [SpacySpan(doc, a, b, label) for a, b, label in ents]
    return doc


SILVER = "P. Smith's dog met Mary's cat. It's Bob's."


def silver_docs():
    nlp = spacy.blank("en")
    # tokens: P.|Smith|'s|dog|met|Mary|'s|cat|.|It|'s|Bob|'s|.  two sentences (heads within each)
    heads = [1, 3, 1, 4, 4, 7, 5, 4, 4, 10, 10, 10, 11, 10]
    return [annotated_doc(nlp, SILVER, heads, [(0, 2, "PER"), (5, 6, "PER"), (11, 12, "PER")])]


def test_docbin_words_are_spacys_tokens_and_sentences_the_docs(tmp_path):
    """The same data as DocBin and as CoNLL gives the same words, tags and sentences (spaCy's `'s` stays one token)."""
    docs = silver_docs()
    DocBin(docs=docs).to_disk(tmp_path / "silver.spacy")
    from nerkit.data import DataWarning

    with pytest.warns(DataWarning, match="words are spaCy's own tokens"):
        got = formats.load(tmp_path / "silver.spacy")
    sents = [s for d in got for s in d.sentences]
    expected = [[t.text for t in s] for s in docs[0].sents]
    assert [s.words for s in sents] == expected and "'s" in sents[0].words
    conll = "\n\n".join("\n".join(f"{t.text} {t.ent_iob_ + '-' + t.ent_type_ if t.ent_type_ else 'O'}" for t in s)
                        for s in docs[0].sents)
    (tmp_path / "silver.conll").write_text(conll + "\n", encoding="utf-8")
    same = formats.load(tmp_path / "silver.conll")
    assert [(s.words, s.tags) for s in sents] == [(s.words, s.tags) for d in same for s in d.sentences]
    log = formats.ChangeLog()
    formats.convert(tmp_path / "silver.spacy", tmp_path / "out.conll")
    assert formats.read(tmp_path / "out.conll", None, log) and not log.changes
    assert (tmp_path / "out.conll").read_text(encoding="utf-8").count("'s O") == 4


def test_spacy_convert_json_keeps_its_tokens_and_sentences(tmp_path):
    from spacy.training import docs_to_json

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    docs = [nlp("Mary's cat sat. It's Bob's. Then P. Jones left."), nlp("Ann's here. Yes.")]
    docs[0].ents = [SpacySpan(docs[0], 0, 1, "PER")]
    path = tmp_path / "train.json"
    path.write_text(json.dumps([docs_to_json(docs)]), encoding="utf-8")
    got = formats.load(path)
    sents = [s.words for d in got for s in d.sentences]
    assert sents == [[t.text for t in s] for d in docs for s in d.sents]  # 5 sentences, not 1 record per paragraph
    assert len(sents) == 5 and sents[0][:2] == ["Mary", "'s"]


def overlapping_docbin(path):
    """doc.ents with PER, and a span group "sc" of wide overlapping spans (what spancat data looks like)."""
    nlp = spacy.blank("en")
    doc = nlp("Ann Lee met Bob Ray in Oslo.")
    doc.ents = [SpacySpan(doc, 0, 2, "PER"), SpacySpan(doc, 3, 5, "PER")]
    doc.spans["sc"] = [SpacySpan(doc, 0, 5, "WIDE"), SpacySpan(doc, 3, 7, "WIDE")]
    DocBin(docs=[doc]).to_disk(path)
    return path


def tags(docs):
    return [t for d in docs for s in d.sentences for t in s.tags]


def test_spans_key_chooses_what_a_docbin_is_read_as(tmp_path, capsys):
    path = overlapping_docbin(tmp_path / "o.spacy")
    from nerkit.data import DataWarning

    with pytest.warns(DataWarning, match=r"entities from doc.ents; not read: span group 'sc' \(2 spans\)"):
        default = formats.load(path)
    assert tags(default) == ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "O", "O"]
    with pytest.warns(DataWarning, match="entities from span group 'sc'"):
        wide = formats.load(path, spans_key="sc")
    assert tags(wide) == ["B-WIDE"] + ["I-WIDE"] * 4 + ["O"] * 3
    assert wide[0].sentences[0].layers == [["O"] * 3 + ["B-WIDE"] + ["I-WIDE"] * 3 + ["O"]]  # the crossing one too
    with pytest.raises(DataError, match=r"no span group 'nope' \(span groups: sc"):
        formats.load(path, spans_key="nope")
    # The CLI option, on stats and convert (and train/evaluate: test_train_on_a_span_group)
    assert main(["stats", str(path), "--spans-key", "sc"]) == 0
    assert "WIDE" in capsys.readouterr().out
    assert main(["convert", str(path), str(tmp_path / "o.jsonl"), "--to", "doccano", "--spans-key", "sc"]) == 0
    assert "entities from span group 'sc'" in capsys.readouterr().out
    assert [e[2] for e in json.loads((tmp_path / "o.jsonl").read_text())["label"]] == ["WIDE", "WIDE"]
    conll = tmp_path / "x.conll"
    conll.write_text("Ann B-PER\n", encoding="utf-8")
    assert main(["stats", str(conll), "--spans-key", "sc"]) == 2
    assert "--spans-key applies to docbin, spacy-json, spacy files; " in capsys.readouterr().err


def test_several_span_groups_without_ents_ask_for_a_key(tmp_path):
    nlp = spacy.blank("en")
    doc = nlp("Ann met Bob.")
    doc.spans["a"] = [SpacySpan(doc, 0, 1, "PER")]
    DocBin(docs=[doc]).to_disk(tmp_path / "one.spacy")
    assert tags(formats.load(tmp_path / "one.spacy")) == ["B-PER", "O", "O", "O"]  # the only group
    doc.spans["b"] = [SpacySpan(doc, 2, 3, "PER")]
    DocBin(docs=[doc]).to_disk(tmp_path / "two.spacy")
    with pytest.raises(DataError, match=r"several span groups \(a, b\); choose one with --spans-key"):
        formats.load(tmp_path / "two.spacy")


def test_train_on_a_span_group(tmp_path, tiny_model):
    path = overlapping_docbin(tmp_path / "o.spacy")
    out = tmp_path / "model"
    assert main(["train", "--train", str(path), "--spans-key", "sc", "--model", str(tiny_model), "--max-steps", "1",
                 "--output", str(out)]) == 0
    labels = json.loads((out / "config.json").read_text(encoding="utf-8"))["id2label"].values()
    assert "B-WIDE" in labels and "B-PER" not in labels
    assert main(["evaluate", str(out), str(path), "--spans-key", "sc", "--backend", "torch"]) == 0


def test_docbin_written_back_keeps_tags_lemmas_and_parse(tmp_path, capsys):
    docs = silver_docs()
    docs[0].spans["sc"] = [SpacySpan(docs[0], 0, 3, "OWNER")]
    DocBin(docs=docs).to_disk(tmp_path / "a.spacy")
    assert main(["convert", str(tmp_path / "a.spacy"), str(tmp_path / "b.spacy")]) == 0
    out = capsys.readouterr().out
    assert "no changes" in out
    (back,) = read_docbin(tmp_path / "b.spacy")
    attrs = ["ORTH", "POS", "LEMMA", "DEP", "HEAD", "SENT_START", "ENT_IOB", "ENT_TYPE"]
    assert (back.to_array(attrs) == docs[0].to_array(attrs)).all()
    assert structure(back) == structure(docs[0])


def test_docbin_write_back_says_what_it_cannot_keep(tmp_path):
    docs = silver_docs()
    DocBin(docs=docs).to_disk(tmp_path / "a.spacy")
    (rec,) = formats.read(tmp_path / "a.spacy")
    # a new span on token boundaries: the Doc is kept, its entities replaced
    rec.spans = sorted(rec.spans + [Span(15, 18, "ACT")])  # "met"
    log = formats.ChangeLog()
    formats.write([rec], tmp_path / "b.spacy", None, log)
    (back,) = read_docbin(tmp_path / "b.spacy")
    assert not log.changes and back[0].pos_ == "PROPN" and back.has_annotation("DEP")
    assert ("met", "ACT") in [(e.text, e.label_) for e in back.ents]
    # a span edge inside a token ("Smith" of "Smith's" is fine; "Smi" is not): tokens re-split, parse lost, counted
    rec.spans = [Span(3, 6, "PER")]
    log = formats.ChangeLog()
    formats.write([rec], tmp_path / "c.spacy", None, log)
    (back,) = read_docbin(tmp_path / "c.spacy")
    assert log.counts() == {"spacy-attrs": 1, "word-split": 1}
    assert "POS, lemmas, dependencies" in log.details()[0] and "no changes" not in log.summary()
    assert [s.text for s in back.sents] == [s.text for s in docs[0].sents]  # sentences are kept all the same
    assert [(e.text, e.label_) for e in back.ents] == [("Smi", "PER")]


def test_doc_to_json_lines_keep_spacys_tokens_and_sentences(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("Mary's cat sat.  It's P. Jones' dog.")
    doc.ents = [SpacySpan(doc, 0, 1, "PER")]
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps(doc.to_json()) + "\n", encoding="utf-8")
    got = [s.words for d in formats.load(path) for s in d.sentences]
    assert got == [[t.text for t in s if not t.is_space] for s in doc.sents] and got[0][:2] == ["Mary", "'s"]
    # and written as Prodigy tasks, the tokens stay spaCy's
    formats.convert(path, tmp_path / "prodigy.jsonl", dst_fmt="spacy")
    tokens = json.loads((tmp_path / "prodigy.jsonl").read_text(encoding="utf-8"))["tokens"]
    assert [t["text"] for t in tokens] == [t.text for t in doc if not t.is_space]
