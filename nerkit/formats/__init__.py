"""Import and export of annotation tools' files through one canonical view: a text and its character spans.

Formats: Label Studio JSON and JSON-MIN exports, doccano JSONL, brat standoff (.txt + .ann), spaCy/Prodigy JSONL
spans, spaCy DocBin and JSON training files, Hugging Face datasets, CoNLL columns (IOB1, IOB2, BIOES) and nerkit
JSONL. Every reader yields ``Record``s (text + spans, exactly as
the tool stored them, after the checks below); every writer takes them. Token-level formats go through
``to_documents`` (IOB2 ``Document``s). Anything a reader or writer has to change is counted in a ``ChangeLog``,
so nothing is dropped or moved silently; the resolutions are described in docs/annotation.md.

One module per tool format (``read(path, log)`` and ``write(records, path, log)``), the shared record model
(``records``), record <-> document conversion (``documents``) and, here, the dispatch on a format's name.

CoNLL columns and nerkit JSONL are read by ``nerkit.data`` (strict: a problem stops with file and line); ``load``
below reads any source (those two, Hugging Face datasets, spaCy files, annotation-tool exports) as IOB2 documents
for train, evaluate and the CLI.
"""
# size: the one door of every format (detection, read, write, convert, load for training); each format its own module.
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator, Sequence

from nerkit.formats import brat, conll, docbin, doccano, hf, labelstudio, nerkit_jsonl, spacy
from nerkit.formats.documents import from_documents, to_documents
from nerkit.formats.jsonvalues import json_values
from nerkit.formats.labelstudio import labelstudio_result, labelstudio_tasks
from nerkit.formats.records import (CHANGES, Change, ChangeLog, Record, _is_int, flatten, make_span, trim,
                                    write_scheme)
from nerkit.data import DataWarning, read_conll, read_jsonl, tokenize
from nerkit.types import Document
from nerkit.errors import DataError, NerkitError
from nerkit.scheme import LabelScheme, chunks

__all__ = ["CHANGES", "FORMATS", "Change", "ChangeLog", "Record", "convert", "detect_format", "flatten",
           "from_documents", "json_values", "labelstudio_result", "labelstudio_tasks", "make_span", "one_per_text",
           "annotator_rank", "format_of", "read", "read_documents", "read_labelled", "reading", "select_annotations", "to_documents",
           "write"]


_MODULES = {"labelstudio": labelstudio, "doccano": doccano, "brat": brat, "spacy": spacy, "nerkit": nerkit_jsonl,
            "hf": hf, "docbin": docbin}
FORMATS = ("labelstudio", "doccano", "brat", "spacy", "docbin", "spacy-json", "hf", "conll", "conll-iob1", "conll-iob2",
           "conll-bioes", "nerkit")
# The annotation field each format's records carry; when no record of a file has it, reading stops and says so.
EXPECTED = {"labelstudio": '"annotations" with a "result" (JSON export) or a labels list (JSON-MIN)',
            "doccano": '"label" ([[start, end, label], ...])', "spacy": '"spans", "ents" or "entities"',
            "nerkit": '"entities"', "brat": "a .ann file next to each .txt", "docbin": "doc.ents or span groups",
            "spacy-json": 'tokens with "ner" tags'}
# Binary formats told by their first bytes, whatever the file is called.
_MAGIC = ((b"PAR1", "hf"), (b"ARROW1", "hf"), (b"\xff\xff\xff\xff", "hf"), (b"\x78\x9c", "docbin"),
          (b"\x78\xda", "docbin"), (b"\x78\x01", "docbin"))
# Formats nerkit recognises but does not read: the reason, and what to give instead.
UNSUPPORTED = {
    ".csv": "CSV exports are not supported (their span columns are tool-specific); export JSON or JSONL instead",
    ".xlsx": "Excel files are not supported; export the annotations as JSON or JSONL",
    ".xls": "Excel files are not supported; export the annotations as JSON or JSONL",
    ".pkl": "Python pickle files are not supported (reading one would run code from it); save the data as JSONL, "
            "a DocBin or a Hugging Face dataset",
    ".pickle": "Python pickle files are not supported (reading one would run code from it); save the data as JSONL, "
               "a DocBin or a Hugging Face dataset",
    ".xml": "XML is not supported (a Label Studio labeling config is not data; corpora in XML need converting)",
}
OTHER_SUFFIXES = (".spacy", ".bin", *hf.SUFFIXES, *UNSUPPORTED)  # suffixes that are never CoNLL text


# How sources are read where a caller cannot pass it (``train.fit`` reads paths itself): set by ``reading``.
_READING: ContextVar[dict] = ContextVar("nerkit_reading", default={})
# The formats each reading option of ``reading`` applies to (elsewhere it has nothing to choose).
OPTION_FORMATS = {"spans_key": ("docbin", "spacy-json", "spacy"), "text_field": ("labelstudio",), "tag_columns": ("conll",)}


