"""Data reading/writing, tokenization, span/tag conversion and statistics, on small hand-written inputs."""
import hashlib
import json
import os
import warnings
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerkit.data import (
    DataWarning,
    format_stats,
    load,
    read_conll,
    read_conll_with_report,
    read_jsonl,
    read_jsonl_with_report,
    sentence_spans,
    spans_to_tags,
    stats,
    tokenize,
    write_conll,
    write_jsonl,
)
from nerkit.errors import DataError, NerkitError
from nerkit.files import fingerprint
from nerkit.words import INVISIBLE
from nerkit.scheme import LabelScheme
from nerkit.types import Document, Sentence, Span


def put(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records)


def tags_of(docs):
    return [s.tags for d in docs for s in d.sentences]


# ---------------------------------------------------------------- CoNLL

DOCS = """\
Hello O
Ann B-PER

-DOCSTART- -X- -X- O

EU B-ORG
rejects O

Bob B-PER
Smith I-PER
-DOCSTART- -X- -X- O
-DOCSTART- -X- -X- O

Paris B-LOC
"""


def test_conll_documents_ids_and_sources(tmp_path):
    p = put(tmp_path, "d.txt", DOCS)
    docs, report = read_conll_with_report(p)
    # Sentences before the first -DOCSTART- form a document; the empty DOCSTART block makes none.
    assert [d.id for d in docs] == ["d.txt#1", "d.txt#2", "d.txt#3"]
    assert [[s.words for s in d.sentences] for d in docs] == [
        [["Hello", "Ann"]], [["EU", "rejects"], ["Bob", "Smith"]], [["Paris"]]]
    assert [s.source for d in docs for s in d.sentences] == [f"{p}:1", f"{p}:6", f"{p}:9", f"{p}:14"]
    assert all(s.doc_id == d.id for d in docs for s in d.sentences)
    assert report.scheme is LabelScheme.IOB2 and report.violations == {} and report.n_lines == 14


def test_conll_multi_column_tabs_and_spaces(tmp_path):
    p = put(tmp_path, "t.tsv", "EU\tNNP\tB-NP\tB-ORG\nNew York\tNNP\tI-NP\tB-LOC\r\n\nrejects  VBZ   B-VP O\n")
    docs = read_conll(p)
    assert [s.words for d in docs for s in d.sentences] == [["EU", "New York"], ["rejects"]]
    assert tags_of(docs) == [["B-ORG", "B-LOC"], ["O"]]


def test_conll_without_docstart_reads_independent_sentences(tmp_path):
    # No -DOCSTART- (WNUT-17): nothing says sentences belong together, so none borrows another's context.
    p = put(tmp_path, "w.txt", "a O\n\nb B-PER\n\nc O\n")
    docs = read_conll(p)
    assert [len(d.sentences) for d in docs] == [1, 1, 1]
    assert [d.sentences[0].doc_id for d in docs] == [d.id for d in docs]


def test_conll_bom_and_crlf(tmp_path):
    p = put(tmp_path, "b.txt", "\ufeffAnn B-PER\r\nlives O\r\n")
    assert read_conll(p)[0].sentences[0].words == ["Ann", "lives"]


