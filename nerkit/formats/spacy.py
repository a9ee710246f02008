"""Prodigy / spaCy JSONL spans (and spaCy v2 training lines)."""
from __future__ import annotations

import json
import os
from bisect import bisect_right
from typing import Sequence

from nerkit.formats.jsonvalues import json_values
from nerkit.formats.records import (ChangeLog, Record, _is_int, finish, make_span, read_record, sentence_ranges,
                                    utf16_to_chars)
from nerkit.data import split_words, tokenize
from nerkit.errors import DataError
from nerkit.files import atomic_write_text


def _doc_json(rec: object) -> bool:
    """Whether a line is ``Doc.to_json()`` output (entities under "ents", span groups as a dict under "spans")."""
    return isinstance(rec, dict) and (isinstance(rec.get("spans"), dict) or isinstance(rec.get("ents"), list))


def _words(rec: dict, text: str) -> list[tuple[int, int]] | None:
    """The tool's own tokens (``Doc.to_json()`` and Prodigy write ``{"start", "end"}`` per token) as word ranges,
    whitespace tokens left out; None when there are none or they do not fit the text."""
    tokens = rec.get("tokens")
    if not isinstance(tokens, list) or not tokens:
        return None
    out, pos = [], 0
    for t in tokens:
        a, b = (t.get("start"), t.get("end")) if isinstance(t, dict) else (None, None)
        if not (_is_int(a) and _is_int(b) and pos <= a <= b <= len(text)):
            return None
        pos = b
        if not text[a:b].isspace() and b > a:
            out.append((a, b))
    return out or None


def read(path: str | os.PathLike, log: ChangeLog, spans_key: str | None = None) -> list[Record]:
    """Prodigy/spaCy JSONL ``{"text", "spans": [{start, end, label}]}`` (rejected/ignored answers skipped),
    ``Doc.to_json()`` lines (``"ents"`` or a span group ``"spans": {key: [...]}``, chosen as in a DocBin:
    ``docbin.choose_key``), or spaCy v2 training data ``["text", {"entities": [[start, end, label]]}]``, one per
    line or all in one JSON array. The tool's own tokens, where a line has them, are the words, and the Doc's
    sentences the sentences."""
    from nerkit.formats.docbin import ALL, ENTS, note_read, pick_key

    lines = list(json_values(path))
    docs = [rec for _, rec in lines if _doc_json(rec)]
    key = pick_key(any(isinstance(d.get("ents"), list) for d in docs),
                   sorted({k for d in docs if isinstance(d.get("spans"), dict) for k in d["spans"]}), spans_key,
                   path) if docs else ALL
    out = []
    for index, (line, rec) in enumerate(lines, 1):
        where = f"{path}:{line}"
        if isinstance(rec, list) and len(rec) == 2 and isinstance(rec[0], str) and isinstance(rec[1], dict):
            rec = {"text": rec[0], "entities": rec[1].get("entities", [])}
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            raise DataError(path, line, 'expected an object with a string "text" (or ["text", {"entities": ...}])')
        if rec.get("answer") in ("reject", "ignore"):
            log.add("skipped-record", where, f"answer {rec['answer']!r}")
            continue
        text = rec["text"]
        utf16 = utf16_to_chars(text)
        located = []
        groups: list[tuple[str, object]] = []  # (what, list of spans) in reading order
        if isinstance(rec.get("ents"), list) and key in (ENTS, ALL):
            groups.append(("ent", rec["ents"]))
        if isinstance(rec.get("spans"), dict):  # Doc.to_json(): span groups by key
            groups += [(f"spans[{k!r}]", v) for k, v in rec["spans"].items() if key in (ALL, k)]
        elif "spans" in rec or "entities" in rec:
            groups.append(("span", rec.get("spans", rec.get("entities"))))
        if not groups:
            log.add("no-labels", where)
        seen: set = set()
        for what, items in groups:
            if not isinstance(items, list):
                raise DataError(path, line, f'"{what}" must be a list')
            for k, sp in enumerate(items):
                w = f"{where} {what} {k + 1}"
                if isinstance(sp, list) and len(sp) == 3:
                    sp = {"start": sp[0], "end": sp[1], "label": sp[2]}
                if not isinstance(sp, dict):
                    raise DataError(w, None, "expected an object with start, end and label")
                claimed = sp.get("text") if isinstance(sp.get("text"), str) else None
                span = make_span(text, sp.get("start"), sp.get("end"), sp.get("label"), claimed, w, log, utf16)
                if span and not (what != "span" and span in seen):  # an entity also in a span group is one span
                    seen.add(span)
                    located.append((span, w))
        meta_in = rec.get("meta") if isinstance(rec.get("meta"), dict) else {}
        rec_out = read_record(meta_in.get("id", rec.get("id", index)), text, where,
                              rec.get("_annotator_id", rec.get("_session_id")), meta_in.get("doc"))
        words = _words(rec, text)
        if words is not None:
            rec_out.meta["words"] = words
            sents = rec.get("sents")
            if _doc_json(rec) and isinstance(sents, list) and all(
                    isinstance(x, dict) and _is_int(x.get("start")) and _is_int(x.get("end")) for x in sents):
                rec_out.meta["sents"] = sentence_ranges(words, [(x["start"], x["end"]) for x in sents])
        out.append(finish(rec_out, located, log))
    if docs:
        note_read(log, key, [(d.get("ents") if isinstance(d.get("ents"), list) else None,
                              d["spans"] if isinstance(d.get("spans"), dict) else {}) for d in docs],
                  sum(len(r.meta.get("words") or []) for r in out), sum(len(r.meta.get("sents") or []) for r in out))
    return out


def write(records: Sequence[Record], path: str | os.PathLike, log: ChangeLog) -> None:
    """Prodigy-style JSONL with tokens and spans (``token_end`` inclusive), accepted answers."""
    lines = []
    for r in records:
        if r.meta.get("words") is not None:  # the words it was read with (spaCy's, CoNLL's...): kept
            offsets = [tuple(o) for o in r.meta["words"]]
            words = [r.text[a:b] for a, b in offsets]
        else:
            words, offsets = tokenize(r.text)
        words, offsets, _ = split_words(words, offsets, [c for s in r.spans for c in (s.start, s.end)])
        starts = [a for a, _ in offsets]
        tokens = [{"text": w, "start": a, "end": b, "id": i, "ws": b < len(r.text) and r.text[b].isspace()}
                  for i, (w, (a, b)) in enumerate(zip(words, offsets))]
        spans = []
        for s in r.spans:
            item = {"start": s.start, "end": s.end, "label": s.label}
            first = bisect_right(starts, s.start) - 1
            last = bisect_right(starts, s.end - 1) - 1
            if first >= 0 and offsets[first][0] == s.start and last >= first and offsets[last][1] == s.end:
                item["token_start"], item["token_end"] = first, last
            spans.append(item)
        meta = {"id": r.id}
        if r.meta.get("doc") is not None:
            meta["doc"] = r.meta["doc"]
        rec = {"text": r.text, "tokens": tokens, "spans": spans, "meta": meta, "answer": "accept"}
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))
