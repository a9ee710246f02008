"""Reading and writing NER data (CoNLL columns, JSON Lines), tokenization, span/tag conversion, statistics.

Everything read here comes out as IOB2-tagged ``Document``s; problems in the input are reported as
``DataError`` naming the file and line, or as ``DataWarning`` when nerkit can repair them.
"""
from __future__ import annotations

import json
import warnings
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from nerkit import files, words
from nerkit.errors import DataError, NerkitError
from nerkit.files import atomic_write_text
from nerkit.scheme import LabelScheme, chunks, convert, detect_scheme, split_tag, validate
from nerkit.types import Document, Sentence, Span

DOCSTART = "-DOCSTART-"
Offsets = list[tuple[int, int]]  # character range [start, end) of each word
SCHEME_ALIASES = {"IOBES": "BIOES", "BILOU": "BIOES", "BIO": "IOB2", "IOB": "IOB2"}


class DataWarning(UserWarning):
    """Input data had problems that nerkit repaired (invalid tag transitions, spans inside words)."""


@dataclass
class ConllReadReport:
    """What reading a CoNLL file found: the tag scheme, invalid transitions repaired, lines read."""

    scheme: LabelScheme
    violations: dict[str, int] = field(default_factory=dict)  # kind (e.g. "O -> I-PER") -> count
    first_lines: dict[str, int] = field(default_factory=dict)  # kind -> line of its first occurrence
    n_lines: int = 0


@dataclass
class JsonlReadReport:
    """What reading a JSONL file found: records read and spans whose edges fell inside words."""

    n_records: int = 0
    split_spans: int = 0
    first_split: str | None = None  # "file:line [start, end) LABEL" of the first such span


def _scheme(scheme: LabelScheme | str | None) -> LabelScheme | None:
    if scheme is None or isinstance(scheme, LabelScheme):
        return scheme
    name = SCHEME_ALIASES.get(scheme.upper(), scheme.upper())
    if name not in LabelScheme.__members__:
        raise NerkitError(f"unknown tag scheme {scheme!r}; expected IOB1, IOB2 or BIOES")
    return LabelScheme(name)


# ---------------------------------------------------------------- CoNLL


def read_conll_with_report(path: str | Path, scheme: LabelScheme | str | None = None) -> tuple[list[Document], ConllReadReport]:
    """Read a CoNLL column file (token first, tag last) into IOB2 documents, with a report of what was found."""
    # One pass over the lines, then one scheme conversion: a straight sequence that reads best in one function.
    scheme = _scheme(scheme)
    name = Path(path).name
    docs: list[Document] = []
    sents: list[Sentence] = []  # all sentences in file order, tagged as in the file until converted below
    word_lines: list[list[int]] = []  # line of each word of each sentence, to place violations
    words: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    new_doc = True
    saw_docstart = False
    n_lines = 0

    def end_sentence() -> None:
        nonlocal words, tags, lines, new_doc
        if words:
            if new_doc:  # created lazily, so -DOCSTART- blocks without sentences leave no empty document
                docs.append(Document(f"{name}#{len(docs) + 1}"))
                new_doc = False
            sents.append(Sentence(words, tags, doc_id=docs[-1].id, source=f"{path}:{lines[0]}"))
            docs[-1].sentences.append(sents[-1])
            word_lines.append(lines)
        words, tags, lines = [], [], []

    for n, line in files.lines(path):
        n_lines = n
        # Tab-separated files may have spaces inside tokens; otherwise ASCII spaces separate columns. Only ASCII
        # space and tab ever do: a no-break space (U+00A0) or other Unicode space is part of the token.
        parts = line.split("\t") if "\t" in line else line.split(" ")
        cols = [c for c in (c.strip(" ") for c in parts) if c]
        if not cols:
            end_sentence()
        elif cols[0] == DOCSTART:
            end_sentence()
            new_doc = saw_docstart = True
        elif len(cols) < 2:
            raise DataError(path, n, f"line has 1 column ({cols[0]!r}); expected token and tag columns")
        else:
            try:
                if any(ch.isspace() for ch in cols[-1]):  # e.g. "B-NP B-ORG" from a tab/space mix
                    raise ValueError(cols[-1])
                split_tag(cols[-1])
            except ValueError:
                problem = (f"tag {cols[-1]!r} is not O or B-/I-/E-/S- followed by a type without spaces (e.g. B-PER); "
                           "columns are separated by tabs, or by ASCII spaces when the line has no tab")
                raise DataError(path, n, problem) from None
            words.append(cols[0])
            tags.append(cols[-1])
            lines.append(n)
    end_sentence()
    if not sents:
        raise DataError(path, None, "no sentences found (the file is empty or has only blank and -DOCSTART- lines)")
    if not saw_docstart:
        # Without -DOCSTART- markers nothing says which sentences belong together (WNUT-17 is unrelated posts),
        # so each sentence is its own document and never borrows context from its neighbours.
        docs = [Document(f"{name}#{i + 1}", [s]) for i, s in enumerate(sents)]
        for d in docs:
            d.sentences[0].doc_id = d.id

    sequences = [s.tags for s in sents]
    scheme = scheme or detect_scheme(sequences)
    found = validate(sequences, scheme)
    report = ConllReadReport(scheme, dict(found.counts), n_lines=n_lines)
    for kind, (si, pos) in found.first.items():
        report.first_lines[kind] = word_lines[si][min(pos, len(word_lines[si]) - 1)]  # pos == len: at sentence end
    if found:
        detail = "; ".join(f"'{k}' x{c} (first at line {report.first_lines[k]})" for k, c in found.counts.most_common())
        warnings.warn(
            f"{path}: {found.total()} invalid {scheme.value} tag transitions, "
            f"repaired by reading entities leniently: {detail}",
            DataWarning,
            stacklevel=2,
        )
    for s in sents:
        s.tags = convert(s.tags, scheme)  # through chunks(), which is lenient: this also repairs the violations
    return docs, report


