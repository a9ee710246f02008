"""The record model every format converts through: a text and its character spans, and the log of every change
made to them while reading or writing (nothing is dropped or moved silently; see docs/annotation.md).
"""
from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from nerkit.errors import DataError, NerkitError
from nerkit.types import Span


# Every kind of change, worded as its resolution (the log prints these).
CHANGES: dict[str, str] = {
    "zero-length": "zero-length span dropped",
    "reversed": "span ending before it starts dropped",
    "out-of-range": "span outside the text dropped",
    "whitespace-only": "span covering only whitespace dropped",
    "utf16": "UTF-16 offsets converted to characters",
    "realigned": "span moved to where its quoted text occurs",
    "text-mismatch": "span whose quoted text is not in the text dropped",
    "duplicate": "duplicate span dropped",
    "multi-label": "region with several labels split into one span per label",
    "discontinuous": "discontinuous brat span replaced by its covering range",
    "overlap": "overlapping span dropped (the longer one kept)",
    "deeper": "span nested deeper than the tag columns dropped",
    "crossing": "span crossing another dropped (the tag columns of a layered file nest)",
    "trimmed": "whitespace trimmed from span edges",
    "word-split": "word split at a span edge",
    "expanded": "span expanded to word boundaries",
    "sentences-merged": "sentences joined where a span crossed a line break",
    "skipped-record": "record skipped (rejected, ignored, cancelled or never annotated)",
    "extra-annotation": "further annotation of a task skipped (the chosen or first submitted one kept)",
    "other-annotator": "annotation by an annotator not chosen with --annotator skipped",
    "ents-overlap": "overlapping span kept in span group 'sc' only (doc.ents cannot overlap)",
    "not-entity": "non-entity annotation ignored (relation, event, attribute, note, choice...)",
    "no-labels": "record without an annotation field read as having no entities",
    "tags-repaired": "invalid tag transition repaired (entity read leniently)",
    "label-renamed": "whitespace in a label replaced by '_'",
    "spacy-attrs": "spaCy token attributes not kept (tokens re-split at a span edge)",
    "not-shared": "text not annotated by every annotator left out of the merge",
}


@dataclass
class Record:
    """One annotated text: the canonical view every format converts through."""

    id: str
    text: str
    spans: list[Span] = field(default_factory=list)
    source: str = ""  # "file:line" (or "file") of the record, for messages
    where: list[str] = field(default_factory=list)  # location of each span, parallel to ``spans`` when known
    annotator: str | None = None
    meta: dict = field(default_factory=dict)  # "doc": id of the document a sentence-level record belongs to

    def span_where(self, i: int) -> str:
        """Location of span ``i`` for messages."""
        return self.where[i] if i < len(self.where) else self.source

    def located(self) -> list[tuple[Span, str]]:
        """Spans paired with their locations."""
        return [(s, self.span_where(i)) for i, s in enumerate(self.spans)]


def read_record(rid: object, text: str, where: str, annotator: object = None, doc: object = None) -> Record:
    """A record as a reader found it: id, annotator and document id as strings (absent ones left out)."""
    return Record(str(rid), text, source=where, annotator=None if annotator is None else str(annotator),
                  meta={"doc": str(doc)} if doc is not None else {})


@dataclass
class Change:
    """One change made to the annotations while reading or writing."""

    kind: str
    where: str
    detail: str


