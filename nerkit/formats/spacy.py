"""Prodigy / spaCy JSONL spans (and spaCy v2 training lines)."""
from __future__ import annotations

import json
import os
from bisect import bisect_right
from typing import Sequence

from nerkit.formats.jsonvalues import json_values
from nerkit.formats.records import ChangeLog, Record, finish, utf16_to_chars, make_span, read_record
from nerkit.data import split_words, tokenize
from nerkit.errors import DataError
from nerkit.files import atomic_write_text


def read(path: str | os.PathLike, log: ChangeLog) -> list[Record]:
    """Prodigy/spaCy JSONL ``{"text", "spans": [{start, end, label}]}`` (rejected/ignored answers skipped),
    ``Doc.to_json()`` lines (``"ents"`` and span groups ``"spans": {key: [...]}``; a span in both is one), or spaCy
    v2 training data ``["text", {"entities": [[start, end, label]]}]``, one per line or all in one JSON array."""
    out = []
    for index, (line, rec) in enumerate(json_values(path), 1):
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
        if isinstance(rec.get("ents"), list):
            groups.append(("ent", rec["ents"]))
        if isinstance(rec.get("spans"), dict):  # Doc.to_json(): span groups by key
            groups += [(f"spans[{key!r}]", v) for key, v in rec["spans"].items()]
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
        out.append(finish(rec_out, located, log))
    return out


def write(records: Sequence[Record], path: str | os.PathLike, log: ChangeLog) -> None:
    """Prodigy-style JSONL with tokens and spans (``token_end`` inclusive), accepted answers."""
    lines = []
    for r in records:
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
