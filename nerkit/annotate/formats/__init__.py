"""Import and export of annotation tools' files through one canonical view: a text and its character spans.

Formats: Label Studio JSON export, doccano JSONL, brat standoff (.txt + .ann), spaCy/Prodigy JSONL spans,
CoNLL columns (IOB1, IOB2, BIOES) and nerkit JSONL. Every reader yields ``Record``s (text + spans, exactly as
the tool stored them, after the checks below); every writer takes them. Token-level formats go through
``to_documents`` (IOB2 ``Document``s). Anything a reader or writer has to change is counted in a ``Report``,
so nothing is dropped or moved silently; the resolutions are described in docs/annotation.md.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from nerkit.data import split_words
from nerkit.files import atomic_write_text
from nerkit.errors import DataError, NerkitError
from nerkit.scheme import LabelScheme, convert as convert_tags
from nerkit.types import Document, Sentence, Span

FORMATS = ("labelstudio", "doccano", "brat", "spacy", "conll", "conll-iob1", "conll-iob2", "conll-bioes", "nerkit")
# Formats that can hold overlapping or nested spans; the others get one flat layer (see ``flatten``).
NESTED_OK = frozenset({"labelstudio", "doccano", "brat", "spacy"})

# Every kind of change, worded as its resolution (the report prints these).
CHANGES: dict[str, str] = {
    "zero-length": "zero-length span dropped",
    "reversed": "span ending before it starts dropped",
    "out-of-range": "span outside the text dropped",
    "whitespace-only": "span covering only whitespace dropped",
    "utf16": "UTF-16 offsets converted to characters",
    "realigned": "span moved to where its quoted text occurs",
    "text-mismatch": "span whose quoted text is not in the text dropped",
    "duplicate": "duplicate span dropped",
    "multi-label": "region with several labels split into one span per label",
    "discontinuous": "discontinuous brat span replaced by its covering range",
    "overlap": "overlapping span dropped (the longer one kept)",
    "trimmed": "whitespace trimmed from span edges",
    "word-split": "word split at a span edge",
    "expanded": "span expanded to word boundaries",
    "sentences-merged": "sentences joined where a span crossed a line break",
    "skipped-record": "record skipped (rejected, ignored, cancelled or never annotated)",
    "extra-annotation": "further annotation of a task skipped (the first kept)",
    "not-entity": "non-entity annotation ignored (relation, event, attribute, note, choice...)",
    "no-labels": "record without an annotation field read as having no entities",
    "tags-repaired": "invalid tag transition repaired (entity read leniently)",
    "label-renamed": "whitespace in a label replaced by '_'",
}


# ---------------------------------------------------------------- records and reports


@dataclass
class Record:
    """One annotated text: the canonical view every format converts through."""

    id: str
    text: str
    spans: list[Span] = field(default_factory=list)
    source: str = ""  # "file:line" (or "file") of the record, for messages
    where: list[str] = field(default_factory=list)  # location of each span, parallel to ``spans`` when known
    annotator: str | None = None
    meta: dict = field(default_factory=dict)  # "doc": id of the document a sentence-level record belongs to

    def span_where(self, i: int) -> str:
        """Location of span ``i`` for messages."""
        return self.where[i] if i < len(self.where) else self.source

    def located(self) -> list[tuple[Span, str]]:
        """Spans paired with their locations."""
        return [(s, self.span_where(i)) for i, s in enumerate(self.spans)]


@dataclass
class Change:
    """One change made to the annotations while reading or writing."""

    kind: str
    where: str
    detail: str


@dataclass
class Report:
    """Counts and locations of every change; ``strict`` turns the first change into an error."""

    strict: bool = False
    changes: list[Change] = field(default_factory=list)
    records_in: int = 0
    spans_in: int = 0
    records_out: int = 0
    spans_out: int = 0

    def add(self, kind: str, where: str, detail: str = "") -> None:
        """Record a change (or raise in strict mode)."""
        if kind not in CHANGES:
            raise KeyError(kind)
        if self.strict:
            raise NerkitError(f"{where}: {CHANGES[kind]}{': ' + detail if detail else ''} (strict mode: nothing changed)")
        self.changes.append(Change(kind, where, detail))

    def counts(self) -> Counter:
        """Number of changes per kind."""
        return Counter(c.kind for c in self.changes)

    def summary(self) -> str:
        """One line per kind of change, or 'no changes'."""
        head = f"read {self.records_in} records with {self.spans_in} spans; wrote {self.records_out} records with {self.spans_out} spans"
        counts = self.counts()
        if not counts:
            return head + "\nno changes"
        rows = [f"  {n:>6}  {CHANGES[k]}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        return head + f"\n{sum(counts.values())} changes:\n" + "\n".join(rows)

    def details(self, limit: int | None = 20) -> list[str]:
        """'where: resolution: detail' lines, the first ``limit`` of them."""
        items = self.changes if limit is None else self.changes[:limit]
        return [f"{c.where}: {CHANGES[c.kind]}{': ' + c.detail if c.detail else ''}" for c in items]


# ---------------------------------------------------------------- small helpers


def _read_text(path: str | os.PathLike) -> str:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(p, None, "no such file") from None
    except IsADirectoryError:
        raise DataError(p, None, "is a directory, expected a file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(p, line, f"bytes {raw[e.start:e.end]!r} are not valid UTF-8 (files must be UTF-8)") from None
    return text.removeprefix("\ufeff")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def json_values(path: str | os.PathLike) -> Iterator[tuple[int, object]]:
    """``(line, value)`` for each element of a top-level JSON array, or each value of a JSON Lines file."""
    raw = _read_text(path)
    dec = json.JSONDecoder()
    pos, line, n = 0, 1, len(raw)
    ws = re.compile(r"\s*")

    def skip(i: int) -> int:
        nonlocal line
        j = ws.match(raw, i).end()
        line += raw.count("\n", i, j)
        return j

    def decode(i: int) -> tuple[object, int]:
        try:
            return dec.raw_decode(raw, i)
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, f"invalid JSON: {e.msg} at column {e.colno}") from None

    pos = skip(0)
    if pos == n:
        raise DataError(path, None, "the file is empty")
    if raw[pos] == "[":
        # An array of objects (a Label Studio export) is read element by element, to know each one's line;
        # an array of anything else is one JSON Lines value (spaCy's ["text", {"entities": ...}] lines).
        probe = skip(pos + 1)
        if probe < n and raw[probe] in "{]":
            pos = probe
            while pos < n and raw[pos] != "]":
                start_line = line
                value, end = decode(pos)
                line += raw.count("\n", pos, end)
                yield start_line, value
                pos = skip(end)
                if pos < n and raw[pos] == ",":
                    pos = skip(pos + 1)
                elif pos < n and raw[pos] != "]":
                    raise DataError(path, line, f"invalid JSON: expected ',' or ']' but found {raw[pos]!r}")
            if pos >= n:
                raise DataError(path, line, "invalid JSON: the array is not closed with ']'")
            if skip(pos + 1) != n:
                raise DataError(path, line, "invalid JSON: extra data after the array")
            return
        line = 1
        pos = skip(0)
    while pos < n:
        start_line = line
        value, end = decode(pos)
        line += raw.count("\n", pos, end)
        yield start_line, value
        pos = skip(end)


def _utf16_to_chars(text: str) -> list[int] | None:
    """Map UTF-16 code-unit offsets to character offsets (None when they coincide: no astral characters)."""
    if all(ord(c) < 0x10000 for c in text):
        return None
    out = []
    for i, c in enumerate(text):
        out.append(i)
        if ord(c) >= 0x10000:
            out.append(i)  # the low surrogate: an offset inside a character maps to the character
    out.append(len(text))
    return out


def make_span(text: str, start: object, end: object, label: object, claimed: str | None, where: str,
              report: Report, utf16: list[int] | None = None) -> Span | None:
    """Check one span read from a file; repair or drop it (reported), or raise DataError when malformed."""
    if not _is_int(start) or not _is_int(end):
        raise DataError(where, None, f"span offsets must be integers, got {start!r} and {end!r}")
    if not isinstance(label, str) or not label.strip():
        raise DataError(where, None, f"span label must be a non-empty string, got {label!r}")
    desc = f"[{start}, {end}) {label}"
    if start == end:
        report.add("zero-length", where, desc)
        return None
    if end < start:
        report.add("reversed", where, desc)
        return None
    ok = 0 <= start and end <= len(text) and (claimed is None or text[start:end] == claimed)
    if not ok and utf16 is not None and 0 <= start and end < len(utf16):
        s16, e16 = utf16[start], utf16[end]
        if s16 < e16 and (claimed is None or text[s16:e16] == claimed):
            # Tools written in JavaScript count UTF-16 code units, which differ from characters after an emoji.
            report.add("utf16", where, f"{desc} -> [{s16}, {e16})")
            start, end, ok = s16, e16, True
    if not ok and claimed:
        hits = [m.start() for m in re.finditer(re.escape(claimed), text)]
        if hits:
            best = min(hits, key=lambda h: (abs(h - start), h))
            report.add("realigned", where, f"{desc} {claimed!r} -> [{best}, {best + len(claimed)})")
            start, end, ok = best, best + len(claimed), True
        elif 0 <= start and end <= len(text):
            report.add("text-mismatch", where, f"{desc}: file says {claimed!r}, text has {text[start:end]!r}")
            return None
    if not ok:
        report.add("out-of-range", where, f"{desc} (text length {len(text)})")
        return None
    if not text[start:end].strip():
        report.add("whitespace-only", where, desc)
        return None
    return Span(start, end, label)


def _finish(rec: Record, located: list[tuple[Span, str]], report: Report) -> Record:
    """Drop exact duplicates (reported), sort spans, and attach their locations."""
    seen: set[Span] = set()
    keep = []
    for span, where in located:
        if span in seen:
            report.add("duplicate", where, f"[{span.start}, {span.end}) {span.label}")
            continue
        seen.add(span)
        keep.append((span, where))
    keep.sort(key=lambda sw: sw[0])
    rec.spans = [s for s, _ in keep]
    rec.where = [w for _, w in keep]
    report.records_in += 1
    report.spans_in += len(rec.spans)
    return rec


# ---------------------------------------------------------------- Label Studio


def _task_text(data: object, where: str) -> tuple[str, str]:
    if not isinstance(data, dict):
        raise DataError(where, None, f'task "data" must be an object, got {type(data).__name__}')
    if isinstance(data.get("text"), str):
        return "text", data["text"]
    strings = [k for k, v in data.items() if isinstance(v, str) and not k.startswith("nerkit_")]
    if len(strings) == 1:
        return strings[0], data[strings[0]]
    raise DataError(where, None, 'task "data" has no "text" field (and not exactly one string field to use instead)')


def _ls_regions(items: object, text: str, where: str, report: Report, utf16) -> list[tuple[Span, str]]:
    """Spans of a Label Studio ``result`` list (or JSON-MIN label list)."""
    if not isinstance(items, list):
        raise DataError(where, None, f'"result" must be a list, got {type(items).__name__}')
    out = []
    for k, item in enumerate(items):
        w = f"{where} region {k + 1}"
        if not isinstance(item, dict):
            raise DataError(w, None, f"expected an object, got {type(item).__name__}")
        value = item.get("value", item)  # JSON-MIN exports put start/end/labels at the top level
        if not isinstance(value, dict) or "start" not in value or "end" not in value:
            report.add("not-entity", w, str(item.get("type", "no start/end")))
            continue
        labels = next((v for key, v in value.items() if key.endswith("labels") and isinstance(v, list)), None)
        if not labels:
            report.add("not-entity", w, str(item.get("type", "no labels")))
            continue
        if len(labels) > 1:
            report.add("multi-label", w, ", ".join(map(str, labels)))
        claimed = value.get("text") if isinstance(value.get("text"), str) else None
        for label in labels:
            span = make_span(text, value["start"], value["end"], label, claimed, w, report, utf16)
            if span:
                out.append((span, w))
    return out


def _annotator(ann: dict) -> str | None:
    who = ann.get("completed_by", ann.get("annotator"))
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return None if who is None else str(who)


def read_labelstudio(path: str | os.PathLike, report: Report) -> list[Record]:
    """Label Studio JSON (or JSON-MIN) export: one record per task annotation, ``annotator`` set from completed_by."""
    out = []
    for index, (line, task) in enumerate(json_values(path), 1):
        where = f"{path}:{line}"
        if not isinstance(task, dict):
            raise DataError(path, line, f"task {index}: expected an object, got {type(task).__name__}")
        if "data" not in task:
            if not isinstance(task.get("text"), str):
                raise DataError(path, line, f'task {index}: no "data" (full export) or "text" (JSON-MIN export)')
            text = task["text"]
            items = next((v for k, v in task.items() if isinstance(v, list) and v and isinstance(v[0], dict)
                          and "start" in v[0]), [])
            rec = Record(str(task.get("id", index)), text, source=where, annotator=_annotator(task),
                         meta={"task": task.get("id", index)})
            out.append(_finish(rec, _ls_regions(items, text, where, report, _utf16_to_chars(text)), report))
            continue
        key, text = _task_text(task["data"], where)
        data = task["data"]
        rid = str(data.get("nerkit_id", task.get("id", index)))
        meta = {"task": task.get("id", index)}
        if data.get("nerkit_doc") is not None:
            meta["doc"] = str(data["nerkit_doc"])
        anns = task.get("annotations", task.get("completions")) or []
        if not isinstance(anns, list):
            raise DataError(path, line, f'task {index}: "annotations" must be a list')
        live = []
        for k, ann in enumerate(anns, 1):
            if not isinstance(ann, dict):
                raise DataError(path, line, f"task {index}: annotation {k} is not an object")
            if ann.get("was_cancelled"):
                report.add("skipped-record", f"{where} annotation {k}", "cancelled (skipped) annotation")
            else:
                live.append((k, ann))
        if not live:
            report.add("skipped-record", where, f"task {rid} has no annotation" + (" (only predictions)" if task.get("predictions") else ""))
            continue
        utf16 = _utf16_to_chars(text)
        for k, ann in live:
            w = f"{where} annotation {k}"
            rec = Record(rid, text, source=w, annotator=_annotator(ann) or f"annotation{k}", meta=dict(meta))
            out.append(_finish(rec, _ls_regions(ann.get("result", []), text, w, report, utf16), report))
    return out


def labelstudio_result(text: str, spans: Iterable[Span], scores: Sequence[float] | None = None,
                       prefix: str = "r") -> list[dict]:
    """Label Studio ``result`` regions for spans (``labels`` control named "label" on a Text object "text")."""
    out = []
    for k, s in enumerate(spans):
        region = {"id": f"{prefix}{k + 1}", "from_name": "label", "to_name": "text", "type": "labels",
                  "value": {"start": s.start, "end": s.end, "text": text[s.start:s.end], "labels": [s.label]}}
        if scores is not None:
            region["score"] = round(float(scores[k]), 4)
        out.append(region)
    return out


def labelstudio_tasks(records: Sequence[Record], predictions: bool = False, model_version: str = "nerkit",
                      scores: Sequence[Sequence[float]] | None = None) -> list[dict]:
    """Label Studio import tasks, with spans as completed annotations or as model predictions."""
    tasks = []
    for i, r in enumerate(records):
        data = {"text": r.text, "nerkit_id": r.id}
        if r.meta.get("doc") is not None:
            data["nerkit_doc"] = r.meta["doc"]
        result = labelstudio_result(r.text, r.spans, scores[i] if scores is not None else None, prefix=f"t{i + 1}r")
        if predictions:
            sc = scores[i] if scores is not None else []
            entry = {"model_version": model_version, "score": round(float(sum(sc) / len(sc)), 4) if len(sc) else 1.0,
                     "result": result}
            tasks.append({"data": data, "predictions": [entry]})
        else:
            tasks.append({"data": data, "annotations": [{"result": result, "was_cancelled": False}]})
    return tasks


def write_labelstudio(records: Sequence[Record], path: str | os.PathLike, report: Report) -> None:
    """Label Studio JSON tasks with one annotation each (importable; the labeling config needs Labels name="label")."""
    atomic_write_text(path, json.dumps(labelstudio_tasks(records), ensure_ascii=False, indent=1) + "\n")


# ---------------------------------------------------------------- doccano


def read_doccano(path: str | os.PathLike, report: Report) -> list[Record]:
    """doccano sequence-labeling JSONL: ``{"text", "label": [[start, end, label], ...]}`` (or "labels", or "entities")."""
    out = []
    for index, (line, rec) in enumerate(json_values(path), 1):
        where = f"{path}:{line}"
        if not isinstance(rec, dict) or not isinstance(rec.get("text", rec.get("data")), str):
            raise DataError(path, line, 'expected an object with a string "text"')
        text = rec.get("text", rec.get("data"))
        utf16 = _utf16_to_chars(text)
        located = []
        if isinstance(rec.get("entities"), list):  # doccano's relation-extraction export
            for k, ent in enumerate(rec["entities"]):
                w = f"{where} entity {k + 1}"
                if not isinstance(ent, dict):
                    raise DataError(w, None, "expected an object with start_offset, end_offset and label")
                span = make_span(text, ent.get("start_offset"), ent.get("end_offset"), ent.get("label"), None, w, report, utf16)
                if span:
                    located.append((span, w))
            if rec.get("relations"):
                report.add("not-entity", where, f"{len(rec['relations'])} relations")
        else:
            key = "label" if "label" in rec else "labels" if "labels" in rec else None
            items = rec.get(key) if key else None
            if key is None:
                report.add("no-labels", where)
                items = []
            if not isinstance(items, list):
                raise DataError(path, line, f'"{key}" must be a list of [start, end, label]')
            for k, item in enumerate(items):
                w = f"{where} label {k + 1}"
                if isinstance(item, str):
                    raise DataError(w, None, f"label {item!r} is a category, not a span: this is a text classification export")
                if not isinstance(item, list) or len(item) != 3:
                    raise DataError(w, None, f"expected [start, end, label], got {item!r}")
                span = make_span(text, item[0], item[1], item[2], None, w, report, utf16)
                if span:
                    located.append((span, w))
        rid = str(rec.get("id", index))
        meta = {"doc": str(rec["nerkit_doc"])} if rec.get("nerkit_doc") is not None else {}
        annotator = rec.get("user", rec.get("annotator"))
        out.append(_finish(Record(rid, text, source=where, annotator=None if annotator is None else str(annotator),
                                  meta=meta), located, report))
    return out


def write_doccano(records: Sequence[Record], path: str | os.PathLike, report: Report) -> None:
    """doccano JSONL (importable as sequence labeling, column "label")."""
    lines = []
    for r in records:
        rec: dict = {"id": r.id, "text": r.text, "label": [[s.start, s.end, s.label] for s in r.spans]}
        if r.meta.get("doc") is not None:
            rec["nerkit_doc"] = r.meta["doc"]
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


# ---------------------------------------------------------------- spaCy / Prodigy


def read_spacy(path: str | os.PathLike, report: Report) -> list[Record]:
    """Prodigy/spaCy JSONL ``{"text", "spans": [{start, end, label}]}`` (rejected/ignored answers skipped), or
    spaCy v2 training lines ``["text", {"entities": [[start, end, label]]}]``."""
    out = []
    for index, (line, rec) in enumerate(json_values(path), 1):
        where = f"{path}:{line}"
        if isinstance(rec, list) and len(rec) == 2 and isinstance(rec[0], str) and isinstance(rec[1], dict):
            rec = {"text": rec[0], "entities": rec[1].get("entities", [])}
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            raise DataError(path, line, 'expected an object with a string "text" (or ["text", {"entities": ...}])')
        if rec.get("answer") in ("reject", "ignore"):
            report.add("skipped-record", where, f"answer {rec['answer']!r}")
            continue
        text = rec["text"]
        utf16 = _utf16_to_chars(text)
        located = []
        if "spans" in rec or "entities" in rec:
            items = rec.get("spans", rec.get("entities"))
            if not isinstance(items, list):
                raise DataError(path, line, '"spans" must be a list')
            for k, sp in enumerate(items):
                w = f"{where} span {k + 1}"
                if isinstance(sp, list) and len(sp) == 3:
                    sp = {"start": sp[0], "end": sp[1], "label": sp[2]}
                if not isinstance(sp, dict):
                    raise DataError(w, None, "expected an object with start, end and label")
                claimed = sp.get("text") if isinstance(sp.get("text"), str) else None
                span = make_span(text, sp.get("start"), sp.get("end"), sp.get("label"), claimed, w, report, utf16)
                if span:
                    located.append((span, w))
        else:
            report.add("no-labels", where)
        meta_in = rec.get("meta") if isinstance(rec.get("meta"), dict) else {}
        rid = str(meta_in.get("id", rec.get("id", index)))
        meta = {"doc": str(meta_in["doc"])} if meta_in.get("doc") is not None else {}
        annotator = rec.get("_annotator_id", rec.get("_session_id"))
        out.append(_finish(Record(rid, text, source=where, annotator=None if annotator is None else str(annotator),
                                  meta=meta), located, report))
    return out


def write_spacy(records: Sequence[Record], path: str | os.PathLike, report: Report) -> None:
    """Prodigy-style JSONL with tokens and spans (``token_end`` inclusive), accepted answers."""
    from nerkit.data import tokenize

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


# ---------------------------------------------------------------- brat standoff

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


def read_brat(path: str | os.PathLike, report: Report) -> list[Record]:
    """brat standoff: one record per .txt file with the text-bound (T) annotations of its .ann file."""
    root = Path(path)
    out = []
    for txt, ann in _brat_pairs(root):
        text = _read_text(txt)
        rid = str(txt.relative_to(root).with_suffix("")) if root.is_dir() else txt.stem
        located = []
        if not ann.is_file():
            report.add("no-labels", str(txt), "no .ann file next to it")
        else:
            for n, line in enumerate(_read_text(ann).split("\n"), 1):
                line = line.rstrip("\r")
                if not line.strip():
                    continue
                w = f"{ann}:{n}"
                if not line.startswith("T"):
                    report.add("not-entity", w, line.split("\t", 1)[0])
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
                        report.add("discontinuous", w, m.group(3))
                    claimed = None  # brat quotes the fragments, not the covering range
                span = make_span(text, start, end, m.group(2), claimed or None, w, report)
                if span:
                    located.append((span, w))
        out.append(_finish(Record(rid, text, source=str(txt), meta={}), located, report))
    return out


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "doc"


def write_brat(records: Sequence[Record], path: str | os.PathLike, report: Report) -> None:
    """A brat directory: NAME.txt + NAME.ann per record (sentence records of one document share a file),
    and an annotation.conf listing the entity types."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise NerkitError(f"{root}: brat output must be a directory")
    root.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    labels: set[str] = set()
    named = []
    for name, group in _doc_groups(records):
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
                report.add("trimmed", f"{stem}.ann T{i}", f"line break at the edge of [{s.start}, {s.end}) {s.label}")
            label = s.label
            if re.search(r"\s", label):
                label = re.sub(r"\s+", "_", label)
                report.add("label-renamed", f"{stem}.ann T{i}", f"{s.label!r} -> {label!r}")
            labels.add(label)
            quoted = " ".join(text[a:b] for a, b in frags)
            rows.append(f"T{i}\t{label} {';'.join(f'{a} {b}' for a, b in frags)}\t{quoted}\n")
        atomic_write_text(root / f"{stem}.txt", text)
        atomic_write_text(root / f"{stem}.ann", "".join(rows))
    conf = "[entities]\n" + "".join(f"{t}\n" for t in sorted(labels)) + "\n[relations]\n\n[events]\n\n[attributes]\n"
    atomic_write_text(root / "annotation.conf", conf)


