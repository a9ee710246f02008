"""Records <-> IOB2 documents: the bridge from span-based annotation to the token tags training reads."""
from __future__ import annotations

import re
from bisect import bisect_right
from typing import Iterable, Sequence

from nerkit.formats.records import ChangeLog, Record, doc_groups, flatten, trim
from nerkit.data import sentence_spans, spans_to_layers, spans_to_tags, split_words, tokenize
from nerkit.errors import NerkitError
from nerkit.scheme import chunks
from nerkit.types import Document, Sentence, Span


def _line_ranges(text: str) -> list[tuple[int, int]]:
    out, pos = [], 0
    for m in re.finditer(r"\r\n|\r|\n", text):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, len(text)))
    return out


def to_documents(records: Sequence[Record], log: ChangeLog | None = None, misaligned: str = "split",
                 flat: bool = True, max_layers: int | None = None) -> list[Document]:
    """IOB2 documents for records: words from ``meta["words"]`` (offsets) or ``data.tokenize``, split (or spans expanded) where an edge falls
    inside a word, one sentence per ``meta["sents"]`` range or else per line of text, consecutive records of one
    ``meta["doc"]`` in one document. ``flat`` (token formats written out) keeps the longer of overlapping spans,
    counted; else nested and overlapping spans go on further tag layers (``Sentence.layers``), none dropped, or at
    most ``max_layers`` of them in all (a layered file's tag columns): the spans of deeper layers are counted."""
    if misaligned not in ("split", "expand"):
        raise NerkitError(f"misaligned must be 'split' or 'expand', got {misaligned!r}")
    log = log if log is not None else ChangeLog()
    docs: list[Document] = []
    for name, group in doc_groups(records):
        doc = Document(name)
        for rec in group:
            spans = flatten(rec, log) if flat else trim(rec, log)
            where = {s: w for s, w in rec.located()}
            if rec.meta.get("words") is not None:  # the source's own words (CoNLL, HF datasets): kept exactly
                offsets = [(a, b) for a, b in rec.meta["words"]]
                words = [rec.text[a:b] for a, b in offsets]
            else:
                words, offsets = tokenize(rec.text)
            if not words:
                log.add("skipped-record", rec.source or rec.id, "text has no words")
                continue
            if misaligned == "split":
                words, offsets, cut = split_words(words, offsets, [c for s in spans for c in (s.start, s.end)])
                for s in spans:
                    if s.start in cut or s.end in cut:
                        log.add("word-split", where.get(s, rec.source), f"[{s.start}, {s.end}) {s.label} {rec.text[s.start:s.end]!r}")
            else:
                spans = _expand(rec, spans, offsets, where, log, flat)
            # The source's own sentences (spaCy Docs) when it has them, else one sentence per line of text.
            sents = rec.meta.get("sents")
            ranges = _merge_ranges([(a, b) for a, b in sents] if sents else _line_ranges(rec.text), spans, rec, log)
            starts = [a for a, _ in offsets]
            for n, (a, b) in enumerate(ranges, 1):
                lo, hi = bisect_right(starts, a - 1), bisect_right(starts, b - 1)
                if lo >= hi:
                    continue
                sent_spans = [Span(s.start - a, s.end - a, s.label) for s in spans if a <= s.start and s.end <= b]
                offs = [(x - a, y - a) for x, y in offsets[lo:hi]]
                tags, *layers = spans_to_layers(offs, sent_spans) if not flat else [spans_to_tags(offs, sent_spans)]
                src = (rec.source if len(ranges) == 1 else f"{rec.source} sentence {n}" if sents
                       else f"{rec.source} line {rec.text.count(chr(10), 0, a) + 1}")
                if max_layers is not None:  # a layered file's columns: they nest, and there are so many
                    tags, *layers = _nesting_columns([tags, *layers], offs, a, rec.text, src, log)
                    if len(layers) >= max_layers:
                        _drop_deeper(layers[max_layers - 1:], offs, a, rec.text, src, max_layers, log)
                        layers = layers[:max_layers - 1]
                doc.sentences.append(Sentence(words[lo:hi], tags, doc.id, src, rec.text[a:b], offs, layers=layers))
        if doc.sentences:
            docs.append(doc)
    return docs


