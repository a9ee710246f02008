"""nerkit JSONL (what `nerkit train` reads): ``{"id", "text", "entities": [{start, end, label}]}``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from nerkit.formats.jsonvalues import json_values
from nerkit.formats.records import ChangeLog, Record, finish, make_span, trim
from nerkit.data import tokenize
from nerkit.errors import DataError
from nerkit.files import atomic_write_text


def read(path: str | os.PathLike, log: ChangeLog) -> list[Record]:
    """nerkit JSONL ``{"id"?, "text", "entities": [{start, end, label}]}``, read leniently (problems reported)."""
    out = []
    for index, (line, rec) in enumerate(json_values(path), 1):
        where = f"{path}:{line}"
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            raise DataError(path, line, 'expected an object with a string "text"')
        text = rec["text"]
        located = []
        if rec.get("entities") is None:
            log.add("no-labels", where)
        elif not isinstance(rec["entities"], list):
            raise DataError(path, line, '"entities" must be a list')
        else:
            for k, ent in enumerate(rec["entities"]):
                w = f"{where} entity {k + 1}"
                if not isinstance(ent, dict):
                    raise DataError(w, None, "expected an object with start, end and label")
                claimed = ent.get("text") if isinstance(ent.get("text"), str) else None
                span = make_span(text, ent.get("start"), ent.get("end"), ent.get("label"), claimed, w, log)
                if span:
                    located.append((span, w))
        meta = {"doc": str(rec["doc"])} if rec.get("doc") is not None else {}
        out.append(finish(Record(str(rec.get("id", f"{Path(path).name}#{index}")), text, source=where, meta=meta),
                           located, log))
    return out


def write(records: Sequence[Record], path: str | os.PathLike, log: ChangeLog) -> None:
    """nerkit JSONL (what ``nerkit train`` reads): every entity, nested and overlapping ones too, trimmed of edge
    whitespace."""
    lines = []
    for r in records:
        if not tokenize(r.text)[0]:  # nerkit's reader rejects such records, and they teach nothing
            log.add("skipped-record", r.source or r.id, "text has no words")
            continue
        spans = trim(r, log)
        rec: dict = {"id": r.id, "text": r.text, "entities": [{"start": s.start, "end": s.end, "label": s.label} for s in spans]}
        if r.meta.get("doc") is not None:
            rec["doc"] = r.meta["doc"]
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))
