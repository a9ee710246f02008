"""Annotation guidelines as data (``Guidelines``: entity types with descriptions and examples) and checking
datasets against them. (Not ``scheme.LabelScheme``, which is how tags encode spans.)

A guidelines file is a YAML or JSON file naming each entity type with a description and examples::

    name: news
    types:
      PER:
        description: Names of people, real or fictional.
        examples: [Angela Merkel, Sherlock Holmes]
      LOC:
        description: Places.
        examples: [Paris, the Alps]

(``types`` may also be a list of ``{name, description, examples}``; ``counterexamples``, ``color`` and ``inside`` are
optional. ``inside: [DNA, RNA]`` is the nesting rule: the types an entity of this type may be annotated inside, as
"IL-2" inside "IL-2 gene"; ``validate`` reports the other nestings.)
"""
from __future__ import annotations

import difflib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence
from xml.sax.saxutils import quoteattr

from nerkit.errors import DataError
from nerkit.types import Span

TYPE_KEYS = {"name", "description", "examples", "counterexamples", "color", "inside"}
# Abbreviations whose period does not end a sentence (checked case-insensitively, without the period).
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "mt", "ft", "inc", "ltd", "co", "corp", "jr", "sr", "no",
                 "vs", "etc", "gen", "col", "lt", "sgt", "gov", "sen", "rep", "rev", "hon", "dept", "univ", "ave",
                 "bros", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
OPENERS, CLOSERS = "([{«“‘\"'", ")]}»”’\"'"


@dataclass
class EntityType:
    """One entity type of the guidelines."""

    name: str
    description: str
    examples: list[str]
    counterexamples: list[str] = field(default_factory=list)
    color: str | None = None
    line: int | None = None  # where the type is defined in the schema file
    inside: list[str] = field(default_factory=list)  # the types it may be annotated inside (nested entities)


@dataclass
class Guidelines:
    """The entity types of a project, in the order the schema file lists them."""

    types: dict[str, EntityType]
    path: str = ""
    name: str | None = None

    def labels(self) -> list[str]:
        """Entity type names in schema order."""
        return list(self.types)

    def where(self, label: str) -> str:
        """'schema-file:line' of a type's definition."""
        line = self.types[label].line
        return f"{self.path}:{line}" if line else self.path

    def labelstudio_config(self) -> str:
        """A Label Studio labeling config (XML) with one Label per type; the description becomes its hint."""
        rows = []
        for t in self.types.values():
            attrs = f"value={quoteattr(t.name)} hint={quoteattr(t.description)}"
            if t.color:
                attrs += f" background={quoteattr(t.color)}"
            rows.append(f"    <Label {attrs}/>")
        return ('<View>\n  <Labels name="label" toName="text">\n' + "\n".join(rows) +
                '\n  </Labels>\n  <Text name="text" value="$text"/>\n</View>\n')