def _doc_groups(records: Sequence[Record]) -> list[tuple[str, list[Record]]]:
    """Consecutive records of one document (same ``meta["doc"]``) grouped; other records alone."""
    groups: list[tuple[str, list[Record]]] = []
    for r in records:
        doc = r.meta.get("doc")
        if doc is not None and groups and groups[-1][1][-1].meta.get("doc") == doc:
            groups[-1][1].append(r)
        else:
            groups.append((doc if doc is not None else r.id, [r]))
    return groups


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


# ---------------------------------------------------------------- nerkit JSONL and CoNLL


def read_nerkit(path: str | os.PathLike, report: Report) -> list[Record]:
    """nerkit JSONL ``{"id"?, "text", "entities": [{start, end, label}]}``, read leniently (problems reported)."""
    out = []
    for index, (line, rec) in enumerate(json_values(path), 1):
        where = f"{path}:{line}"
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            raise DataError(path, line, 'expected an object with a string "text"')
        text = rec["text"]
        located = []
        if rec.get("entities") is None:
            report.add("no-labels", where)
        elif not isinstance(rec["entities"], list):
            raise DataError(path, line, '"entities" must be a list')
        else:
            for k, ent in enumerate(rec["entities"]):
                w = f"{where} entity {k + 1}"
                if not isinstance(ent, dict):
                    raise DataError(w, None, "expected an object with start, end and label")
                claimed = ent.get("text") if isinstance(ent.get("text"), str) else None
                span = make_span(text, ent.get("start"), ent.get("end"), ent.get("label"), claimed, w, report)
                if span:
                    located.append((span, w))
        meta = {"doc": str(rec["doc"])} if rec.get("doc") is not None else {}
        out.append(_finish(Record(str(rec.get("id", f"{Path(path).name}#{index}")), text, source=where, meta=meta),
                           located, report))
    return out