def test_conll_iob1_is_converted_to_iob2(tmp_path):
    p = put(tmp_path, "iob1.txt", "U.N. I-ORG\nofficial O\nEkeus I-PER\nheads O\nfor O\nBaghdad I-LOC\n\n"
                                  "Peter I-PER\nPaul B-PER\nMary B-PER\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # valid IOB1 must not warn
        docs, report = read_conll_with_report(p)
    assert report.scheme is LabelScheme.IOB1
    assert tags_of(docs) == [["B-ORG", "O", "B-PER", "O", "O", "B-LOC"], ["B-PER", "B-PER", "B-PER"]]


def test_conll_bioes_and_explicit_scheme(tmp_path):
    p = put(tmp_path, "e.txt", "Ann S-PER\nof O\nNew B-LOC\nYork E-LOC\nCity E-LOC\n")
    # The scheme may be named in any case; the stray "E-LOC -> E-LOC" is repaired with a warning.
    with pytest.warns(DataWarning, match=r"e\.txt: 1 invalid BIOES.*'E-LOC -> E-LOC' x1 \(first at line 5\)"):
        docs, report = read_conll_with_report(p, scheme="bioes")
    assert report.scheme is LabelScheme.BIOES
    assert tags_of(docs) == [["B-PER", "O", "B-LOC", "I-LOC", "B-LOC"]]
    with pytest.raises(NerkitError, match="unknown tag scheme 'XYZ'"):
        read_conll(p, scheme="XYZ")


def test_conll_invalid_transitions_warn_with_counts_and_lines(tmp_path):
    p = put(tmp_path, "v.txt", "A B-PER\nb O\nc I-PER\n\nd B-LOC\ne O\nf I-PER\ng I-ORG\n")
    with pytest.warns(DataWarning) as rec:
        docs, report = read_conll_with_report(p, LabelScheme.IOB2)
    msg = str(rec[0].message)
    assert str(p) in msg and "3 invalid IOB2 tag transitions" in msg
    assert "'O -> I-PER' x2 (first at line 3)" in msg and "'I-PER -> I-ORG' x1 (first at line 8)" in msg
    assert report.violations == {"O -> I-PER": 2, "I-PER -> I-ORG": 1}
    assert report.first_lines == {"O -> I-PER": 3, "I-PER -> I-ORG": 8}
    assert tags_of(docs) == [["B-PER", "O", "B-PER"], ["B-LOC", "O", "B-PER", "B-ORG"]]  # repaired, nothing lost


@pytest.mark.parametrize(
    "content, line, problem",
    [
        ("", None, "no sentences found"),
        ("\n\n-DOCSTART- -X- -X- O\n\n", None, "no sentences found"),
        ("Ann B-PER\nlives\n", 2, "line has 1 column ('lives'); expected token and tag columns"),
        ("Ann B-PER\n\nBob PERSON\n", 3, "tag 'PERSON' is not O or B-/I-/E-/S-"),
        ("Ann X-PER\n", 1, "tag 'X-PER'"),
        ("Ann NNP B-PER\nBob NNP i-per\n", 2, "tag 'i-per'"),
        (b"Ann B-PER\nlives O\nin\xff\xfe O\n", 3, "invalid UTF-8 bytes b'\\xff' at byte 3 of the line"),
    ],
)
def test_conll_errors_name_file_line_and_problem(tmp_path, content, line, problem):
    p = put(tmp_path, "bad.txt", content)
    with pytest.raises(DataError) as e:
        read_conll(p)
    assert str(e.value).startswith(f"{p}:{line}: " if line else f"{p}: ")
    assert problem in str(e.value)
    assert (e.value.path, e.value.line) == (str(p), line)


def test_missing_file(tmp_path):
    for fn in (read_conll, read_jsonl, load, fingerprint):
        with pytest.raises(DataError, match="no such file") as e:
            fn(tmp_path / "nope.txt")
        assert e.value.path == str(tmp_path / "nope.txt") and e.value.line is None


def test_write_conll_round_trip_is_atomic(tmp_path):
    docs = read_conll(put(tmp_path, "d.txt", DOCS))
    out = tmp_path / "out" / "w.conll"
    out.parent.mkdir()
    write_conll(docs, out)
    assert out.read_text().startswith("-DOCSTART- O\n\nHello O\nAnn B-PER\n\n-DOCSTART- O\n")
    again = read_conll(out)
    assert [d.id.split("#")[1] for d in again] == ["1", "2", "3"]
    assert [(s.words, s.tags) for d in again for s in d.sentences] == [(s.words, s.tags) for d in docs for s in d.sentences]
    assert os.listdir(out.parent) == ["w.conll"]  # no temporary file left behind
    with pytest.raises(ValueError, match="unlabelled"):
        write_conll([Document("x", [Sentence(["a"])])], out)
    assert os.listdir(out.parent) == ["w.conll"] and read_conll(out)  # failed write kept the old file intact


def _data_dir() -> Path:
    env = os.environ.get("NERKIT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.skipif(not (_data_dir() / "conll2003" / "train.txt").exists(), reason="CoNLL-2003 data not present")
def test_real_conll2003_train():
    path = _data_dir() / "conll2003" / "train.txt"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        docs, report = read_conll_with_report(path)
    assert report.scheme is LabelScheme.IOB2 and report.violations == {}
    d = stats(docs)
    assert (d["documents"], d["sentences"]) == (946, 14_041)
    assert set(d["entities_per_type"]) == {"PER", "ORG", "LOC", "MISC"}


# ---------------------------------------------------------------- tokenize


def test_tokenize_examples():
    words, offsets = tokenize("Dr. O'Neil's New York-based co. paid $3.5m (e.g. 1996-08-22)!")
    assert words == ["Dr", ".", "O'Neil's", "New", "York-based", "co", ".", "paid", "$", "3.5m",
                     "(", "e.g", ".", "1996-08-22", ")", "!"]
    assert tokenize("") == ([], [])
    assert tokenize("  \n\t ") == ([], [])


def test_tokenize_unicode_offsets_are_exact():
    text = "José visited 東京 — with 🎉👍🏽 and Zoë (cafe\u0301), हिन्दी ❤️!"
    words, offsets = tokenize(text)
    assert all(text[s:e] == w for w, (s, e) in zip(words, offsets))
    for w in ["José", "東京", "—", "🎉", "👍🏽", "Zoë", "cafe\u0301", "हिन्दी", "❤️"]:
        assert w in words  # decomposed accents, Indic vowel signs and emoji modifiers stay in their token


@given(st.text(max_size=40))
def test_tokenize_covers_every_non_space_character_exactly(text):
    words, offsets = tokenize(text)
    covered = set()
    prev_end = 0
    for w, (s, e) in zip(words, offsets):
        assert text[s:e] == w and prev_end <= s < e
        assert not any(c.isspace() for c in w)
        covered.update(range(s, e))
        prev_end = e
    # Invisible characters (soft hyphen, zero-width space, BOM, NUL...) belong to the word they are inside, else to none.
    assert covered >= {i for i, c in enumerate(text) if not c.isspace() and c not in INVISIBLE}
    assert all(text[i] in INVISIBLE for i in {i for i, c in enumerate(text) if not c.isspace()} - covered)


def test_tokenize_keeps_grapheme_clusters_whole():
    # Flags are pairs of regional indicators; ZWJ sequences, keycaps, tag flags and modifiers are one emoji.
    england = "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"
    text = f"Athens 🇬🇷🇫🇷 and 🇬 👩🏽\u200d💻 🏳️\u200d🌈 #️⃣ 1️⃣ {england} می\u200cخواهم क्\u200dष a🏻"
    words, offsets = tokenize(text)
    assert words == ["Athens", "🇬🇷", "🇫🇷", "and", "🇬", "👩🏽\u200d💻", "🏳️\u200d🌈", "#️⃣", "1️⃣", england,
                     "می\u200cخواهم", "क्\u200dष", "a🏻"]
    assert all(text[s:e] == w for w, (s, e) in zip(words, offsets))


# Letters, digits, marks, joiners, emoji pieces, regional indicators, tag characters, punctuation and spaces
# (left out: Prepend characters such as U+0600, which nerkit keeps as symbols of their own, and the virama, with
# which the regex module joins a consonant to any preceding cluster, '🇬्क', where Unicode 15.1's GB9c does not).
_GRAPHEME_ALPHABET = list("ab1#-'. \n") + ["\u0301", "\u093f", "\u20e3", "\ufe0f", "\u200c", "\u200d",
                                            "🇬", "🇷", "👍", "😀", "🏴", "🏽", "\U000E0067", "\U000E007F", "क", "ष"]


@given(st.lists(st.sampled_from(_GRAPHEME_ALPHABET), max_size=30).map("".join))
def test_tokenize_never_cuts_a_grapheme_cluster(text):
    import regex

    bounds = {m.start() for m in regex.finditer(r"\X", text)} | {len(text)}
    for s, e in tokenize(text)[1]:
        assert e in bounds  # a word or symbol never ends inside a user-perceived character
        assert s in bounds or text[s - 1].isspace()  # Unicode joins " \u0301" into one cluster; a word cannot


# ---------------------------------------------------------------- spans and tags


def test_spans_to_tags_and_sentence_spans():
    offsets = [(0, 3), (4, 7), (8, 11), (12, 15)]
    spans = [Span(0, 7, "PER"), Span(8, 11, "PER"), Span(12, 15, "LOC")]
    tags = spans_to_tags(offsets, spans)
    assert tags == ["B-PER", "I-PER", "B-PER", "B-LOC"]  # adjacent same-type entities stay apart
    s = Sentence(["Ann", "Lee", "Bob", "Rio"], tags, text="Ann Lee Bob Rio", offsets=offsets)
    assert sentence_spans(s) == spans
    with pytest.raises(ValueError, match="both cover word 0"):
        spans_to_tags([(0, 4)], [Span(0, 2, "A"), Span(2, 4, "B")])
    # Without text, a sentence's surface is its words joined by single spaces.
    assert sentence_spans(Sentence(["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"])) == [
        Span(0, 2, "ORG"), Span(11, 17, "MISC")]
    assert sentence_spans(Sentence(["x"])) == []


# ---------------------------------------------------------------- JSONL


def test_jsonl_spans_tags_spans_round_trip(tmp_path):
    text = "Angela Merkel met Emmanuel Macron in Paris on Monday."
    ents = [{"start": 0, "end": 13, "label": "PER"}, {"start": 18, "end": 33, "label": "PER"},
            {"start": 37, "end": 42, "label": "LOC"}]
    p = put(tmp_path, "r.jsonl", jsonl({"text": text, "entities": ents, "id": 7}, {"text": "Nothing here."}, {"text": "No one.", "entities": []}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        docs = read_jsonl(p)
    assert [d.id for d in docs] == ["7", "r.jsonl#2", "r.jsonl#3"]
    s = docs[0].sentences[0]
    assert (s.text, s.source, s.doc_id) == (text, f"{p}:1", "7")
    assert s.tags[:7] == ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC"]
    assert sentence_spans(s) == [Span(e["start"], e["end"], e["label"]) for e in ents]
    assert docs[1].sentences[0].tags is None  # no "entities": unlabelled
    assert docs[2].sentences[0].tags == ["O", "O", "O"]  # empty "entities": labelled, no entity
    out = tmp_path / "w.jsonl"
    write_jsonl(docs, out)
    assert [json.loads(x) for x in out.read_text().splitlines()][0] == {"id": "7", "text": text, "entities": ents}
    again = read_jsonl(out)
    assert [(s.text, s.tags) for d in again for s in d.sentences] == [(s.text, s.tags) for d in docs for s in d.sentences]


def test_jsonl_unicode_offsets(tmp_path):
    text = "Zoë met 李小龙 in Düsseldorf 🎉 and São\u0303 Paulo."
    names = [("Zoë", "PER"), ("李小龙", "PER"), ("Düsseldorf", "LOC"), ("São\u0303 Paulo", "LOC")]
    ents = [{"start": text.index(n), "end": text.index(n) + len(n), "label": lab} for n, lab in names]
    [doc] = read_jsonl(put(tmp_path, "u.jsonl", jsonl({"text": text, "entities": ents})))
    s = doc.sentences[0]
    assert all(text[a:b] == w for w, (a, b) in zip(s.words, s.offsets))
    assert [text[sp.start:sp.end] for sp in sentence_spans(s)] == [n for n, _ in names]


def test_jsonl_spans_inside_words_split_the_words(tmp_path):
    text = "The New York-based firm sold unhappiness."
    ents = [{"start": 4, "end": 12, "label": "LOC"},  # "New York" ends inside "York-based"
            {"start": 31, "end": 36, "label": "X"}]  # "happi" inside "unhappiness"
    p = put(tmp_path, "s.jsonl", jsonl({"text": "Fine."}, {"text": text, "entities": ents}))
    with pytest.warns(DataWarning, match=rf"2 spans did not fall on word boundaries; words were split at span edges \(first: {p}:2 \[4, 12\) LOC 'New York'\)"):
        docs, report = read_jsonl_with_report(p)
    assert (report.n_records, report.split_spans) == (2, 2)
    s = docs[1].sentences[0]
    assert s.words == ["The", "New", "York", "-based", "firm", "sold", "un", "happi", "ness", "."]
    assert s.tags == ["O", "B-LOC", "I-LOC", "O", "O", "O", "O", "B-X", "O", "O"]
    assert sentence_spans(s) == [Span(e["start"], e["end"], e["label"]) for e in ents]  # no span lost


def test_jsonl_overlapping_spans_go_on_separate_layers(tmp_path):
    rec = {"text": "New York City", "entities": [{"start": 4, "end": 13, "label": "LOC"}, {"start": 0, "end": 8, "label": "LOC"},
                                                 {"start": 0, "end": 8, "label": "LOC"}]}
    p = put(tmp_path, "o.jsonl", jsonl({"text": "ok"}, rec))
    with pytest.warns(DataWarning, match="1 entities were listed twice"):
        s = read_jsonl(p)[1].sentences[0]
    assert s.tags == ["B-LOC", "I-LOC", "O"] and s.layers == [["O", "B-LOC", "I-LOC"]]  # crossing: one layer down


@pytest.mark.parametrize(
    "line, problem",
    [
        ('{"text": "a", }', "invalid JSON: Expecting property name enclosed in double quotes at column 15"),
        ('[{"text": "a"}]', "expected a JSON object, got list (one JSON object per line, not a JSON array)"),
        ('{"entities": []}', 'record has no "text"'),
        ('{"text": 5}', '"text" must be a string, got int'),
        ('{"text": "a", "spans": []}', 'entities must be given as "entities" (found "spans")'),
        ('{"text": " , "}', ""),  # a lone comma is a word: no error (checked below)
        ('{"text": "   "}', '"text" has no words'),
        ('{"text": "ab", "entities": {"start": 0}}', '"entities" must be a list, got dict'),
        ('{"text": "ab", "entities": [{"start": 0, "end": 2}]}', "entity 0 is missing label"),
        ('{"text": "ab", "entities": [{"start": 0, "end": 3, "label": "X"}]}', "entity 0: range [0, 3) is empty or outside the text (length 2)"),
        ('{"text": "ab", "entities": [{"start": 1, "end": 1, "label": "X"}]}', "entity 0: range [1, 1) is empty"),
        ('{"text": "ab", "entities": [{"start": -1, "end": 1, "label": "X"}]}', "range [-1, 1)"),
        ('{"text": "a b", "entities": [{"start": 1, "end": 2, "label": "X"}]}', "entity 0: range [1, 2) covers only whitespace"),
        ('{"text": "ab", "entities": [{"start": "0", "end": 1, "label": "X"}]}', "start and end must be integers"),
        ('{"text": "ab", "entities": [{"start": 0, "end": 1, "label": "A B"}]}', "label must be a non-empty string without spaces"),
    ],
)
def test_jsonl_errors_name_file_line_and_problem(tmp_path, line, problem):
    p = put(tmp_path, "bad.jsonl", jsonl({"text": "fine"}, "", line))
    if not problem:
        assert len(read_jsonl(p)) == 2
        return
    with pytest.raises(DataError) as e:
        read_jsonl(p)
    assert str(e.value).startswith(f"{p}:3: ") and problem in str(e.value)


def test_jsonl_empty_and_bad_bytes(tmp_path):
    with pytest.raises(DataError, match="no records found"):
        read_jsonl(put(tmp_path, "e.jsonl", "\n\n"))
    with pytest.raises(DataError, match=r"b\.jsonl:2: invalid UTF-8 bytes b'\\xe9' at byte 14 of the line"):
        read_jsonl(put(tmp_path, "b.jsonl", b'{"text": "a"}\n{"text": "caf\xe9"}\n'))


def test_write_jsonl_from_conll_uses_surface_text(tmp_path):
    docs = read_conll(put(tmp_path, "d.txt", DOCS))
    out = tmp_path / "d.jsonl"
    write_jsonl(docs, out)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert recs[0] == {"id": "d.txt#1", "text": "Hello Ann", "entities": [{"start": 6, "end": 9, "label": "PER"}]}
    assert [r["id"] for r in recs] == ["d.txt#1", "d.txt#2/1", "d.txt#2/2", "d.txt#3"]
    assert recs[2]["entities"] == [{"start": 0, "end": 9, "label": "PER"}]
    again = read_jsonl(out)
    assert [s.tags for d in again for s in d.sentences] == tags_of(docs)


def test_load_dispatches_on_suffix(tmp_path):
    assert load(put(tmp_path, "a.jsonl", jsonl({"text": "Hi Ann", "entities": [{"start": 3, "end": 6, "label": "PER"}]})))[0].sentences[0].tags == ["O", "B-PER"]
    assert load(put(tmp_path, "a.JSON", jsonl({"text": "Hi"})))[0].sentences[0].words == ["Hi"]
    assert load(put(tmp_path, "a.conll", "Hi O\nAnn S-PER\n"))[0].sentences[0].tags == ["O", "B-PER"]
    assert load(put(tmp_path, "b.conll", "Hi O\nAnn I-PER\n"), scheme="IOB1")[0].sentences[0].tags == ["O", "B-PER"]


# ---------------------------------------------------------------- stats and fingerprint


def test_stats_and_format(tmp_path):
    p = put(tmp_path, "d.txt", DOCS)
    d = stats(read_conll(p))
    assert d == {
        "documents": 3, "sentences": 4, "tokens": 7, "entities": 4,
        "entities_per_type": {"PER": 2, "LOC": 1, "ORG": 1},  # by count, then name
        "o_share": 2 / 7, "longest_sentence": 2, "longest_source": f"{p}:1",
    }
    table = format_stats(d).splitlines()
    assert table[0].split() == ["documents", "3"]
    assert table[4].split() == ["PER", "2"]
    assert table[-2].split() == ["O", "share", "28.6%"]
    assert table[-1].endswith(f"2 words ({p}:1)")
    empty = stats([Document("x", [Sentence(["a", "b"])])])
    assert empty["o_share"] is None and "n/a" in format_stats(empty)


def test_fingerprint(tmp_path):
    p = put(tmp_path, "f.txt", "Ann B-PER\n")
    assert fingerprint(p) == hashlib.sha256(b"Ann B-PER\n").hexdigest()[:16]
    assert fingerprint(p) != fingerprint(put(tmp_path, "g.txt", "Ann I-PER\n"))


def test_a_joiner_before_a_flag_does_not_split_the_flag():
    # found by test_tokenize_never_cuts_a_grapheme_cluster: a ZWJ joins the next symbol, but regional indicators
    # pair up on their own, so the flag stays whole
    assert tokenize("#\u200d🇬🇬")[1] == [(0, 2), (2, 4)]
    assert tokenize("🇬\u200d🇬🇬")[1] == [(0, 2), (2, 4)]
    assert tokenize("👩🏽\u200d💻 ok")[1] == [(0, 4), (5, 7)]  # a zero-width-joined emoji stays one token
