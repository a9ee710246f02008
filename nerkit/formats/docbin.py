"""spaCy's binary DocBin files (``.spacy``: ``doc.ents`` and span groups) and its JSON training format (what
``spacy convert --file-type json`` writes, v2 style: documents of paragraphs of tokens with BILUO tags).

Both go through spaCy itself (``DocBin``, ``json_to_docs``), an optional dependency: ``pip install 'nerkit[spacy]'``.
A record's spans are the Doc's entities, or one span group (``--spans-key``; see ``choose_key``); its words are
the Doc's own tokens and its sentences the Doc's. The Doc itself is kept in ``Record.meta``, so a DocBin written
back has the same tokens, tags, lemmas, dependencies, entities and span groups, with the record's spans in
place of the ones read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from nerkit.formats.records import ChangeLog, Record, finish, sentence_ranges
from nerkit.errors import DataError, NerkitError
from nerkit.files import atomic_write_bytes, read_bytes
from nerkit.types import Span

META = "spacy"  # Record.meta key: {"ents": [[start, end, label]] or None (no entity annotation), "spans": {key: [...]},
#                 "key": what the record's spans were read from, "doc": the spaCy Doc itself (written back when it can be)}
GROUP = "sc"  # the span group that receives overlapping spans, which doc.ents cannot hold (spancat's default key)
ENTS = "doc.ents"  # --spans-key value (also "ents") that reads the entities
ALL = "*"  # --spans-key value that reads the entities and every span group together
# Token annotation a Doc may carry that a Doc rebuilt from words loses: (Doc.has_annotation name, what it is called).
_ATTRS = (("TAG", "tags"), ("POS", "POS"), ("MORPH", "morphology"), ("LEMMA", "lemmas"), ("DEP", "dependencies"))


def _spacy():
    try:
        import spacy
    except ImportError:
        raise NerkitError("spaCy files need spaCy, which is not installed: pip install 'nerkit[spacy]'") from None
    return spacy


def _triples(spans) -> list[list]:
    return [[s.start_char, s.end_char, s.label_] for s in spans]


def choose_key(docs: Sequence, spans_key: str | None, path: str | os.PathLike) -> str:
    """What a file's records take as their spans: ``spans_key`` (a span group, "doc.ents" or "*" for all) or by
    default ``doc.ents`` when the Docs have entity annotation, else their only span group."""
    return pick_key(any(d.has_annotation("ENT_IOB") for d in docs), sorted({k for d in docs for k in d.spans}),
                    spans_key, path)


def pick_key(has_ents: bool, keys: Sequence[str], spans_key: str | None, path: str | os.PathLike) -> str:
    """``choose_key`` for a file whose Docs have entities (``has_ents``) and these span group keys."""
    if spans_key in ("ents", ENTS):
        return ENTS
    if spans_key == ALL:
        return ALL
    if spans_key is not None:
        if spans_key not in keys:
            raise DataError(path, None, f"has no span group {spans_key!r} (span groups: {', '.join(keys) or 'none'}; "
                            f"--spans-key {ENTS} reads the entities)")
        return spans_key
    if has_ents or not keys:
        return ENTS
    if len(keys) == 1:
        return keys[0]
    raise DataError(path, None, f"has no entity annotation (doc.ents) and several span groups ({', '.join(keys)}); "
                    "choose one with --spans-key KEY (or --spans-key '*' for all of them)")


def _chosen(kept: dict, key: str) -> list[tuple[str, list]]:
    """The (what, spans) lists a record read under ``key`` takes its spans from."""
    if key == ENTS:
        return [("ents", kept["ents"] or [])]
    groups = [(f"spans[{k!r}]", v) for k, v in kept["spans"].items() if key == ALL or k == key]
    return ([("ents", kept["ents"] or [])] if key == ALL else []) + groups


def _sentences(doc, words: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """The Doc's sentences as character ranges from their first to their last word (None: no sentence annotation)."""
    if not doc.has_annotation("SENT_START"):
        return None
    return sentence_ranges(words, [(s.start_char, s.end_char) for s in doc.sents])