def write_nerkit(records: Sequence[Record], path: str | os.PathLike, report: Report) -> None:
    """nerkit JSONL (what ``nerkit train`` reads): flat entities, trimmed of edge whitespace."""
    from nerkit.data import tokenize

    lines = []
    for r in records:
        if not tokenize(r.text)[0]:  # nerkit's reader rejects such records, and they teach nothing
            report.add("skipped-record", r.source or r.id, "text has no words")
            continue
        spans = flatten(r, report)
        rec: dict = {"id": r.id, "text": r.text, "entities": [{"start": s.start, "end": s.end, "label": s.label} for s in spans]}
        if r.meta.get("doc") is not None:
            rec["doc"] = r.meta["doc"]
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def read_conll(path: str | os.PathLike, report: Report, scheme: LabelScheme | str | None = None) -> list[Record]:
    """CoNLL columns (scheme detected unless given): one record per sentence, words joined by spaces."""
    from nerkit import data

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        docs, found = data.read_conll_with_report(path, scheme)
    for kind, n in found.violations.items():
        for _ in range(n):
            report.add("tags-repaired", f"{path}:{found.first_lines.get(kind, '?')}", f"{kind} (first occurrence)")
    records = from_documents(docs)
    for r in records:
        report.records_in += 1
        report.spans_in += len(r.spans)
    return records


