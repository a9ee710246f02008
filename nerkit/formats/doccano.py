"""doccano sequence-labeling JSONL (and its relation-extraction export)."""
from __future__ import annotations

import json
import os
from typing import Sequence

from nerkit.formats.jsonvalues import json_values
from nerkit.formats.records import ChangeLog, Record, finish, utf16_to_chars, make_span, read_record
from nerkit.errors import DataError
from nerkit.files import atomic_write_text


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def record_is_utf16(text: str, pairs: list[tuple[object, object]], utf16: list[int] | None) -> bool:
    """Whether a record's span offsets count UTF-16 code units (as tools written in JavaScript do), decided for all
    its spans at once so that a record is never half converted: yes when they all fit as UTF-16 offsets and some
    do not fit as character offsets (offsets that fit as characters are read as characters, as nerkit writes them)."""
    if utf16 is None:
        return False
    pairs = [(s, e) for s, e in pairs if _is_int(s) and _is_int(e) and s < e]
    return (bool(pairs) and all(0 <= s and e < len(utf16) and utf16[s] < utf16[e] for s, e in pairs)
            and not all(0 <= s and e <= len(text) for s, e in pairs))


def read(path: str | os.PathLike, log: ChangeLog) -> list[Record]:
    """doccano sequence-labeling JSONL: ``{"text", "label": [[start, end, label], ...]}`` (or "labels", or "entities")."""
    out = []
    for index, (line, rec) in enumerate(json_values(path), 1):
        where = f"{path}:{line}"
        if not isinstance(rec, dict) or not isinstance(rec.get("text", rec.get("data")), str):
            raise DataError(path, line, 'expected an object with a string "text"')
        text = rec.get("text", rec.get("data"))
        utf16 = utf16_to_chars(text)
        located = []
        convert16 = False

        def span_of(start: object, end: object, label: object, w: str):
            if convert16 and _is_int(start) and _is_int(end) and 0 <= start < end < len(utf16):
                log.add("utf16", w, f"[{start}, {end}) {label} -> [{utf16[start]}, {utf16[end]})")
                start, end = utf16[start], utf16[end]
            return make_span(text, start, end, label, None, w, log)

        if isinstance(rec.get("entities"), list):  # doccano's relation-extraction export
            convert16 = record_is_utf16(text, [(e.get("start_offset"), e.get("end_offset")) for e in rec["entities"]
                                               if isinstance(e, dict)], utf16)
            for k, ent in enumerate(rec["entities"]):
                w = f"{where} entity {k + 1}"
                if not isinstance(ent, dict):
                    raise DataError(w, None, "expected an object with start_offset, end_offset and label")
                span = span_of(ent.get("start_offset"), ent.get("end_offset"), ent.get("label"), w)
                if span:
                    located.append((span, w))
            if rec.get("relations"):
                log.add("not-entity", where, f"{len(rec['relations'])} relations")
        else:
            key = "label" if "label" in rec else "labels" if "labels" in rec else None
            items = rec.get(key) if key else None
            if key is None:
                log.add("no-labels", where)
                items = []
            if not isinstance(items, list):
                raise DataError(path, line, f'"{key}" must be a list of [start, end, label]')
            convert16 = record_is_utf16(text, [(i[0], i[1]) for i in items if isinstance(i, list) and len(i) == 3],
                                        utf16)
            for k, item in enumerate(items):
                w = f"{where} label {k + 1}"
                if isinstance(item, str):
                    raise DataError(w, None, f"label {item!r} is a category, not a span: this is a text classification export")
                if not isinstance(item, list) or len(item) != 3:
                    raise DataError(w, None, f"expected [start, end, label], got {item!r}")
                span = span_of(item[0], item[1], item[2], w)
                if span:
                    located.append((span, w))
        rec_out = read_record(rec.get("id", index), text, where, rec.get("user", rec.get("annotator")), rec.get("nerkit_doc"))
        out.append(finish(rec_out, located, log))
    return out


def write(records: Sequence[Record], path: str | os.PathLike, log: ChangeLog) -> None:
    """doccano JSONL (importable as sequence labeling, column "label")."""
    lines = []
    for r in records:
        rec: dict = {"id": r.id, "text": r.text, "label": [[s.start, s.end, s.label] for s in r.spans]}
        if r.meta.get("doc") is not None:
            rec["nerkit_doc"] = r.meta["doc"]
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))
