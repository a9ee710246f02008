"""doccano sequence-labeling JSONL (and its relation-extraction export)."""
from __future__ import annotations

import json
import os
from typing import Sequence

from nerkit.annotate.formats.jsonvalues import json_values
from nerkit.annotate.formats.records import ChangeLog, Record, finish, utf16_to_chars, make_span, read_record
from nerkit.errors import DataError
from nerkit.files import atomic_write_text


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
        if isinstance(rec.get("entities"), list):  # doccano's relation-extraction export
            for k, ent in enumerate(rec["entities"]):
                w = f"{where} entity {k + 1}"
                if not isinstance(ent, dict):
                    raise DataError(w, None, "expected an object with start_offset, end_offset and label")
                span = make_span(text, ent.get("start_offset"), ent.get("end_offset"), ent.get("label"), None, w, log, utf16)
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
            for k, item in enumerate(items):
                w = f"{where} label {k + 1}"
                if isinstance(item, str):
                    raise DataError(w, None, f"label {item!r} is a category, not a span: this is a text classification export")
                if not isinstance(item, list) or len(item) != 3:
                    raise DataError(w, None, f"expected [start, end, label], got {item!r}")
                span = make_span(text, item[0], item[1], item[2], None, w, log, utf16)
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