def read_conll(path: str | Path, scheme: LabelScheme | str | None = None) -> list[Document]:
    """Read a CoNLL column file into IOB2 documents (scheme auto-detected when None)."""
    return read_conll_with_report(path, scheme)[0]


def write_conll(docs: Iterable[Document], path: str | Path) -> None:
    """Write documents as two-column CoNLL (``word tag``), each document opened by a ``-DOCSTART- O`` line."""

    def out_lines() -> Iterator[str]:
        for doc in docs:
            yield f"{DOCSTART} O\n\n"
            for s in doc.sentences:
                if not s.words:
                    continue
                if s.tags is None:
                    raise ValueError(f"{s.source or doc.id}: cannot write an unlabelled sentence as CoNLL")
                yield "".join(f"{w} {t}\n" for w, t in zip(s.words, s.tags)) + "\n"

    atomic_write_text(path, "".join(out_lines()))


# ---------------------------------------------------------------- tokenization and spans


def tokenize(text: str) -> tuple[list[str], Offsets]:
    """Split text into words with exact offsets (see ``nerkit.words.tokenize``: one splitter for data and models)."""
    return words.tokenize(text)


def spans_to_tags(offsets: Offsets, spans: Iterable[Span]) -> list[str]:
    """IOB2 tags for words at ``offsets``: a word belongs to the span it overlaps. Raises ValueError on a shared word."""
    tags = ["O"] * len(offsets)
    owner: list[Span | None] = [None] * len(offsets)
    starts, ends = [s for s, _ in offsets], [e for _, e in offsets]
    for span in sorted(spans):
        # Words are sorted and disjoint, so the words a span overlaps form one run, found by bisection.
        lo, hi = bisect_right(ends, span.start), bisect_left(starts, span.end)
        for i in range(lo, hi):
            if owner[i] is not None:
                raise ValueError(f"spans {owner[i]} and {span} both cover word {i} at {offsets[i]}")
            owner[i] = span
            tags[i] = f"{'B' if i == lo else 'I'}-{span.label}"
    return tags


def sentence_spans(sentence: Sentence) -> list[Span]:
    """The sentence's entities as character spans of its text (``Sentence.surface()``)."""
    if sentence.tags is None:
        return []
    _, offsets = sentence.surface()
    return [Span(offsets[s][0], offsets[e - 1][1], label) for label, s, e in chunks(sentence.tags)]