def write_conll(records: Sequence[Record], path: str | os.PathLike, report: Report,
                scheme: LabelScheme | str = LabelScheme.IOB2, misaligned: str = "split") -> list[Document]:
    """CoNLL columns (``word tag``, a ``-DOCSTART-`` line per document) in the given tag scheme."""
    from nerkit import data

    target = LabelScheme(str(getattr(scheme, "value", scheme)).upper())
    docs = to_documents(records, report, misaligned=misaligned)
    if target is not LabelScheme.IOB2:
        docs = [Document(d.id, [Sentence(s.words, convert_tags(s.tags, LabelScheme.IOB2, target), s.doc_id, s.source,
                                         s.text, s.offsets) for s in d.sentences]) for d in docs]
    for d in docs:
        for s in d.sentences:
            bad = [w for w in s.words if re.search(r"\s", w)]
            if bad:
                raise NerkitError(f"{s.source}: word {bad[0]!r} contains whitespace and cannot be written as CoNLL")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data.write_conll(docs, path)
    return docs


# ---------------------------------------------------------------- records <-> documents


def flatten(rec: Record, report: Report) -> list[Span]:
    """One layer of spans for token tags: edges trimmed of whitespace; of overlapping spans the longer kept."""
    trimmed = []
    for span, where in rec.located():
        piece = rec.text[span.start:span.end]
        lead, trail = len(piece) - len(piece.lstrip()), len(piece) - len(piece.rstrip())
        if lead or trail:
            new = Span(span.start + lead, span.end - trail, span.label)
            report.add("trimmed", where, f"[{span.start}, {span.end}) -> [{new.start}, {new.end}) {span.label}")
            span = new
        trimmed.append((span, where))
    # Longest first, then leftmost: nested spans resolve to the outer one, which carries the most annotation.
    kept: list[Span] = []
    for span, where in sorted(trimmed, key=lambda sw: (-(sw[0].end - sw[0].start), sw[0].start, sw[0].label)):
        clash = next((k for k in kept if k.start < span.end and span.start < k.end), None)
        if clash is not None:
            if clash != span:
                report.add("overlap", where, f"dropped [{span.start}, {span.end}) {span.label} "
                           f"{rec.text[span.start:span.end]!r}, kept [{clash.start}, {clash.end}) {clash.label}")
            continue
        kept.append(span)
    return sorted(kept)


