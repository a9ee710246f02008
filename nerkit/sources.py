"""Training and evaluation data from every source nerkit reads, as IOB2 documents.

CoNLL columns and nerkit JSONL are read by ``nerkit.data`` (strict: a problem stops with file and line);
Hugging Face datasets, spaCy files and annotation-tool exports by ``nerkit.annotate.formats`` (their changes
are counted and warned about, never silent).

Why a module of its own: ``annotate.formats`` is built on ``data`` (it reads CoNLL and splits words with it), so
``data`` cannot call the annotation readers without an import cycle. This module sits above both; ``train``,
``evaluate`` and the CLI ask it for documents, and ``data`` stays the plain reader of nerkit's own formats.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from nerkit import data
from nerkit.annotate import formats
from nerkit.annotate.formats import hf
from nerkit.errors import DataError
from nerkit.scheme import LabelScheme
from nerkit.types import Document

# Suffixes read by nerkit.data's CoNLL reader without a look inside (as before formats existed).
_JSON = (".json", ".jsonl", ".ndjson")
# Formats with one annotation per sentence, where --annotator has nothing to choose.
_ONE_ANNOTATION = {"conll": "a CoNLL file", "nerkit": "nerkit JSONL", "hf": "a Hugging Face dataset"}


def source_format(path: str | os.PathLike) -> str:
    """The format ``load`` reads ``path`` as: "hf", "conll", "nerkit" or an annotation format name."""
    if hf.is_dataset_path(path):
        return "hf"
    p = Path(path)
    if p.is_dir() or p.suffix.lower() in _JSON or p.suffix.lower() in formats.OTHER_SUFFIXES:
        return formats.detect_format(p)
    return "conll"


def load(path: str | os.PathLike, scheme: LabelScheme | str | None = None,
         annotators: Sequence[str] | None = None) -> list[Document]:
    """Documents from any supported source (``scheme`` applies to CoNLL files; others are detected; ``annotators``
    chooses whose annotations of a multi-annotator export are read)."""
    fmt = source_format(path)
    if annotators and fmt in _ONE_ANNOTATION:
        raise DataError(path, None, "--annotator chooses among the annotations of an annotation-tool export; this is "
                        f"{_ONE_ANNOTATION[fmt]}, which holds one annotation per sentence")
    if fmt == "conll":
        return data.read_conll(path, scheme)
    if fmt == "nerkit":
        return data.read_jsonl(path)
    if fmt == "hf":
        return hf.read_documents(path)[0]
    log = formats.ChangeLog()
    docs = formats.read_documents(path, fmt, log, annotators)
    if log.changes:
        counts = "; ".join(f"{n} x {formats.CHANGES[k]}" for k, n in log.counts().most_common())
        warnings.warn(f"{path}: read as {fmt} with {len(log.changes)} changes ({counts}; first: {log.details(1)[0]}); "
                      "`nerkit convert` lists them all", data.DataWarning, stacklevel=2)
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
