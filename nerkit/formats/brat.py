"""brat standoff: a directory of NAME.txt + NAME.ann pairs (text-bound T annotations) and an annotation.conf."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from nerkit.formats.jsonvalues import read_text
from nerkit.formats.records import ChangeLog, Record, doc_groups, finish, make_span
from nerkit.errors import DataError, NerkitError
from nerkit.files import atomic_write_text
from nerkit.types import Span


_BRAT_T = re.compile(r"^(T\d+\S*)\t(\S+) (\d+ \d+(?:;\d+ \d+)*)\t?(.*)$", re.S)


def _brat_pairs(path: Path) -> list[tuple[Path, Path]]:
    if path.is_dir():
        txts = sorted(p for p in path.rglob("*.txt"))
        if not txts:
            raise DataError(path, None, "no .txt files in this brat directory")
        return [(t, t.with_suffix(".ann")) for t in txts]
    if path.suffix in (".ann", ".txt"):
        return [(path.with_suffix(".txt"), path.with_suffix(".ann"))]
    raise DataError(path, None, "brat data is a directory of .txt/.ann pairs, or one .ann or .txt file")


def read(path: str | os.PathLike, log: ChangeLog) -> list[Record]:
    """brat standoff: one record per .txt file with the text-bound (T) annotations of its .ann file."""
    root = Path(path)
    out = []
    for txt, ann in _brat_pairs(root):
        text = read_text(txt)
        rid = str(txt.relative_to(root).with_suffix("")) if root.is_dir() else txt.stem
        located = []
        if not ann.is_file():
            log.add("no-labels", str(txt), "no .ann file next to it")
        else:
            for n, line in enumerate(read_text(ann).split("\n"), 1):
                line = line.rstrip("\r")
                if not line.strip():
                    continue
                w = f"{ann}:{n}"
                if not line.startswith("T"):
                    log.add("not-entity", w, line.split("\t", 1)[0])
                    continue
                m = _BRAT_T.match(line)
                if not m:
                    raise DataError(ann, n, "text-bound annotation is not 'T<n><TAB><type> <start> <end><TAB><text>'")
                frags = [tuple(map(int, f.split())) for f in m.group(3).split(";")]
                start, end = frags[0][0], frags[-1][1]
                claimed: str | None = m.group(4) or None
                if len(frags) > 1:
                    ordered = all(a[1] <= b[0] for a, b in zip(frags, frags[1:]))
                    # brat writes a span across a line break as fragments around it: joining those is exact.
                    if not ordered or any(text[a[1]:b[0]].strip() for a, b in zip(frags, frags[1:])):
                        log.add("discontinuous", w, m.group(3))
                    claimed = None  # brat quotes the fragments, not the covering range
                span = make_span(text, start, end, m.group(2), claimed or None, w, log)
                if span:
                    located.append((span, w))
        out.append(finish(Record(rid, text, source=str(txt), meta={}), located, log))
    return out


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "doc"


def write(records: Sequence[Record], path: str | os.PathLike, log: ChangeLog) -> None:
    """A brat directory: NAME.txt + NAME.ann per record (sentence records of one document share a file),
    and an annotation.conf listing the entity types."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise NerkitError(f"{root}: brat output must be a directory")
    root.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    labels: set[str] = set()
    named = []
    for name, group in doc_groups(records):
        base = _safe_name(name)
        stem, k = base, 1
        while stem.lower() in used:
            k += 1
            stem = f"{base}-{k}"
        used.add(stem.lower())
        named.append((stem, group))
    # Stale pairs from an earlier export would be read back as part of this one: refuse rather than delete.
    stale = sorted(p.name for p in root.iterdir() if p.suffix in (".txt", ".ann") and p.stem.lower() not in used)
    if stale:
        raise NerkitError(f"{root}: already holds other brat files ({', '.join(stale[:3])}...); write to an empty directory")
    for stem, group in named:
        text, spans = _join(group)
        rows = []
        for i, s in enumerate(spans, 1):
            # brat's .ann is line based: a span across line breaks is written as fragments around them.
            frags, a = [], s.start
            for j in range(s.start, s.end + 1):
                if j == s.end or text[j] in "\r\n":
                    if a < j:
                        frags.append((a, j))
                    a = j + 1
            if (frags[0][0], frags[-1][1]) != (s.start, s.end):
                log.add("trimmed", f"{stem}.ann T{i}", f"line break at the edge of [{s.start}, {s.end}) {s.label}")
            label = s.label
            if re.search(r"\s", label):
                label = re.sub(r"\s+", "_", label)
                log.add("label-renamed", f"{stem}.ann T{i}", f"{s.label!r} -> {label!r}")
            labels.add(label)
            quoted = " ".join(text[a:b] for a, b in frags)
            rows.append(f"T{i}\t{label} {';'.join(f'{a} {b}' for a, b in frags)}\t{quoted}\n")
        atomic_write_text(root / f"{stem}.txt", text)
        atomic_write_text(root / f"{stem}.ann", "".join(rows))
    conf = "[entities]\n" + "".join(f"{t}\n" for t in sorted(labels)) + "\n[relations]\n\n[events]\n\n[attributes]\n"
    atomic_write_text(root / "annotation.conf", conf)


def _join(group: Sequence[Record]) -> tuple[str, list[Span]]:
    """The texts of a group joined by line breaks, with spans shifted to match."""
    if len(group) == 1:
        return group[0].text, list(group[0].spans)
    parts, spans, pos = [], [], 0
    for r in group:
        parts.append(r.text)
        spans += [Span(s.start + pos, s.end + pos, s.label) for s in r.spans]
        pos += len(r.text) + 1
    return "\n".join(parts), spans