def _nesting_columns(cols: list[list[str]], offs: Sequence[tuple[int, int]], base: int, text: str, where: str,
                     log: ChangeLog) -> list[list[str]]:
    """Tag layers as a layered file's columns, each span inside one of the column before: a span that crosses one
    instead (no column can hold it nested) is counted, and its column left without it."""
    out = [cols[0]]
    for level, tags in enumerate(cols[1:], 2):
        outer = chunks(out[-1])
        kept = ["O"] * len(tags)
        for label, i, j in chunks(tags):
            if any(x <= i and j <= y for _, x, y in outer):
                kept[i:j] = tags[i:j]
            else:
                log.add("crossing", where, f"{_said(label, i, j, offs, base, text)} on nesting level {level}")
        if any(t != "O" for t in kept):
            out.append(kept)
    return out


def _drop_deeper(deeper: Sequence[Sequence[str]], offs: Sequence[tuple[int, int]], base: int, text: str, where: str,
                 columns: int, log: ChangeLog) -> None:
    """Count each span of the tag layers beyond ``columns`` (dropped: the file has no column for them)."""
    for level, tags in enumerate(deeper, columns + 1):
        for label, i, j in chunks(tags):
            log.add("deeper", where, f"{_said(label, i, j, offs, base, text)} on nesting level {level} of {columns} "
                                     "columns")


def _said(label: str, i: int, j: int, offs: Sequence[tuple[int, int]], base: int, text: str) -> str:
    """Words ``[i, j)`` of a sentence starting at ``base`` in ``text``, as a change names a span: its characters."""
    x, y = base + offs[i][0], base + offs[j - 1][1]
    return f"[{x}, {y}) {label} {text[x:y]!r}"


def _expand(rec: Record, spans: list[Span], offsets: list[tuple[int, int]], where: dict, log: ChangeLog,
            flat: bool = True) -> list[Span]:
    starts = [a for a, _ in offsets]
    out = []
    for s in spans:
        i = bisect_right(starts, s.start) - 1
        j = bisect_right(starts, s.end - 1) - 1
        a = offsets[i][0] if i >= 0 and offsets[i][0] < s.start < offsets[i][1] else s.start
        b = offsets[j][1] if j >= 0 and offsets[j][0] < s.end < offsets[j][1] else s.end
        new = Span(a, b, s.label)
        if new != s:
            log.add("expanded", where.get(s, rec.source), f"[{s.start}, {s.end}) -> [{a}, {b}) {s.label}")
        out.append(new)
    if not flat:  # nested spans may share words: they go on separate layers
        return sorted(set(out))
    # Expansion can make two spans share a word; flatten again so each word has one owner.
    return flatten(Record(rec.id, rec.text, out, rec.source, [where.get(s, rec.source) for s in spans]), log)


def _merge_ranges(ranges: list[tuple[int, int]], spans: Sequence[Span], rec: Record, log: ChangeLog) -> list[tuple[int, int]]:
    """Join consecutive line ranges that a span crosses (an entity never straddles sentences)."""
    out = [list(ranges[0])]
    for a, b in ranges[1:]:
        crossing = next((s for s in spans if s.start < a and s.end > out[-1][1]), None)
        if crossing is not None:
            log.add("sentences-merged", rec.source, f"[{crossing.start}, {crossing.end}) {crossing.label}")
            out[-1][1] = b
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def from_documents(docs: Iterable[Document]) -> list[Record]:
    """One record per sentence (text and offsets from ``Sentence.surface()``), ``meta["doc"]`` = document id,
    ``meta["words"]`` = the words' character ranges."""
    out = []
    for doc in docs:
        for k, s in enumerate(doc.sentences, 1):
            if not s.words:
                continue
            text, _ = s.surface()
            spans = sentence_spans(s)
            wheres = []
            m = re.match(r"^(.*):(\d+)$", s.source or "")
            _, offs = s.surface()
            for sp in spans:
                if m and s.text is None:  # CoNLL: one word per line, so the span's first word is line + index
                    idx = next(i for i, (a, _) in enumerate(offs) if a == sp.start)
                    wheres.append(f"{m.group(1)}:{int(m.group(2)) + idx}")
                else:
                    wheres.append(s.source or doc.id)
            rid = doc.id if len(doc.sentences) == 1 else f"{doc.id}/{k}"
            # The words go along, so that writing a token format gives back the same words (not a re-tokenization).
            out.append(Record(rid, text, spans, s.source or doc.id, wheres, meta={"doc": doc.id, "words": list(offs)}))
    return out
