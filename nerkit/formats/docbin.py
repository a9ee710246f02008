"""spaCy's binary DocBin files (``.spacy``: ``doc.ents`` and span groups) and its JSON training format (what
``spacy convert --file-type json`` writes, v2 style: documents of paragraphs of tokens with BILUO tags).

Both go through spaCy itself (``DocBin``, ``json_to_docs``), an optional dependency: ``pip install 'nerkit[spacy]'``.
A record's spans are its entities and the spans of its span groups (one span in both is one annotation); the
exact split between ``doc.ents`` and each group is kept in ``Record.meta`` so a DocBin written back from an
unchanged record has the same entities and span groups.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from nerkit.formats.records import ChangeLog, Record, finish
from nerkit.errors import DataError, NerkitError
from nerkit.files import atomic_write_bytes, read_bytes
from nerkit.types import Span

META = "spacy"  # Record.meta key: {"ents": [[start, end, label]] or None (no entity annotation), "spans": {key: [...]}}
GROUP = "sc"  # the span group that receives overlapping spans, which doc.ents cannot hold (spancat's default key)


def _spacy():
    try:
        import spacy
    except ImportError:
        raise NerkitError("spaCy files need spaCy, which is not installed: pip install 'nerkit[spacy]'") from None
    return spacy


def _triples(spans) -> list[list]:
    return [[s.start_char, s.end_char, s.label_] for s in spans]


def _record(doc, rid: str, where: str, log: ChangeLog) -> Record:
    """A record for one spaCy Doc: its entities and span-group spans, the exact structure kept in meta."""
    ents = _triples(doc.ents) if doc.has_annotation("ENT_IOB") else None
    groups = {key: _triples(group) for key, group in doc.spans.items()}
    if ents is None and not any(groups.values()):
        log.add("no-labels", where, "no entity annotation and no span groups")
    located: list[tuple[Span, str]] = []
    seen: set[Span] = set()
    for what, items in [("ents", ents or [])] + [(f"spans[{k!r}]", v) for k, v in groups.items()]:
        for k, (a, b, label) in enumerate(items, 1):
            span = Span(a, b, label)
            if span not in seen:  # the same span as an entity and in a group is one annotation, not a duplicate
                seen.add(span)
                located.append((span, f"{where} {what} {k}"))
    # spaCy's tokens are not kept as the record's words: nerkit's word splitting is what it trains on.
    rec = Record(rid, doc.text, source=where, meta={META: {"ents": ents, "spans": groups}})
    return finish(rec, located, log)


def read(path: str | os.PathLike, log: ChangeLog) -> list[Record]:
    """A DocBin file: one record per Doc."""
    _spacy()
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    raw = read_bytes(path)
    try:
        docs = list(DocBin().from_bytes(raw).get_docs(Vocab()))
    except Exception as e:  # zlib, msgpack and spaCy each raise their own kind for a file that is not a DocBin
        raise DataError(path, None, f"is not a spaCy DocBin file ({type(e).__name__}: {e})") from None
    if not docs:
        raise DataError(path, None, "the DocBin holds no documents")
    name = Path(path).stem
    return [_record(doc, f"{name}#{i}", f"{path} doc {i}", log) for i, doc in enumerate(docs, 1)]


def read_json(path: str | os.PathLike, log: ChangeLog) -> list[Record]:
    """spaCy's JSON training format (``[{"id", "paragraphs": [{"raw"?, "sentences": [{"tokens": [...]}]}]}]``)."""
    _spacy()
    from spacy.training.converters import json_to_docs

    from nerkit.formats.jsonvalues import read_text

    text = read_text(path)
    try:
        docs = list(json_to_docs(text))
    except Exception as e:
        raise DataError(path, None, f"is not spaCy's JSON training format ({type(e).__name__}: {e})") from None
    if not docs:
        raise DataError(path, None, "no documents found")
    name = Path(path).stem
    return [_record(doc, f"{name}#{i}", f"{path} paragraph {i}", log) for i, doc in enumerate(docs, 1)]


def _doc(vocab, rec: Record, spans: Sequence[Span]):
    """A spaCy Doc with exactly the record's text, its tokens on nerkit's words split at every span edge."""
    from spacy.tokens import Doc

    from nerkit.data import split_words, tokenize

    text = rec.text
    offsets = rec.meta.get("words")
    if offsets is None:
        offsets = tokenize(text)[1]
    offsets = split_words([text[a:b] for a, b in offsets], list(map(tuple, offsets)),
                          [c for s in spans for c in (s.start, s.end)])[1]
    words: list[str] = []
    spaces: list[bool] = []
    pos = 0
    for a, b in [*offsets, (len(text), len(text))]:
        gap = text[pos:a]
        # spaCy keeps one space after a token as its trailing whitespace, and any other whitespace as a token.
        if gap.startswith(" ") and words:
            spaces[-1] = True
            gap = gap[1:]
        if gap:
            words.append(gap)
            spaces.append(False)
        if b > a:
            words.append(text[a:b])
            spaces.append(False)
        pos = b
    doc = Doc(vocab, words=words, spaces=spaces)
    assert doc.text == text, "spaCy Doc text differs from the record's"
    return doc


def _char_spans(doc, items: Sequence, where: str) -> list:
    out = []
    for a, b, label in items:
        span = doc.char_span(a, b, label=label, alignment_mode="strict")
        if span is None:  # cannot happen: tokens are split at every span edge
            raise NerkitError(f"{where}: span [{a}, {b}) {label} does not fall on token boundaries")
        out.append(span)
    return out


def write(records: Sequence[Record], path: str | os.PathLike, log: ChangeLog) -> None:
    """A DocBin file, one Doc per record: non-overlapping spans as ``doc.ents``; when spans overlap, all of them
    in span group "sc" as well (reported). A record read from a DocBin and unchanged keeps its ents and groups."""
    _spacy()
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    vocab = Vocab()
    db = DocBin(store_user_data=False)
    for r in records:
        kept = r.meta.get(META)
        if kept is not None:
            union = {Span(a, b, lab) for a, b, lab in (kept["ents"] or [])}
            union |= {Span(a, b, lab) for v in kept["spans"].values() for a, b, lab in v}
            if union != set(r.spans):
                kept = None  # changed since it was read: written from its spans like any other record
        if kept is not None:
            ents, groups = kept["ents"], kept["spans"]
        else:
            ents, groups = [], {}
            for s in sorted(r.spans, key=lambda s: (-(s.end - s.start), s.start, s.label)):
                if any(e[0] < s.end and s.start < e[1] for e in ents):
                    log.add("ents-overlap", r.source or r.id, f"[{s.start}, {s.end}) {s.label}")
                    groups = {GROUP: [[s.start, s.end, s.label] for s in r.spans]}
                else:
                    ents.append([s.start, s.end, s.label])
            ents.sort()
        all_spans = [Span(a, b, lab) for a, b, lab in (ents or [])] + [Span(a, b, lab) for v in groups.values() for a, b, lab in v]
        doc = _doc(vocab, r, all_spans)
        if ents is not None:
            doc.set_ents(_char_spans(doc, ents, r.source), default="outside")
        for key, items in groups.items():
            doc.spans[key] = _char_spans(doc, items, r.source)
        db.add(doc)
    atomic_write_bytes(path, db.to_bytes())