@dataclass
class ChangeLog:
    """Counts and locations of every change; ``strict`` turns the first change into an error."""

    strict: bool = False
    changes: list[Change] = field(default_factory=list)
    records_in: int = 0
    spans_in: int = 0
    records_out: int = 0
    spans_out: int = 0
    notes: list[str] = field(default_factory=list)  # how the data was read (not changes), e.g. whose tokens

    def note(self, text: str) -> None:
        """Say how the data was read (printed with the summary; not a change)."""
        if text not in self.notes:
            self.notes.append(text)

    def add(self, kind: str, where: str, detail: str = "") -> None:
        """Record a change (or raise in strict mode)."""
        if kind not in CHANGES:
            raise KeyError(kind)
        if self.strict:
            raise NerkitError(f"{where}: {CHANGES[kind]}{': ' + detail if detail else ''} (strict mode: nothing changed)")
        self.changes.append(Change(kind, where, detail))

    def counts(self) -> Counter:
        """Number of changes per kind."""
        return Counter(c.kind for c in self.changes)

    def summary(self) -> str:
        """One line per kind of change, or 'no changes'."""
        head = f"read {self.records_in} records with {self.spans_in} spans; wrote {self.records_out} records with {self.spans_out} spans"
        head += "".join(f"\nnote: {n}" for n in self.notes)
        counts = self.counts()
        if not counts:
            return head + "\nno changes"
        rows = [f"  {n:>6}  {CHANGES[k]}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        return head + f"\n{sum(counts.values())} changes:\n" + "\n".join(rows)

    def details(self, limit: int | None = 20) -> list[str]:
        """'where: resolution: detail' lines, the first ``limit`` of them."""
        items = self.changes if limit is None else self.changes[:limit]
        return [f"{c.where}: {CHANGES[c.kind]}{': ' + c.detail if c.detail else ''}" for c in items]


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def utf16_to_chars(text: str) -> list[int] | None:
    """Map UTF-16 code-unit offsets to character offsets (None when they coincide: no astral characters)."""
    if all(ord(c) < 0x10000 for c in text):
        return None
    out = []
    for i, c in enumerate(text):
        out.append(i)
        if ord(c) >= 0x10000:
            out.append(i)  # the low surrogate: an offset inside a character maps to the character
    out.append(len(text))
    return out


def make_span(text: str, start: object, end: object, label: object, claimed: str | None, where: str,
              log: ChangeLog, utf16: list[int] | None = None) -> Span | None:
    """Check one span read from a file; repair or drop it (reported), or raise DataError when malformed."""
    if not _is_int(start) or not _is_int(end):
        raise DataError(where, None, f"span offsets must be integers, got {start!r} and {end!r}")
    if not isinstance(label, str) or not label.strip():
        raise DataError(where, None, f"span label must be a non-empty string, got {label!r}")
    desc = f"[{start}, {end}) {label}"
    if start == end:
        log.add("zero-length", where, desc)
        return None
    if end < start:
        log.add("reversed", where, desc)
        return None
    ok = 0 <= start and end <= len(text) and (claimed is None or text[start:end] == claimed)
    if not ok and utf16 is not None and 0 <= start and end < len(utf16):
        s16, e16 = utf16[start], utf16[end]
        if s16 < e16 and (claimed is None or text[s16:e16] == claimed):
            # Tools written in JavaScript count UTF-16 code units, which differ from characters after an emoji.
            log.add("utf16", where, f"{desc} -> [{s16}, {e16})")
            start, end, ok = s16, e16, True
    if not ok and claimed:
        hits = [m.start() for m in re.finditer(re.escape(claimed), text)]
        if hits:
            best = min(hits, key=lambda h: (abs(h - start), h))
            log.add("realigned", where, f"{desc} {claimed!r} -> [{best}, {best + len(claimed)})")
            start, end, ok = best, best + len(claimed), True
        elif 0 <= start and end <= len(text):
            log.add("text-mismatch", where, f"{desc}: file says {claimed!r}, text has {text[start:end]!r}")
            return None
    if not ok:
        log.add("out-of-range", where, f"{desc} (text length {len(text)})")
        return None
    if not text[start:end].strip():
        log.add("whitespace-only", where, desc)
        return None
    return Span(start, end, label)


def finish(rec: Record, located: list[tuple[Span, str]], log: ChangeLog) -> Record:
    """Drop exact duplicates (reported), sort spans, and attach their locations."""
    seen: set[Span] = set()
    keep = []
    for span, where in located:
        if span in seen:
            log.add("duplicate", where, f"[{span.start}, {span.end}) {span.label}")
            continue
        seen.add(span)
        keep.append((span, where))
    keep.sort(key=lambda sw: sw[0])
    rec.spans = [s for s, _ in keep]
    rec.where = [w for _, w in keep]
    log.records_in += 1
    log.spans_in += len(rec.spans)
    return rec


def _trimmed(rec: Record, log: ChangeLog) -> list[tuple[Span, str]]:
    """Every span with its edges trimmed of whitespace (counted), and where it came from."""
    trimmed = []
    for span, where in rec.located():
        piece = rec.text[span.start:span.end]
        lead, trail = len(piece) - len(piece.lstrip()), len(piece) - len(piece.rstrip())
        if lead or trail:
            new = Span(span.start + lead, span.end - trail, span.label)
            log.add("trimmed", where, f"[{span.start}, {span.end}) -> [{new.start}, {new.end}) {span.label}")
            span = new
        trimmed.append((span, where))
    return trimmed


def trim(rec: Record, log: ChangeLog) -> list[Span]:
    """Every span of a record (they may nest or overlap), edges trimmed of whitespace; a span equal to another once
    trimmed is read once (counted)."""
    kept: dict[Span, str] = {}
    for span, where in _trimmed(rec, log):
        if span in kept:
            log.add("duplicate", where, f"[{span.start}, {span.end}) {span.label} (equal to another span "
                    "once whitespace is trimmed)")
            continue
        kept[span] = where
    return sorted(kept)


def flatten(rec: Record, log: ChangeLog) -> list[Span]:
    """One layer of spans for token tags: edges trimmed of whitespace; of overlapping spans the longer kept."""
    trimmed = _trimmed(rec, log)
    # Longest first, then leftmost: nested spans resolve to the outer one, which carries the most annotation.
    kept: list[Span] = []
    for span, where in sorted(trimmed, key=lambda sw: (-(sw[0].end - sw[0].start), sw[0].start, sw[0].label)):
        clash = next((k for k in kept if k.start < span.end and span.start < k.end), None)
        if clash is not None:
            if clash != span:
                log.add("overlap", where, f"dropped [{span.start}, {span.end}) {span.label} "
                           f"{rec.text[span.start:span.end]!r}, kept [{clash.start}, {clash.end}) {clash.label}")
            else:  # two spans that became one after trimming (or widening): one of them goes, and is counted
                log.add("duplicate", where, f"[{span.start}, {span.end}) {span.label} (equal to another span "
                        "once whitespace is trimmed)")
            continue
        kept.append(span)
    return sorted(kept)


def doc_groups(records: Sequence[Record]) -> list[tuple[str, list[Record]]]:
    """Consecutive records of one document (same ``meta["doc"]``) grouped; other records alone."""
    groups: list[tuple[str, list[Record]]] = []
    for r in records:
        doc = r.meta.get("doc")
        if doc is not None and groups and groups[-1][1][-1].meta.get("doc") == doc:
            groups[-1][1].append(r)
        else:
            groups.append((doc if doc is not None else r.id, [r]))
    return groups


def write_scheme(records: Sequence[Record], target: str | None, log: ChangeLog) -> str:
    """The tag scheme a token format writes: ``target``, or (None) the scheme every record was read in
    (``meta["scheme"]``), else IOB2; tags read in another scheme than the one written are said in a note."""
    found = {r.meta.get("scheme") for r in records}
    if target is None:
        target = found.pop() if len(found) == 1 and None not in found else "IOB2"
        found.add(target)
    other = sorted(f for f in found if f is not None and f != target)
    if other:
        log.note(f"tags written in {target}; read in {', '.join(other)} (same entities)")
    return target


def sentence_ranges(words: Sequence[tuple[int, int]], bounds: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sentences (character ``bounds`` as a tool gives them) as ranges from their first word to their last; a
    sentence without words (whitespace only) is left out."""
    starts = [a for a, _ in words]
    out = []
    for a, b in bounds:
        lo, hi = bisect_left(starts, a), bisect_left(starts, b)
        if lo < hi:
            out.append((words[lo][0], words[hi - 1][1]))
    return out