def _record(doc, rid: str, where: str, log: ChangeLog, key: str) -> Record:
    """A record for one spaCy Doc: the spans of ``key``, the Doc's own tokens as words (whitespace tokens are not
    words) and its sentences; the Doc and its whole span structure kept in meta for writing it back."""
    ents = _triples(doc.ents) if doc.has_annotation("ENT_IOB") else None
    groups = {k: _triples(group) for k, group in doc.spans.items()}
    kept = {"ents": ents, "spans": groups, "key": key, "doc": doc}
    absent = (ents is None if key == ENTS else key not in groups if key != ALL
              else ents is None and not any(groups.values()))
    if absent:
        log.add("no-labels", where, "no entity annotation" if key in (ENTS, ALL) else f"no span group {key!r}")
    located: list[tuple[Span, str]] = []
    seen: set[Span] = set()
    for what, items in _chosen(kept, key):
        for k, (a, b, label) in enumerate(items, 1):
            span = Span(a, b, label)
            if span not in seen:  # the same span as an entity and in a group is one annotation, not a duplicate
                seen.add(span)
                located.append((span, f"{where} {what} {k}"))
    words = [(t.idx, t.idx + len(t.text)) for t in doc if not t.text.isspace()]
    meta: dict = {META: kept, "words": words}
    sents = _sentences(doc, words)
    if sents is not None:
        meta["sents"] = sents
    return finish(Record(rid, doc.text, source=where, meta=meta), located, log)


def _records(docs: Sequence, name: str, where: str, path, log: ChangeLog, spans_key: str | None) -> list[Record]:
    key = choose_key(docs, spans_key, path)
    records = [_record(doc, f"{name}#{i}", f"{path} {where} {i}", log, key) for i, doc in enumerate(docs, 1)]
    note_read(log, key, [(r.meta[META]["ents"], r.meta[META]["spans"]) for r in records],
              sum(len(r.meta["words"]) for r in records), sum(len(r.meta.get("sents") or []) for r in records))
    return records


def note_read(log: ChangeLog, key: str, structures: Sequence[tuple[list | None, dict]], tokens: int,
              sents: int) -> None:
    """Say how spaCy data was read: its own tokens (and sentences), which spans, and which were not read."""
    log.note(f"words are spaCy's own tokens ({tokens:,})" + (f", sentences the Docs' own ({sents:,})" if sents else ""))
    unread: dict[str, int] = {}
    if key not in (ENTS, ALL) and any(ents for ents, _ in structures):
        unread[ENTS] = sum(len(ents or []) for ents, _ in structures)
    for _, groups in structures:
        for k, v in groups.items():
            if key not in (ALL, k):
                unread[k] = unread.get(k, 0) + len(v)
    read_from = {ENTS: "doc.ents", ALL: "doc.ents and every span group"}.get(key, f"span group {key!r}")
    log.note(f"entities from {read_from}" + (
        "; not read: " + ", ".join(f"{'doc.ents' if k == ENTS else f'span group {k!r}'} ({n:,} span{'s' * (n != 1)})"
                                   for k, n in unread.items())
        + " (--spans-key KEY chooses)" if unread else ""))


def read(path: str | os.PathLike, log: ChangeLog, spans_key: str | None = None) -> list[Record]:
    """A DocBin file: one record per Doc (spans: see ``choose_key``)."""
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
    return _records(docs, Path(path).stem, "doc", path, log, spans_key)


def read_json(path: str | os.PathLike, log: ChangeLog, spans_key: str | None = None) -> list[Record]:
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
    return _records(docs, Path(path).stem, "paragraph", path, log, spans_key)


def _doc(vocab, rec: Record, spans: Sequence[Span], log: ChangeLog):
    """A spaCy Doc with exactly the record's text, its tokens on the record's words (``meta["words"]``, else nerkit's)
    split at every span edge (counted), its sentences set when the record has them."""
    from spacy.tokens import Doc

    from nerkit.data import split_words, tokenize

    text = rec.text
    offsets = rec.meta.get("words")
    if offsets is None:
        offsets = tokenize(text)[1]
    _, offsets, cut = split_words([text[a:b] for a, b in offsets], list(map(tuple, offsets)),
                                  [c for s in spans for c in (s.start, s.end)])
    for s in spans:
        if s.start in cut or s.end in cut:
            log.add("word-split", rec.source or rec.id, f"[{s.start}, {s.end}) {s.label} {text[s.start:s.end]!r}")
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
    if rec.meta.get("sents"):
        starts = {a for a, _ in rec.meta["sents"]}
        for t in doc:
            t.is_sent_start = t.i == 0 or t.idx in starts
    return doc


