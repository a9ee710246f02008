"""CoNLL columns in any tag scheme, through IOB2 documents (``documents``) and ``nerkit.data``'s reader and writer."""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Sequence

from nerkit import data
from nerkit.formats.documents import from_documents, to_documents
from nerkit.formats.records import ChangeLog, Record
from nerkit.errors import NerkitError
from nerkit.scheme import LabelScheme, convert as convert_tags
from nerkit.types import Document, Sentence


def read(path: str | os.PathLike, log: ChangeLog, scheme: LabelScheme | str | None = None,
         tag_columns: int = 1) -> list[Record]:
    """CoNLL columns (scheme detected unless given; ``tag_columns`` > 1: the last N are tag layers, one per nesting
    level): one record per sentence, words joined by spaces, the spans of every layer."""
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        docs, found = data.read_conll_with_report(path, scheme, tag_columns)
    for kind, n in found.violations.items():
        for _ in range(n):
            log.add("tags-repaired", f"{path}:{found.first_lines.get(kind, '?')}", f"{kind} (first occurrence)")
    records = from_documents(docs)
    for r in records:
        r.meta["scheme"] = found.scheme.value  # written back in it (``records.write_scheme``)
        log.records_in += 1
        log.spans_in += len(r.spans)
    return records


def write(records: Sequence[Record], path: str | os.PathLike, log: ChangeLog,
          scheme: LabelScheme | str = LabelScheme.IOB2, misaligned: str = "split", tag_columns: int = 1) -> list[Document]:
    """CoNLL columns (``word tag``, a ``-DOCSTART-`` line per document) in the given tag scheme; with ``tag_columns``
    > 1, that many tag columns, one per nesting level, outermost first (what needs a deeper level is counted)."""
    target = LabelScheme(str(getattr(scheme, "value", scheme)).upper())
    layered = tag_columns > 1
    docs = to_documents(records, log, misaligned=misaligned, flat=not layered,
                        max_layers=tag_columns if layered else None)
    if target is not LabelScheme.IOB2:
        docs = [Document(d.id, [Sentence(s.words, convert_tags(s.tags, LabelScheme.IOB2, target), s.doc_id, s.source,
                                         s.text, s.offsets, layers=[convert_tags(t, LabelScheme.IOB2, target)
                                                                    for t in s.layers])
                                for s in d.sentences]) for d in docs]
    for d in docs:
        for s in d.sentences:
            bad = [w for w in s.words if re.search(r"\s", w)]
            if bad:
                raise NerkitError(f"{s.source}: word {bad[0]!r} contains whitespace and cannot be written as CoNLL")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data.write_conll(docs, path, tag_columns)
    return docs