def _line_ranges(text: str) -> list[tuple[int, int]]:
    out, pos = [], 0
    for m in re.finditer(r"\r\n|\r|\n", text):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, len(text)))
    return out


def to_documents(records: Sequence[Record], report: Report | None = None, misaligned: str = "split",
                 flat: bool = True) -> list[Document]:
    """IOB2 documents for records: words from ``data.tokenize``, split (or spans expanded) where an edge falls
    inside a word, one sentence per line of text, consecutive records of one ``meta["doc"]`` in one document."""
    from nerkit.data import spans_to_tags, tokenize

    if misaligned not in ("split", "expand"):
        raise NerkitError(f"misaligned must be 'split' or 'expand', got {misaligned!r}")
    report = report if report is not None else Report()
    docs: list[Document] = []
    for name, group in _doc_groups(records):
        doc = Document(name)
        for rec in group:
            spans = flatten(rec, report) if flat else list(rec.spans)
            where = {s: w for s, w in rec.located()}
            words, offsets = tokenize(rec.text)
            if not words:
                report.add("skipped-record", rec.source or rec.id, "text has no words")
                continue
            if misaligned == "split":
                words, offsets, cut = split_words(words, offsets, [c for s in spans for c in (s.start, s.end)])
                for s in spans:
                    if s.start in cut or s.end in cut:
                        report.add("word-split", where.get(s, rec.source), f"[{s.start}, {s.end}) {s.label} {rec.text[s.start:s.end]!r}")
            else:
                spans = _expand(rec, spans, offsets, where, report)
            ranges = _merge_ranges(_line_ranges(rec.text), spans, rec, report)
            starts = [a for a, _ in offsets]
            for a, b in ranges:
                lo, hi = bisect_right(starts, a - 1), bisect_right(starts, b - 1)
                if lo >= hi:
                    continue
                sent_spans = [Span(s.start - a, s.end - a, s.label) for s in spans if a <= s.start and s.end <= b]
                offs = [(x - a, y - a) for x, y in offsets[lo:hi]]
                tags = spans_to_tags(offs, sent_spans)
                src = rec.source if len(ranges) == 1 else f"{rec.source} line {rec.text.count(chr(10), 0, a) + 1}"
                doc.sentences.append(Sentence(words[lo:hi], tags, doc.id, src, rec.text[a:b], offs))
        if doc.sentences:
            docs.append(doc)
    return docs