def split_words(words: list[str], offsets: Offsets, cuts: Iterable[int]) -> tuple[list[str], Offsets, set[int]]:
    """Split words at the character positions ``cuts`` that fall strictly inside them; also return those positions."""
    starts = [s for s, _ in offsets]
    inner: dict[int, set[int]] = {}
    for c in cuts:
        i = bisect_right(starts, c) - 1
        if i >= 0 and offsets[i][0] < c < offsets[i][1]:
            inner.setdefault(i, set()).add(c)
    if not inner:
        return words, offsets, set()
    out_w, out_o = [], []
    for i, (w, (s, e)) in enumerate(zip(words, offsets)):
        edges = [s, *sorted(inner.get(i, ())), e]
        for a, b in zip(edges, edges[1:]):
            out_w.append(w[a - s : b - s])
            out_o.append((a, b))
    return out_w, out_o, {c for cs in inner.values() for c in cs}


# ---------------------------------------------------------------- JSON Lines


def _entities(path: str | Path, n: int, text: str, items: object) -> list[Span]:
    """Check a record's ``entities`` list and return it as sorted, non-overlapping spans."""
    if not isinstance(items, list):
        raise DataError(path, n, f'"entities" must be a list, got {type(items).__name__}')
    spans = []
    for k, ent in enumerate(items):
        what = f"entity {k}"
        if not isinstance(ent, dict):
            raise DataError(path, n, f"{what} must be an object with start, end and label, got {type(ent).__name__}")
        missing = [key for key in ("start", "end", "label") if key not in ent]
        if missing:
            raise DataError(path, n, f"{what} is missing {', '.join(missing)}")
        start, end, label = ent["start"], ent["end"], ent["label"]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
            raise DataError(path, n, f"{what}: start and end must be integers, got {start!r} and {end!r}")
        if not isinstance(label, str) or not label or any(ch.isspace() for ch in label):
            raise DataError(path, n, f"{what}: label must be a non-empty string without spaces, got {label!r}")
        if not 0 <= start < end <= len(text):
            raise DataError(path, n, f"{what}: range [{start}, {end}) is empty or outside the text (length {len(text)})")
        if not text[start:end].strip():
            raise DataError(path, n, f"{what}: range [{start}, {end}) covers only whitespace")
        spans.append(Span(start, end, label))
    spans.sort()
    for a, b in zip(spans, spans[1:]):
        if b.start < a.end:
            raise DataError(
                path, n, f"entities overlap: [{a.start}, {a.end}) {a.label} {text[a.start:a.end]!r} "
                f"and [{b.start}, {b.end}) {b.label} {text[b.start:b.end]!r}"
            )
    return spans


def read_jsonl_with_report(path: str | Path) -> tuple[list[Document], JsonlReadReport]:
    """Read JSON Lines records ``{"text", "entities": [{start, end, label}], "id"?}``, one document each."""
    name = Path(path).name
    docs: list[Document] = []
    report = JsonlReadReport()
    for n, line in files.lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            hint = " (one JSON object per line, not a JSON array)" if n == 1 and line.lstrip().startswith("[") else ""
            raise DataError(path, n, f"invalid JSON: {e.msg} at column {e.colno}{hint}") from None
        files.check_json_text(rec, path, n, line)
        if not isinstance(rec, dict):
            hint = " (one JSON object per line, not a JSON array)" if isinstance(rec, list) else ""
            raise DataError(path, n, f"expected a JSON object, got {type(rec).__name__}{hint}")
        if "text" not in rec:
            raise DataError(path, n, 'record has no "text"')
        text = rec["text"]
        if not isinstance(text, str):
            raise DataError(path, n, f'"text" must be a string, got {type(text).__name__}')
        words, offsets = tokenize(text)
        if not words:
            raise DataError(path, n, '"text" has no words')
        other = next((k for k in ("spans", "ents", "labels", "annotations") if k in rec), None)
        if "entities" not in rec and other:  # silently reading such a record as unlabelled would lose its entities
            raise DataError(path, n, f'entities must be given as "entities" (found "{other}")')
        # A missing "entities" key means unlabelled text (tags None); an empty list means "labelled, no entities".
        tags = None
        if rec.get("entities") is not None:
            spans = _entities(path, n, text, rec["entities"])
            # Edges inside a word would make the entity unrepresentable in word tags; split the word there instead.
            for sp in spans:
                words, offsets, cut = split_words(words, offsets, (sp.start, sp.end))
                if cut:
                    report.split_spans += 1
                    if report.first_split is None:
                        report.first_split = f"{path}:{n} [{sp.start}, {sp.end}) {sp.label} {text[sp.start:sp.end]!r}"
            tags = spans_to_tags(offsets, spans)
        report.n_records += 1
        doc_id = str(rec["id"]) if rec.get("id") is not None else f"{name}#{report.n_records}"
        sentence = Sentence(words, tags, doc_id=doc_id, source=f"{path}:{n}", text=text, offsets=offsets)
        docs.append(Document(doc_id, [sentence]))
    if not docs:
        raise DataError(path, None, "no records found (the file is empty)")
    if report.split_spans:
        warnings.warn(
            f"{path}: {report.split_spans} spans did not fall on word boundaries; words were split at span edges "
            f"(first: {report.first_split})",
            DataWarning,
            stacklevel=2,
        )
    return docs, report