@contextmanager
def reading(spans_key: str | None = None, text_field: str | None = None, tag_columns: int | None = None) -> Iterator[None]:
    """Within the block, sources are read with these options unless a call gives its own: ``spans_key`` chooses
    what a spaCy DocBin's records hold (a span group, "doc.ents", or "*" for all), ``text_field`` names a Label
    Studio task's text field, ``tag_columns`` > 1 reads CoNLL files as layered (one tag column per nesting level)."""
    token = _READING.set({"spans_key": spans_key, "text_field": text_field, "tag_columns": tag_columns})
    try:
        yield
    finally:
        _READING.reset(token)


def _option(name: str, given: str | None) -> str | None:
    return given if given is not None else _READING.get().get(name)


def _magic(p: Path) -> str | None:
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)


def detect_format(path: str | os.PathLike) -> str:
    """Guess a file's format from its name and content (the first record of JSON, the first bytes of binaries)."""
    if hf.is_dataset_path(path):
        return "hf"
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in UNSUPPORTED:
        raise NerkitError(f"{p}: {UNSUPPORTED[suffix]}")
    if suffix == ".spacy":
        return "docbin"
    if p.is_file() and suffix not in (".json", ".jsonl", ".ndjson", ".txt", ".ann"):
        found = _magic(p)
        if found:
            return found
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
            if "paragraphs" in first:
                return "spacy-json"  # spacy convert --file-type json
            tokens = first.get("tokens")
            if "ner_tags" in first or (isinstance(tokens, list) and tokens and isinstance(tokens[0], str)):
                return "hf"  # a datasets JSON Lines file: words and their tags
            if "spans" in first or "tokens" in first or "answer" in first or "ents" in first:
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
    fmt = {"huggingface": "hf", "datasets": "hf", "spacy-docbin": "docbin"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise NerkitError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def read(path: str | os.PathLike, fmt: str | None = None, log: ChangeLog | None = None, spans_key: str | None = None,
         text_field: str | None = None) -> list[Record]:
    """Read any supported format into records (format guessed from the path when None); ``spans_key`` and
    ``text_field``: see ``reading`` (the formats they do not apply to ignore them)."""
    fmt = _check_format(fmt or detect_format(path))
    log = log if log is not None else ChangeLog()
    spans_key, text_field = _option("spans_key", spans_key), _option("text_field", text_field)
    if fmt.startswith("conll"):
        scheme = None if fmt == "conll" else fmt.split("-")[1].upper()
        return conll.read(path, log, scheme, _READING.get().get("tag_columns") or 1)
    if fmt == "spacy-json":
        return docbin.read_json(path, log, spans_key)
    if fmt == "docbin":
        return docbin.read(path, log, spans_key)
    if fmt == "labelstudio":
        return labelstudio.read(path, log, text_field)
    if fmt == "spacy":
        return spacy.read(path, log, spans_key)
    return _MODULES[fmt].read(path, log)


def read_labelled(path: str | os.PathLike, fmt: str | None = None, log: ChangeLog | None = None,
                  spans_key: str | None = None, text_field: str | None = None) -> list[Record]:
    """``read``, for uses that need annotations (convert, training, agreement): a file in which no record has its
    format's annotation field (or no task was annotated) stops with a ``DataError`` naming the field expected,
    rather than reading as texts without entities."""
    fmt = _check_format(fmt or detect_format(path))
    log = log if log is not None else ChangeLog()
    before = len(log.changes)
    records = read(path, fmt, log, spans_key, text_field)
    new = log.changes[before:]
    if fmt in EXPECTED:
        unlabelled = sum(c.kind == "no-labels" for c in new)
        skipped = sum(c.kind == "skipped-record" for c in new)
        if (records and unlabelled >= len(records)) or (not records and skipped):
            what = "no task has an annotation" if fmt == "labelstudio" else "no record has an annotation field"
            raise DataError(path, None, f"{what} (expected {EXPECTED[fmt]}); nothing was read as entities")
    return records


def write(records: Sequence[Record], path: str | os.PathLike, fmt: str | None = None, log: ChangeLog | None = None,
          misaligned: str = "split", tag_columns: int = 1) -> None:
    """Write records in a format (guessed from the path when None); changes needed by the format are reported.
    ``tag_columns`` > 1: CoNLL with that many tag columns, one per nesting level (GENIA's layered layout)."""
    fmt = _check_format(fmt or detect_format(path))
    if tag_columns > 1 and not fmt.startswith("conll"):
        raise NerkitError(f"tag columns are for CoNLL output; {path} is written as {fmt}")
    log = log if log is not None else ChangeLog()
    for r in records:  # an empty label would be unreadable in every format
        if any(not s.label.strip() for s in r.spans):
            raise NerkitError(f"{r.source}: empty label")
    if fmt.startswith("conll"):
        target = write_scheme(records, None if fmt == "conll" else fmt.split("-")[1].upper(), log)
        before = log.counts()["overlap"]
        written = [s for d in conll.write(records, path, log, target, misaligned, tag_columns) for s in d.sentences]
        if tag_columns == 1 and log.counts()["overlap"] > before:
            log.note("one tag column holds one layer of entities: --tag-columns N writes nested spans as N tag "
                     "columns, one per nesting level (GENIA's layout)")
        log.records_out += len(written)
        log.spans_out += sum(len(chunks(t, LabelScheme(target))) for s in written for t in s.all_tags())
        return
    if fmt == "spacy-json":
        raise NerkitError("writing spaCy's JSON training format is not supported; write a DocBin (--to docbin)")
    if fmt == "hf":
        hf.write(records, path, log, misaligned)  # counts what it writes: rows are sentences, not records
        return
    _MODULES[fmt].write(records, path, log)
    if fmt == "nerkit":
        records = [r for r in records if tokenize(r.text)[0]]
    log.records_out += len(records)
    log.spans_out += sum(len(trim(r, ChangeLog())) if fmt == "nerkit" else len(r.spans) for r in records)


def _first_key(r: Record, position: int) -> tuple:
    """Which annotation of a task counts as the first submitted: the lowest annotation id (both Label Studio
    exports carry it), then the earliest creation time, then the order in the file."""
    ann = r.meta.get("annotation")
    created = r.meta.get("created")
    return (not _is_int(ann), ann if _is_int(ann) else 0, created if isinstance(created, str) else "", position)


def annotator_rank(r: Record, annotators: Sequence[str]) -> int | None:
    """Position in ``annotators`` (ids or emails, any case) of the one who made record ``r``; None if not listed."""
    keys = [k.lower() for k in r.meta.get("annotator_keys") or ([r.annotator] if r.annotator else [])]
    return next((i for i, w in enumerate(annotators) if w.strip().lower() in keys), None)


def select_annotations(records: Sequence[Record], log: ChangeLog, annotators: Sequence[str] | None = None,
                       path: str | os.PathLike | None = None) -> list[Record]:
    """One annotation per Label Studio task: the chosen annotator's (``annotators``: ids or emails, the first of
    them that annotated the task), else the first submitted one (lowest annotation id). The rule does not depend
    on the order of the export, so the JSON and JSON-MIN exports of a project give the same records. Every
    annotation left out is counted. Records of other formats pass, filtered by annotator when one is given."""
    wanted = [a.strip().lower() for a in annotators or [] if a.strip()]
    if wanted:
        def rank(r: Record) -> int | None:
            return annotator_rank(r, wanted)

        known = sorted({k for r in records for k in (r.meta.get("annotator_keys") or ([r.annotator] if r.annotator else []))},
                       key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
        if not any(rank(r) is not None for r in records):
            where = path or (records[0].source if records else "the data")
            if not known:
                raise NerkitError(f"{where}: no annotator is named in this data, so --annotator cannot choose")
            ids_only = all(k.isdigit() for k in known)
            hint = (" (this export names annotators by Label Studio user ids only; give the id)"
                    if ids_only and any("@" in w for w in wanted) else "")
            raise NerkitError(f"{where}: no annotation by {', '.join(annotators)}; annotators here: "
                              f"{', '.join(known)}{hint}")
    groups: dict[object, list[tuple[int, Record]]] = {}
    order: list[object] = []
    for i, r in enumerate(records):
        key = ("task", r.meta["task"]) if "task" in r.meta else ("record", i)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((i, r))
    out = []
    for key in order:
        group = groups[key]
        if wanted:
            chosen = [(i, r) for i, r in group if rank(r) is not None]
            for _, r in group:
                if rank(r) is None:
                    log.add("other-annotator", r.source, f"annotator {r.annotator}")
            if not chosen:
                continue
            best = min(chosen, key=lambda ir: (rank(ir[1]), _first_key(ir[1], ir[0])))
        else:
            best = min(group, key=lambda ir: _first_key(ir[1], ir[0]))
        for i, r in group:
            if r is not best[1] and (not wanted or rank(r) is not None):
                log.add("extra-annotation", r.source, f"annotator {r.annotator}")
        out.append(best[1])
    return out


def one_per_text(records: Sequence[Record], log: ChangeLog) -> list[Record]:
    """One annotation per Label Studio task by the rule of ``select_annotations`` (no annotator chosen)."""
    return select_annotations(records, log)


def convert(src: str | os.PathLike, dst: str | os.PathLike, src_fmt: str | None = None, dst_fmt: str | None = None,
            misaligned: str = "split", strict: bool = False, annotators: Sequence[str] | None = None,
            spans_key: str | None = None, text_field: str | None = None, tag_columns: int = 1) -> ChangeLog:
    """Convert an annotation file between formats (one annotation per task: see ``select_annotations``); the log
    counts every change made. ``tag_columns``: a CoNLL output's tag columns, one per nesting level."""
    log = ChangeLog(strict=strict)
    records = select_annotations(read_labelled(src, src_fmt, log, spans_key, text_field), log, annotators, src)
    write(records, dst, dst_fmt, log, misaligned=misaligned, tag_columns=tag_columns)
    return log


def read_documents(path: str | os.PathLike, fmt: str | None = None, log: ChangeLog | None = None,
                   annotators: Sequence[str] | None = None, spans_key: str | None = None,
                   text_field: str | None = None) -> list[Document]:
    """Any supported format as IOB2 documents (what training and evaluation read), one annotation per task."""
    log = log if log is not None else ChangeLog()
    if _check_format(fmt or detect_format(path)) == "hf":
        return hf.read_documents(path)[0]  # the dataset's words and tags as they are
    records = read_labelled(path, fmt, log, spans_key, text_field)
    return to_documents(select_annotations(records, log, annotators, path), log, flat=False)  # nested kept


# ---------------------------------------------------------------- every source, for train, evaluate and the CLI

# Suffixes read by nerkit.data's CoNLL reader without a look inside (as before formats existed).
_JSON = (".json", ".jsonl", ".ndjson")
# Formats with one annotation per sentence, where --annotator has nothing to choose.
_ONE_ANNOTATION = {"conll": "a CoNLL file", "nerkit": "nerkit JSONL", "hf": "a Hugging Face dataset"}


def source_format(path: str | os.PathLike) -> str:
    """The format ``load`` reads ``path`` as: "hf", "conll", "nerkit" or an annotation format name."""
    if hf.is_dataset_path(path):
        return "hf"
    p = Path(path)
    if p.is_dir() or p.suffix.lower() in _JSON or p.suffix.lower() in OTHER_SUFFIXES:
        return detect_format(p)
    return "conll"


def format_of(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format a path is read as: ``fmt`` when given (checked), else as ``load`` tells it."""
    return _check_format(fmt) if fmt else source_format(path)


def load(path: str | os.PathLike, scheme: LabelScheme | str | None = None,
         annotators: Sequence[str] | None = None, spans_key: str | None = None,
         text_field: str | None = None) -> list[Document]:
    """Documents from any supported source (``scheme`` applies to CoNLL files; others are detected; ``annotators``
    chooses whose annotations of a multi-annotator export are read; ``spans_key``, ``text_field``: see ``reading``).
    Every change made while reading, and how a spaCy file was read, is said in a ``DataWarning``."""
    fmt = source_format(path)
    if annotators and fmt in _ONE_ANNOTATION:
        raise DataError(path, None, "--annotator chooses among the annotations of an annotation-tool export; this is "
                        f"{_ONE_ANNOTATION[fmt]}, which holds one annotation per sentence")
    if fmt == "conll":
        return read_conll(path, scheme, _READING.get().get("tag_columns") or 1)
    if fmt == "nerkit":
        return read_jsonl(path)
    if fmt == "hf":
        return hf.read_documents(path)[0]
    log = ChangeLog()
    docs = read_documents(path, fmt, log, annotators, spans_key, text_field)
    if log.changes:
        counts = "; ".join(f"{n} x {CHANGES[k]}" for k, n in log.counts().most_common())
        warnings.warn(f"{path}: read as {fmt} with {len(log.changes)} changes ({counts}; first: {log.details(1)[0]}); "
                      "`nerkit convert` lists them all" + "".join(f"; {n}" for n in log.notes), DataWarning,
                      stacklevel=2)
    elif log.notes:
        warnings.warn(f"{path}: read as {fmt}: " + "; ".join(log.notes), DataWarning, stacklevel=2)
    return docs


def as_documents(source, scheme: LabelScheme | str | None = None,
                 annotators: Sequence[str] | None = None) -> list[Document]:
    """Documents from a path or hub id (read with ``load``), an iterable of Documents, or None (no documents)."""
    if source is None:
        return []
    if isinstance(source, (str, os.PathLike)):
        return load(source, scheme=scheme, annotators=annotators)
    return list(source)


def fingerprint(path: str | os.PathLike) -> str:
    """A fingerprint of the data a run used: the file's hash; for a dataset directory, the hash of its files."""
    import hashlib

    from nerkit.files import fingerprint as file_fingerprint

    p = Path(path)
    if str(path).startswith(hf.HUB_PREFIX):
        return str(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0" + file_fingerprint(f).encode())
        return h.hexdigest()[:16]
    return file_fingerprint(p)