def _expand(rec: Record, spans: list[Span], offsets: list[tuple[int, int]], where: dict, report: Report) -> list[Span]:
    starts = [a for a, _ in offsets]
    out = []
    for s in spans:
        i = bisect_right(starts, s.start) - 1
        j = bisect_right(starts, s.end - 1) - 1
        a = offsets[i][0] if i >= 0 and offsets[i][0] < s.start < offsets[i][1] else s.start
        b = offsets[j][1] if j >= 0 and offsets[j][0] < s.end < offsets[j][1] else s.end
        new = Span(a, b, s.label)
        if new != s:
            report.add("expanded", where.get(s, rec.source), f"[{s.start}, {s.end}) -> [{a}, {b}) {s.label}")
        out.append(new)
    # Expansion can make two spans share a word; flatten again so each word has one owner.
    return flatten(Record(rec.id, rec.text, out, rec.source, [where.get(s, rec.source) for s in spans]), report)


def _merge_ranges(ranges: list[tuple[int, int]], spans: Sequence[Span], rec: Record, report: Report) -> list[tuple[int, int]]:
    """Join consecutive line ranges that a span crosses (an entity never straddles sentences)."""
    out = [list(ranges[0])]
    for a, b in ranges[1:]:
        crossing = next((s for s in spans if s.start < a and s.end > out[-1][1]), None)
        if crossing is not None:
            report.add("sentences-merged", rec.source, f"[{crossing.start}, {crossing.end}) {crossing.label}")
            out[-1][1] = b
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def from_documents(docs: Iterable[Document]) -> list[Record]:
    """One record per sentence (text and offsets from ``Sentence.surface()``), ``meta["doc"]`` = document id."""
    from nerkit.data import sentence_spans

    out = []
    for doc in docs:
        for k, s in enumerate(doc.sentences, 1):
            if not s.words:
                continue
            text, _ = s.surface()
            spans = sentence_spans(s)
            wheres = []
            m = re.match(r"^(.*):(\d+)$", s.source or "")
            _, offs = s.surface()
            for sp in spans:
                if m and s.text is None:  # CoNLL: one word per line, so the span's first word is line + index
                    idx = next(i for i, (a, _) in enumerate(offs) if a == sp.start)
                    wheres.append(f"{m.group(1)}:{int(m.group(2)) + idx}")
                else:
                    wheres.append(s.source or doc.id)
            rid = doc.id if len(doc.sentences) == 1 else f"{doc.id}/{k}"
            out.append(Record(rid, text, spans, s.source or doc.id, wheres, meta={"doc": doc.id}))
    return out