def _char_spans(doc, items: Sequence, where: str) -> list:
    out = []
    for a, b, label in items:
        span = doc.char_span(a, b, label=label, alignment_mode="strict")
        if span is None:  # cannot happen: tokens are split at every span edge
            raise NerkitError(f"{where}: span [{a}, {b}) {label} does not fall on token boundaries")
        out.append(span)
    return out


def _flat_ents(r: Record, log: ChangeLog) -> tuple[list[list], list[list]]:
    """Non-overlapping spans as entities (longest first); when some overlap, every span for a span group too."""
    ents: list[list] = []
    overlapping = False
    for s in sorted(r.spans, key=lambda s: (-(s.end - s.start), s.start, s.label)):
        if any(e[0] < s.end and s.start < e[1] for e in ents):
            log.add("ents-overlap", r.source or r.id, f"[{s.start}, {s.end}) {s.label}")
            overlapping = True
        else:
            ents.append([s.start, s.end, s.label])
    return sorted(ents), ([[s.start, s.end, s.label] for s in r.spans] if overlapping else [])


def _layout(r: Record, log: ChangeLog) -> tuple[list | None, dict, set]:
    """The entities, span groups, and which of them differ from the Doc the record was read from (all when new)."""
    kept = r.meta.get(META)
    key = kept.get("key", ALL) if kept is not None else None
    if kept is not None and {Span(a, b, lab) for _, v in _chosen(kept, key) for a, b, lab in v} == set(r.spans):
        return kept["ents"], dict(kept["spans"]), set()  # unchanged: the Doc's own entities and groups
    if kept is not None and key not in (ENTS, ALL):  # a span group was read and changed: only it is replaced
        groups = dict(kept["spans"])
        groups[key] = [[s.start, s.end, s.label] for s in r.spans]
        return kept["ents"], groups, {key}
    ents, overlapping = _flat_ents(r, log)
    groups = dict(kept["spans"]) if kept is not None and key == ENTS else {}
    changed = {ENTS} | ({k for k in kept["spans"]} if kept is not None and key == ALL else set())
    if overlapping:
        extra, k = GROUP, 2
        while extra in groups:  # the Doc's own groups stay as they were
            extra, k = f"{GROUP}_{k}", k + 1
        groups[extra] = overlapping
        changed.add(extra)
    return ents, groups, changed


def _dropped(doc) -> list[str]:
    """What a Doc rebuilt from words would not have of ``doc``."""
    out = [name for attr, name in _ATTRS if doc.has_annotation(attr)]
    if any(t.ent_kb_id for t in doc):
        out.append("entity KB ids")
    return out


def write(records: Sequence[Record], path: str | os.PathLike, log: ChangeLog) -> None:
    """A DocBin file, one Doc per record: non-overlapping spans as ``doc.ents``; when spans overlap, all of them
    in span group "sc" as well (reported). A record read from a DocBin is written as its own Doc (tags, lemmas,
    dependencies, other span groups... kept) with the record's spans; only when a span edge falls inside one of
    its tokens is the Doc rebuilt, and what that loses is counted."""
    _spacy()
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    vocab = Vocab()
    db = DocBin(store_user_data=True)
    for r in records:
        ents, groups, changed = _layout(r, log)
        spans = [Span(a, b, lab) for a, b, lab in (ents or [])] + [Span(a, b, lab) for v in groups.values()
                                                                   for a, b, lab in v]
        kept = r.meta.get(META) or {}
        doc = kept.get("doc")
        if doc is not None and doc.text == r.text and changed:
            doc = doc.copy()
            if any(doc.char_span(s.start, s.end, alignment_mode="strict") is None for s in spans):
                lost = _dropped(doc)
                if lost:
                    log.add("spacy-attrs", r.source or r.id, ", ".join(lost))
                new = _doc(vocab, r, spans, log)
                new.cats, new.user_data = dict(doc.cats), dict(doc.user_data)
                doc, changed = new, {ENTS, *groups}
        elif doc is None or doc.text != r.text:
            doc, changed = _doc(vocab, r, spans, log), {ENTS, *groups}
        if ENTS in changed and ents is not None:
            doc.set_ents(_char_spans(doc, ents, r.source), default="outside")
        for key in changed - {ENTS}:
            if key in groups:
                doc.spans[key] = _char_spans(doc, groups[key], r.source)
            elif key in doc.spans:
                del doc.spans[key]
        db.add(doc)
    atomic_write_bytes(path, db.to_bytes())
