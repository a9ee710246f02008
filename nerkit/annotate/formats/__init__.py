"""Import and export of annotation tools' files through one canonical view: a text and its character spans.

Formats: Label Studio JSON export, doccano JSONL, brat standoff (.txt + .ann), spaCy/Prodigy JSONL spans,
CoNLL columns (IOB1, IOB2, BIOES) and nerkit JSONL. Every reader yields ``Record``s (text + spans, exactly as
the tool stored them, after the checks below); every writer takes them. Token-level formats go through
``to_documents`` (IOB2 ``Document``s). Anything a reader or writer has to change is counted in a ``ChangeLog``,
so nothing is dropped or moved silently; the resolutions are described in docs/annotation.md.

One module per tool format (``read(path, log)`` and ``write(records, path, log)``), the shared record model
(``records``), record <-> document conversion (``documents``) and, here, the dispatch on a format's name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from nerkit.annotate.formats import brat, conll, doccano, labelstudio, nerkit_jsonl, spacy
from nerkit.annotate.formats.documents import from_documents, to_documents
from nerkit.annotate.formats.jsonvalues import json_values
from nerkit.annotate.formats.labelstudio import labelstudio_result, labelstudio_tasks
from nerkit.annotate.formats.records import CHANGES, Change, ChangeLog, Record, flatten, make_span
from nerkit.data import tokenize
from nerkit.errors import DataError, NerkitError
from nerkit.scheme import LabelScheme, chunks

__all__ = ["CHANGES", "FORMATS", "Change", "ChangeLog", "Record", "convert", "detect_format", "flatten",
           "from_documents", "json_values", "labelstudio_result", "labelstudio_tasks", "make_span", "one_per_text",
           "read", "to_documents", "write"]


_MODULES = {"labelstudio": labelstudio, "doccano": doccano, "brat": brat, "spacy": spacy, "nerkit": nerkit_jsonl}
FORMATS = ("labelstudio", "doccano", "brat", "spacy", "conll", "conll-iob1", "conll-iob2", "conll-bioes", "nerkit")


def detect_format(path: str | os.PathLike) -> str:
    """Guess a file's format from its name and, for .json/.jsonl, its first record."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir() or suffix == ".ann":
        return "brat"
    if suffix in (".conll", ".iob", ".iob2", ".bio", ".bioes", ".tsv", ".conllu", ".txt") and not (
            suffix == ".txt" and p.with_suffix(".ann").exists()):
        return "conll"
    if suffix == ".txt":
        return "brat"
    if suffix in (".json", ".jsonl", ".ndjson") and p.is_file():
        try:
            first = next(iter(json_values(p)))[1]
        except (StopIteration, DataError):
            first = None
        if isinstance(first, list):
            return "spacy"
        if isinstance(first, dict):
            if "data" in first or "annotations" in first:
                return "labelstudio"
            if "spans" in first or "tokens" in first or "answer" in first:
                return "spacy"
            if isinstance(first.get("label"), list) and first["label"] and isinstance(first["label"][0], dict):
                return "labelstudio"  # JSON-MIN export
            if "label" in first or "labels" in first or (
                    isinstance(first.get("entities"), list) and first["entities"] and isinstance(first["entities"][0], dict)
                    and "start_offset" in first["entities"][0]):
                return "doccano"
            if isinstance(first.get("entities"), list) or "text" in first:
                return "nerkit"
        return "labelstudio" if suffix == ".json" else "nerkit"
    if suffix == ".json":
        return "labelstudio"
    if suffix in (".jsonl", ".ndjson"):
        return "nerkit"
    if suffix == "":
        return "brat"
    raise NerkitError(f"{p}: cannot tell the format from the name; give it (one of {', '.join(FORMATS)})")


def _check_format(fmt: str) -> str:
    fmt = fmt.lower().replace("_", "-")
    fmt = {"label-studio": "labelstudio", "prodigy": "spacy", "jsonl": "nerkit", "iob1": "conll-iob1",
           "iob2": "conll-iob2", "bioes": "conll-bioes"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise NerkitError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def read(path: str | os.PathLike, fmt: str | None = None, log: ChangeLog | None = None) -> list[Record]:
    """Read any supported format into records (format guessed from the path when None)."""
    fmt = _check_format(fmt or detect_format(path))
    log = log if log is not None else ChangeLog()
    if fmt.startswith("conll"):
        scheme = None if fmt == "conll" else fmt.split("-")[1].upper()
        return conll.read(path, log, scheme)
    return _MODULES[fmt].read(path, log)


def write(records: Sequence[Record], path: str | os.PathLike, fmt: str | None = None, log: ChangeLog | None = None,
          misaligned: str = "split") -> None:
    """Write records in a format (guessed from the path when None); changes needed by the format are reported."""
    fmt = _check_format(fmt or detect_format(path))
    log = log if log is not None else ChangeLog()
    for r in records:  # an empty label would be unreadable in every format
        if any(not s.label.strip() for s in r.spans):
            raise NerkitError(f"{r.source}: empty label")
    if fmt.startswith("conll"):
        target = "IOB2" if fmt == "conll" else fmt.split("-")[1].upper()
        written = [s for d in conll.write(records, path, log, target, misaligned) for s in d.sentences]
        log.records_out += len(written)
        log.spans_out += sum(len(chunks(s.tags, LabelScheme(target))) for s in written)
        return
    _MODULES[fmt].write(records, path, log)
    if fmt == "nerkit":
        records = [r for r in records if tokenize(r.text)[0]]
    log.records_out += len(records)
    log.spans_out += sum(len(flatten(r, ChangeLog())) if fmt == "nerkit" else len(r.spans) for r in records)


def one_per_text(records: Sequence[Record], log: ChangeLog) -> list[Record]:
    """Keep the first annotation of each Label Studio task (others reported): conversion needs one version."""
    seen: set[object] = set()
    out = []
    for r in records:
        key = ("task", r.meta["task"]) if "task" in r.meta else None
        if key is not None and key in seen:
            log.add("extra-annotation", r.source, f"annotator {r.annotator}")
            continue
        if key is not None:
            seen.add(key)
        out.append(r)
    return out


def convert(src: str | os.PathLike, dst: str | os.PathLike, src_fmt: str | None = None, dst_fmt: str | None = None,
            misaligned: str = "split", strict: bool = False) -> ChangeLog:
    """Convert an annotation file between formats; the log counts every change made."""
    log = ChangeLog(strict=strict)
    records = one_per_text(read(src, src_fmt, log), log)
    write(records, dst, dst_fmt, log, misaligned=misaligned)
    return log