# ---------------------------------------------------------------- dispatch


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


def read(path: str | os.PathLike, fmt: str | None = None, report: Report | None = None) -> list[Record]:
    """Read any supported format into records (format guessed from the path when None)."""
    fmt = _check_format(fmt or detect_format(path))
    report = report if report is not None else Report()
    if fmt.startswith("conll"):
        scheme = None if fmt == "conll" else fmt.split("-")[1].upper()
        return read_conll(path, report, scheme)
    return {"labelstudio": read_labelstudio, "doccano": read_doccano, "brat": read_brat, "spacy": read_spacy,
            "nerkit": read_nerkit}[fmt](path, report)


def write(records: Sequence[Record], path: str | os.PathLike, fmt: str | None = None, report: Report | None = None,
          misaligned: str = "split") -> None:
    """Write records in a format (guessed from the path when None); changes needed by the format are reported."""
    fmt = _check_format(fmt or detect_format(path))
    report = report if report is not None else Report()
    for r in records:  # an empty label would be unreadable in every format
        if any(not s.label.strip() for s in r.spans):
            raise NerkitError(f"{r.source}: empty label")
    if fmt.startswith("conll"):
        from nerkit.scheme import chunks

        target = "IOB2" if fmt == "conll" else fmt.split("-")[1].upper()
        written = [s for d in write_conll(records, path, report, target, misaligned) for s in d.sentences]
        report.records_out += len(written)
        report.spans_out += sum(len(chunks(s.tags, LabelScheme(target))) for s in written)
        return
    {"labelstudio": write_labelstudio, "doccano": write_doccano, "brat": write_brat, "spacy": write_spacy,
     "nerkit": write_nerkit}[fmt](records, path, report)
    if fmt == "nerkit":
        from nerkit.data import tokenize

        records = [r for r in records if tokenize(r.text)[0]]
    report.records_out += len(records)
    report.spans_out += sum(len(flatten(r, Report())) if fmt == "nerkit" else len(r.spans) for r in records)