def _lines_of_types(raw: str) -> dict[str, int]:
    """Line of each type's definition, from the YAML node tree (empty if the file does not compose)."""
    import yaml

    try:
        root = yaml.compose(raw, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    out: dict[str, int] = {}
    for key, value in root.value:
        if key.value not in ("types", "labels", "entities"):
            continue
        if isinstance(value, yaml.MappingNode):
            for k, _ in value.value:
                out[str(k.value)] = k.start_mark.line + 1
        elif isinstance(value, yaml.SequenceNode):
            for item in value.value:
                if isinstance(item, yaml.MappingNode):
                    name = next((v for k, v in item.value if k.value == "name"), None)
                    if name is not None:
                        out[str(name.value)] = item.start_mark.line + 1
    return out


def _strings(value: object, where: str, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise DataError(where, None, f"{what} must be a list of strings")
    return [str(v) for v in value]


def load_guidelines(path: str | os.PathLike) -> Guidelines:
    """Read and check a schema file: every type needs a name, a description and at least one example."""
    import yaml

    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(p, None, "no such file") from None
    except UnicodeDecodeError:
        raise DataError(p, None, "not UTF-8 text") from None
    try:
        doc = json.loads(raw) if p.suffix.lower() == ".json" else yaml.safe_load(raw)
    except json.JSONDecodeError as e:
        raise DataError(p, e.lineno, f"invalid JSON: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(p, mark.line + 1 if mark else None, f"invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(doc, dict):
        raise DataError(p, None, "a schema is a mapping with a 'types' entry")
    key = next((k for k in ("types", "labels", "entities") if k in doc), None)
    if key is None:
        raise DataError(p, None, "no 'types' entry (a mapping or list of entity types)")
    lines = _lines_of_types(raw)
    items = doc[key]
    if isinstance(items, dict):
        entries = [({"name": k, **(v if isinstance(v, dict) else {"description": v})}) for k, v in items.items()]
    elif isinstance(items, list):
        entries = [e if isinstance(e, dict) else {"name": e} for e in items]
    else:
        raise DataError(p, None, f"'{key}' must be a mapping or a list, got {type(items).__name__}")
    types: dict[str, EntityType] = {}
    for e in entries:
        name = str(e.get("name", "")).strip()
        line = lines.get(name)
        where = f"{p}:{line}" if line else str(p)
        if not name or re.search(r"\s", name):
            raise DataError(where, None, f"type name {name!r} must be non-empty and without spaces")
        if name in types:
            raise DataError(where, None, f"type {name!r} is defined twice")
        unknown = set(e) - TYPE_KEYS
        if unknown:
            hint = {u: difflib.get_close_matches(u, TYPE_KEYS, 1) for u in unknown}
            said = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in sorted(hint.items()))
            raise DataError(where, None, f"type {name}: unknown keys {said}")
        desc = e.get("description")
        if not isinstance(desc, str) or not desc.strip():
            raise DataError(where, None, f"type {name} has no description (the guideline for annotators)")
        examples = _strings(e.get("examples"), where, f"type {name}: examples")
        if not examples:
            raise DataError(where, None, f"type {name} has no examples")
        types[name] = EntityType(name, desc.strip(), examples, _strings(e.get("counterexamples"), where,
                                 f"type {name}: counterexamples"), e.get("color"), line,
                                 _strings(e.get("inside"), where, f"type {name}: inside"))
    if not types:
        raise DataError(p, None, "the schema lists no entity types")
    for t in types.values():
        unknown = [x for x in t.inside if x not in types]
        if unknown:
            raise DataError(f"{p}:{t.line}" if t.line else p, None,
                            f"type {t.name}: inside names {unknown[0]!r}, which is not a type of the schema")
    return Guidelines(types, str(p), doc.get("name"))


# ---------------------------------------------------------------- checking data


@dataclass
class Finding:
    """One problem found in a dataset: ``where`` is 'file:line' (or record), severity 'error' or 'warning'."""

    severity: str
    kind: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.severity}: {self.message}"


# Reading changes that mean the file itself is wrong (the rest are repairs worth knowing about).
_READ_ERRORS = {"zero-length", "reversed", "out-of-range", "whitespace-only", "text-mismatch"}


def _ends_sentence(text: str, i: int) -> bool:
    """Whether the punctuation at ``text[i]`` ends a sentence (not an abbreviation or an initial)."""
    if text[i] in "!?":
        return True
    m = re.search(r"(\w+)$", text[:i])
    if not m:
        return False
    word = m.group(1)
    if len(word) == 1 or word.lower() in ABBREVIATIONS:
        return False
    if i >= 2 and "." in text[max(0, m.start() - 2):m.start()]:  # U.S. / e.g.: dotted abbreviations
        return False
    return True


def _a_sentence(core: str) -> bool:
    """Whether a span is a whole sentence (a clause, whose full stop is its own): a capital or digit first and five
    words or more. tos-clauses' dev set had 126 "ends with a full stop" warnings, one per clause; 'Paris.' is not."""
    return (core[0].isupper() or core[0].isdigit()) and len(core.split()) >= 5


def suspicious(text: str, span: Span) -> list[tuple[str, str]]:
    """``(kind, message)`` for a span whose edges or extent look wrong."""
    piece = text[span.start:span.end]
    out = []
    if piece != piece.strip():
        out.append(("edge-space", f"span {piece!r} ({span.label}) starts or ends with whitespace"))
    core = piece.strip()
    if core:
        first, last = core[0], core[-1]
        if first in ",;:.!?)]}»”’" or (first in OPENERS and not any(c in core[1:] for c in CLOSERS)):
            out.append(("edge-punct", f"span {piece!r} ({span.label}) starts with {first!r}"))
        if last in ",;:!?([{«“‘" or (last in ")]}»”’\"'" and not any(c in core[:-1] for c in OPENERS)):
            out.append(("edge-punct", f"span {piece!r} ({span.label}) ends with {last!r}"))
        elif (last == "." and len(core) > 1 and _ends_sentence(core, len(core) - 1) and "." not in core[:-1]
              and not _a_sentence(core)):
            out.append(("edge-punct", f"span {piece!r} ({span.label}) ends with a full stop"))
    if "\n" in piece.strip() or "\r" in piece.strip():
        out.append(("crosses-sentence", f"span {piece!r} ({span.label}) crosses a line break"))
    else:
        for m in re.finditer(r"[.!?][\"')\]’”]*\s+(?=[A-Z0-9\"“(])", core):
            if _ends_sentence(core, m.start()):
                out.append(("crosses-sentence", f"span {piece!r} ({span.label}) crosses a sentence end"))
                break
    return out


def check_records(records: Sequence, schema: Guidelines | None = None) -> tuple[list[Finding], Counter]:
    """Findings for records (``formats.Record``) and the number of spans per label."""
    from nerkit.data import tokenize

    findings: list[Finding] = []
    per_label: Counter = Counter()
    known = schema.labels() if schema else None
    for rec in records:
        _, offsets = tokenize(rec.text)
        inside = {c for a, b in offsets for c in range(a + 1, b)}
        spans = rec.located()
        for i, (span, where) in enumerate(spans):
            per_label[span.label] += 1
            piece = rec.text[span.start:span.end]
            if known is not None and span.label not in known:
                close = difflib.get_close_matches(span.label, known, 1, 0.5) or [k for k in known if k.lower() == span.label.lower()]
                hint = f" (did you mean {close[0]}?)" if close else ""
                findings.append(Finding("error", "unknown-label", where,
                                        f"label {span.label!r} of {piece!r} is not in the schema{hint}"))
            elif schema is not None and piece.strip().casefold() in {c.casefold() for c in schema.types[span.label].counterexamples}:
                findings.append(Finding("warning", "counterexample", where,
                                        f"span {piece!r} is listed as a counterexample of {span.label}"))
            for kind, msg in suspicious(rec.text, span):
                findings.append(Finding("warning", kind, where, msg))
            if span.start in inside or span.end in inside:
                findings.append(Finding("warning", "partial-word", where,
                                        f"span {piece!r} ({span.label}) starts or ends inside a word"))
            for other, _ in spans[i + 1:]:
                if other.start >= span.end:
                    break
                found = _overlapping(rec.text, span, other, schema)
                if found is not None:
                    findings.append(Finding("warning", found[0], where, found[1]))
    return findings, per_label


def _overlapping(text: str, a: Span, b: Span, schema: Guidelines | None) -> tuple[str, str] | None:
    """What to say of two overlapping spans: "nested" (one inside the other, or one range with two types) unless
    the schema's ``inside`` allows it, "overlap" when they cross; None when the schema allows the nesting."""
    def say(s: Span) -> str:
        return f"{text[s.start:s.end]!r} ({s.label})"

    if not (a.start <= b.start and b.end <= a.end) and not (b.start <= a.start and a.end <= b.end):
        return "overlap", f"span {say(a)} crosses {say(b)} (neither lies inside the other)"
    outer, inner = (a, b) if a.start <= b.start and b.end <= a.end else (b, a)
    rules = {t.name: t.inside for t in schema.types.values()} if schema is not None else {}
    if outer.label in rules.get(inner.label, ()) or (inner.start == outer.start and inner.end == outer.end
                                                    and inner.label in rules.get(outer.label, ())):
        return None
    hint = (f"; the schema's nesting rule does not allow {inner.label} inside {outer.label} (add it to "
            f"{inner.label}'s inside: if it is meant)") if any(rules.values()) else ""
    if (inner.start, inner.end) == (outer.start, outer.end):
        return "nested", f"span {text[a.start:a.end]!r} is both {outer.label} and {inner.label}{hint}"
    return "nested", f"span {say(outer)} contains {say(inner)}{hint}"


def validate(schema: Guidelines | str | os.PathLike, data: str | os.PathLike | Iterable[str | os.PathLike],
             fmt: str | None = None) -> list[Finding]:
    """Check datasets against a schema: unknown labels, types without examples, suspicious spans, bad records."""
    from nerkit import formats

    if not isinstance(schema, Guidelines):
        schema = load_guidelines(schema)
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    findings: list[Finding] = []
    total: Counter = Counter()
    for path in paths:
        report = formats.ChangeLog()
        records = formats.read(path, fmt, report)
        for c in report.changes:
            severity = "error" if c.kind in _READ_ERRORS else "warning"
            findings.append(Finding(severity, c.kind, c.where, formats.CHANGES[c.kind] + (f": {c.detail}" if c.detail else "")))
        # Nested and crossing spans are warnings in every format: nerkit trains on them (a nested model).
        found, per_label = check_records(records, schema)
        findings += found
        total += per_label
    for name in schema.labels():
        if not total[name]:
            findings.append(Finding("warning", "empty-type", schema.where(name),
                                    f"type {name} has no annotated examples in {', '.join(map(str, paths))}"))
    return findings


def format_findings(findings: Sequence[Finding]) -> str:
    """Findings one per line, then counts per kind."""
    if not findings:
        return "no problems found"
    counts = Counter((f.severity, f.kind) for f in findings)
    errors = sum(n for (s, _), n in counts.items() if s == "error")
    lines = [str(f) for f in findings]
    lines.append(f"{errors} errors, {len(findings) - errors} warnings:")
    lines += [f"  {n:>6}  {sev} {kind}" for (sev, kind), n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))]
    return "\n".join(lines)