def read_jsonl(path: str | Path) -> list[Document]:
    """Read a JSON Lines file of ``{"text", "entities"}`` records into one single-sentence document per record."""
    return read_jsonl_with_report(path)[0]


def write_jsonl(docs: Iterable[Document], path: str | Path) -> None:
    """Write one JSON record per sentence with character-offset entities (words joined by spaces if no text)."""

    def out_lines() -> Iterator[str]:
        for doc in docs:
            for k, s in enumerate(doc.sentences, 1):
                text, _ = s.surface()
                rec: dict = {"id": doc.id if len(doc.sentences) == 1 else f"{doc.id}/{k}", "text": text}
                if s.tags is not None:
                    rec["entities"] = [{"start": sp.start, "end": sp.end, "label": sp.label} for sp in sentence_spans(s)]
                yield json.dumps(rec, ensure_ascii=False) + "\n"

    atomic_write_text(path, "".join(out_lines()))


def load(path: str | Path, scheme: LabelScheme | str | None = None) -> list[Document]:
    """Read ``.jsonl``/``.json`` files as JSON Lines, anything else as CoNLL (``formats.load`` reads every format)."""
    if Path(path).suffix.lower() in (".jsonl", ".json"):
        return read_jsonl(path)
    return read_conll(path, scheme)


def check_labelled(docs: Iterable[Document], role: str) -> None:
    """Raise ``DataError`` at the first sentence without tags: ``role`` data (dev, test, evaluation) must be labelled."""
    for doc in docs:
        for s in doc.sentences:
            if s.tags is None:
                raise DataError(s.source or doc.id, None, f"unlabelled text, but {role} data must be labelled "
                                '(give each record an "entities" list; an empty list means no entities)')


# ---------------------------------------------------------------- statistics


def stats(docs: list[Document]) -> dict:
    """Counts of documents, sentences, tokens and entities (per type), O share and the longest sentence."""
    per_type: Counter = Counter()
    n_sent = n_tok = n_labelled = n_o = 0
    longest, where = 0, ""
    for doc in docs:
        for s in doc.sentences:
            n_sent += 1
            n_tok += len(s)
            if len(s) > longest:
                longest, where = len(s), s.source
            if s.tags is not None:
                n_labelled += len(s)
                n_o += s.tags.count("O")
                per_type.update(label for label, _, _ in chunks(s.tags))
    return {
        "documents": len(docs),
        "sentences": n_sent,
        "tokens": n_tok,
        "entities": sum(per_type.values()),
        "entities_per_type": dict(sorted(per_type.items(), key=lambda kv: (-kv[1], kv[0]))),
        "o_share": n_o / n_labelled if n_labelled else None,  # over labelled tokens only
        "longest_sentence": longest,
        "longest_source": where,
    }


def format_stats(d: dict) -> str:
    """A readable two-column table of ``stats()`` output."""
    rows = [(k, f"{d[k]:,}", "") for k in ("documents", "sentences", "tokens", "entities")]
    rows += [(f"  {label}", f"{c:,}", "") for label, c in d["entities_per_type"].items()]
    rows.append(("O share", "n/a" if d["o_share"] is None else f"{d['o_share']:.1%}", ""))
    where = f" ({d['longest_source']})" if d["longest_source"] else ""
    rows.append(("longest sentence", f"{d['longest_sentence']:,}", f" words{where}"))
    kw, vw = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    return "\n".join(f"{k:<{kw}}  {v:>{vw}}{note}" for k, v, note in rows)