def one_per_text(records: Sequence[Record], report: Report) -> list[Record]:
    """Keep the first annotation of each Label Studio task (others reported): conversion needs one version."""
    seen: set[object] = set()
    out = []
    for r in records:
        key = ("task", r.meta["task"]) if "task" in r.meta else None
        if key is not None and key in seen:
            report.add("extra-annotation", r.source, f"annotator {r.annotator}")
            continue
        if key is not None:
            seen.add(key)
        out.append(r)
    return out


def convert(src: str | os.PathLike, dst: str | os.PathLike, src_fmt: str | None = None, dst_fmt: str | None = None,
            misaligned: str = "split", strict: bool = False) -> Report:
    """Convert an annotation file between formats; the report counts every change made."""
    report = Report(strict=strict)
    records = one_per_text(read(src, src_fmt, report), report)
    write(records, dst, dst_fmt, report, misaligned=misaligned)
    return report


def read_documents(path: str | os.PathLike, fmt: str | None = None, report: Report | None = None) -> list[Document]:
    """Any supported format as IOB2 documents (the interchange type of the rest of nerkit)."""
    report = report if report is not None else Report()
    return to_documents(one_per_text(read(path, fmt, report), report), report)


def write_documents(docs: Sequence[Document], path: str | os.PathLike, fmt: str | None = None,
                    report: Report | None = None) -> None:
    """Write IOB2 documents in any supported format."""
    write(from_documents(docs), path, fmt, report)
