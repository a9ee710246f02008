"""Inter-annotator agreement: entity-level F1 (exact and partial), token-level kappa, per-type figures, and
a report of every region where annotators disagree.

Annotators' files are matched text by text (the n-th occurrence of a text with the n-th occurrence in the
other files), so ids may differ between tools. Token labels are IOB2 tags over words that are split at every
annotator's span edges, so each annotator's spans are exactly representable on the shared tokens.
"""
# size: agreement in one module, in sections: matching texts, entity F1, token kappa (flat and per type, nested
# spans too), the figures together, the disagreement report and its page.
from __future__ import annotations

import html
import os
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Sequence

from nerkit.errors import NerkitError
from nerkit.data import split_words
from nerkit.files import atomic_write_text
from nerkit.layers import nesting
from nerkit.formats import (ChangeLog, Record, annotator_rank, flatten, read_labelled,
                                    select_annotations)
from nerkit.types import Span


@dataclass
class Aligned:
    """The texts every annotator annotated, with each annotator's spans per text."""

    names: list[str]
    records: list[list[Record]]  # [item][annotator]
    excluded: dict[str, int] = field(default_factory=dict)  # annotator -> records not shared by all
    partial: list[list[Record | None]] = field(default_factory=list)  # texts not shared by all: [item][annotator]

    def spans(self, item: int, annotator: int) -> list[Span]:
        """An annotator's spans of an item."""
        return self.records[item][annotator].spans


def load_annotators(paths: Sequence[str | os.PathLike], fmt: str | None = None, report: ChangeLog | None = None,
                    annotators: Sequence[str] | None = None, spans_key: str | None = None,
                    text_field: str | None = None) -> tuple[list[str], list[list[Record]]]:
    """Each file is one annotator; a single file with several annotators (Label Studio) is split by annotator
    (only the ``annotators`` given, ids or emails, when there are some). A task an annotator annotated more than
    once counts once, by ``convert``'s rule (``select_annotations``: the lowest annotation id), the others counted."""
    report = report if report is not None else ChangeLog()
    if len(paths) == 1:
        records = read_labelled(paths[0], fmt, report, spans_key, text_field)
        if annotators:
            select_annotations(records, ChangeLog(), annotators, paths[0])  # stops when none of them annotated
            records = [r for r in records if annotator_rank(r, annotators) is not None]
        by: dict[str, list[Record]] = {}
        for r in records:
            by.setdefault(f"{Path(paths[0]).stem}:{r.annotator or '?'}", []).append(r)
        if len(by) < 2:
            raise NerkitError(f"{paths[0]}: needs two or more annotators (give one file per annotator)")
        # Ordered by annotator (user ids numerically), not by first appearance: the JSON and JSON-MIN exports of
        # a project list annotations in different orders and must give the same result.
        order = sorted(by, key=lambda n: (not n.rsplit(":", 1)[-1].isdigit(), len(n.rsplit(":", 1)[-1]), n))
        # One annotation per task and annotator, whatever order the export lists them in.
        return order, [select_annotations(by[n], report) for n in order]
    names, sets = [], []
    for p in paths:
        name, k = Path(p).stem or str(p), 2
        while name in names:
            name, k = f"{Path(p).stem}-{k}", k + 1
        names.append(name)
        sets.append(select_annotations(read_labelled(p, fmt, report, spans_key, text_field), report, annotators, p))
    return names, sets


def align(names: Sequence[str], sets: Sequence[Sequence[Record]]) -> Aligned:
    """Records matched across annotators by text (and occurrence); texts some annotator lacks are excluded (kept in
    ``Aligned.partial``, so that they can be listed)."""
    if len(sets) < 2:
        raise NerkitError("agreement needs two or more annotators")
    keyed: list[dict[tuple[str, int], Record]] = []
    for records in sets:
        seen: Counter = Counter()
        d = {}
        for r in records:
            d[(r.text, seen[r.text])] = r
            seen[r.text] += 1
        keyed.append(d)
    shared = [k for k in keyed[0] if all(k in d for d in keyed[1:])]
    if not shared:
        raise NerkitError("the annotators' files share no texts")
    excluded = {n: len(d) - len(shared) for n, d in zip(names, keyed)}
    common = set(shared)
    partial = list(dict.fromkeys(k for d in keyed for k in d if k not in common))
    return Aligned(list(names), [[d[k] for d in keyed] for k in shared], excluded,
                   [[d.get(k) for d in keyed] for k in partial])


# ---------------------------------------------------------------- entity-level F1


def _max_matching(a: Sequence[Span], b: Sequence[Span], ok) -> int:
    """Size of a maximum one-to-one matching between spans where ``ok(x, y)`` (Kuhn's augmenting paths)."""
    adj = [[j for j, y in enumerate(b) if ok(x, y)] for x in a]
    owner: list[int | None] = [None] * len(b)

    def augment(i: int, seen: set[int]) -> bool:
        for j in adj[i]:
            if j not in seen:
                seen.add(j)
                if owner[j] is None or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return sum(augment(i, set()) for i in range(len(a)))


def _overlap(x: Span, y: Span) -> bool:
    return x.label == y.label and x.start < y.end and y.start < x.end


def pair_f1(a: Sequence[Sequence[Span]], b: Sequence[Sequence[Span]], partial: bool = False,
            label: str | None = None) -> dict:
    """Entity F1 of annotator b against a over items: exact (same start, end, label) or partial (same label,
    overlapping; one-to-one). F1 is symmetric: 2 x matches / (spans of a + spans of b)."""
    matches = na = nb = 0
    for sa, sb in zip(a, b):
        if label is not None:
            sa, sb = [s for s in sa if s.label == label], [s for s in sb if s.label == label]
        na, nb = na + len(sa), nb + len(sb)
        matches += _max_matching(sa, sb, _overlap) if partial else len(set(sa) & set(sb))
    return {"matches": matches, "a": na, "b": nb,
            "precision": matches / nb if nb else None, "recall": matches / na if na else None,
            "f1": 2 * matches / (na + nb) if na + nb else None}


# ---------------------------------------------------------------- token-level kappa


def cohen_kappa(x: Sequence[str], y: Sequence[str]) -> float | None:
    """Cohen's kappa of two label sequences (None when chance agreement is total: kappa is undefined)."""
    if len(x) != len(y):
        raise ValueError("sequences differ in length")
    n = len(x)
    if not n:
        return None
    po = sum(a == b for a, b in zip(x, y)) / n
    cx, cy = Counter(x), Counter(y)
    pe = sum(cx[k] * cy[k] for k in cx) / (n * n)
    return None if pe == 1 else (po - pe) / (1 - pe)


def fleiss_kappa(rows: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa of items (rows) each labelled by the same number of raters (None when undefined)."""
    if not rows:
        return None
    m = len(rows[0])
    if m < 2 or any(len(r) != m for r in rows):
        raise ValueError("every item needs the same number (two or more) of ratings")
    n = len(rows)
    totals: Counter = Counter()
    p_bar = 0.0
    for r in rows:
        c = Counter(r)
        totals.update(c)
        p_bar += (sum(v * v for v in c.values()) - m) / (m * (m - 1))
    p_bar /= n
    pe = sum((v / (n * m)) ** 2 for v in totals.values())
    return None if pe == 1 else (p_bar - pe) / (1 - pe)


def _shared_tokens(recs: Sequence[Record]) -> list[tuple[int, int]]:
    """The tokens of one item's text, split at every span edge of every annotator (nested spans' too)."""
    from nerkit.data import tokenize

    words, offsets = tokenize(recs[0].text)
    return split_words(words, offsets, [c for r in recs for s in r.spans for c in (s.start, s.end)])[1]


def token_labels(al: Aligned, report: ChangeLog | None = None) -> list[list[str]]:
    """Per annotator, the IOB2 tag of every shared token of every item (items concatenated)."""
    from nerkit.data import spans_to_tags

    report = report if report is not None else ChangeLog()
    out: list[list[str]] = [[] for _ in al.names]
    for recs in al.records:
        offsets = _shared_tokens(recs)
        for k, r in enumerate(recs):  # token tags hold one layer: of nested spans the outer one (counted)
            out[k] += spans_to_tags(offsets, flatten(r, report))
    return out


def token_types(al: Aligned, label: str) -> list[list[str]]:
    """Per annotator, for every shared token: ``label`` if it lies in a span of that type (nested ones too), else
    "O" — a type's tokens, which one tag layer cannot hold where spans nest."""
    out: list[list[str]] = [[] for _ in al.names]
    for recs in al.records:
        offsets = _shared_tokens(recs)
        for k, r in enumerate(recs):
            spans = [s for s in r.spans if s.label == label]
            out[k] += [label if any(s.start <= a and b <= s.end for s in spans) else "O" for a, b in offsets]
    return out


def _kappa(columns: Sequence[Sequence[str]]) -> dict:
    if len(columns) == 2:
        return {"cohen": cohen_kappa(columns[0], columns[1])}
    pairs = [cohen_kappa(a, b) for a, b in combinations(columns, 2)]
    defined = [p for p in pairs if p is not None]
    return {"fleiss": fleiss_kappa(list(zip(*columns))),
            "mean_pairwise_cohen": sum(defined) / len(defined) if defined else None}


# ---------------------------------------------------------------- everything together


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def agreement(al: Aligned, report: ChangeLog | None = None) -> dict:
    """Pairwise exact/partial entity F1, token kappa (Cohen for two, Fleiss for more), per-type figures."""
    n = len(al.names)
    per_ann = [[recs[k].spans for recs in al.records] for k in range(n)]
    tags = token_labels(al, report)
    pairs = []
    for i, j in combinations(range(n), 2):
        pairs.append({"a": al.names[i], "b": al.names[j], "exact": pair_f1(per_ann[i], per_ann[j]),
                      "partial": pair_f1(per_ann[i], per_ann[j], partial=True),
                      "kappa": cohen_kappa(tags[i], tags[j])})
    labels = sorted({s.label for spans in per_ann for item in spans for s in item})
    per_type = {}
    for label in labels:
        per_type[label] = {
            "count": {al.names[k]: sum(s.label == label for item in per_ann[k] for s in item) for k in range(n)},
            "exact_f1": _mean(pair_f1(per_ann[i], per_ann[j], label=label)["f1"] for i, j in combinations(range(n), 2)),
            "partial_f1": _mean(pair_f1(per_ann[i], per_ann[j], True, label)["f1"] for i, j in combinations(range(n), 2)),
            "kappa": _kappa(token_types(al, label)),
        }
    return {
        "annotators": list(al.names),
        "items": len(al.records),
        "tokens": len(tags[0]),
        "excluded": dict(al.excluded),
        "exact_f1": _mean(p["exact"]["f1"] for p in pairs),
        "partial_f1": _mean(p["partial"]["f1"] for p in pairs),
        "kappa": _kappa(tags),
        "kappa_outermost": any(any(d) or crossing for recs in al.records for r in recs
                               for d, crossing in [nesting(r.spans)]),
        "pairs": pairs,
        "per_type": per_type,
    }


def _fmt(x: float | None) -> str:
    return "  n/a" if x is None else f"{x:.3f}"


def format_agreement(result: dict) -> str:
    """A readable summary of ``agreement()``."""
    k = result["kappa"]
    lines = [f"{len(result['annotators'])} annotators ({', '.join(result['annotators'])}), {result['items']} shared texts, "
             f"{result['tokens']} tokens"]
    skipped = {a: n for a, n in result["excluded"].items() if n}
    if skipped:
        lines.append("texts not annotated by everyone (left out): " + ", ".join(f"{a} {n}" for a, n in skipped.items()))
    lines.append(f"entity F1 exact {_fmt(result['exact_f1'])}  partial {_fmt(result['partial_f1'])}  (mean over pairs)")
    outer = ("  (outermost entities: a token's tag holds one; the per-type kappas count nested ones too)"
             if result.get("kappa_outermost") else "")
    if "cohen" in k:
        lines.append(f"token Cohen's kappa {_fmt(k['cohen'])}{outer}")
    else:
        lines.append(f"token Fleiss' kappa {_fmt(k['fleiss'])}  (mean pairwise Cohen {_fmt(k['mean_pairwise_cohen'])})"
                     f"{outer}")
    lines.append("")
    w = max([len(f"{p['a']} / {p['b']}") for p in result["pairs"]] + [4])
    lines.append(f"{'pair':<{w}}  exact  partial  kappa  spans")
    for p in result["pairs"]:
        lines.append(f"{p['a'] + ' / ' + p['b']:<{w}}  {_fmt(p['exact']['f1'])}  {_fmt(p['partial']['f1'])}    "
                     f"{_fmt(p['kappa'])}  {p['exact']['a']}/{p['exact']['b']}")
    if result["per_type"]:
        lines.append("")
        w = max(len(t) for t in result["per_type"]) + 2
        lines.append(f"{'type':<{w}}  exact  partial  kappa  spans per annotator")
        for t, d in result["per_type"].items():
            kk = d["kappa"].get("cohen", d["kappa"].get("fleiss"))
            lines.append(f"{t:<{w}}  {_fmt(d['exact_f1'])}  {_fmt(d['partial_f1'])}    {_fmt(kk)}  "
                         + " ".join(str(c) for c in d["count"].values()))
    return "\n".join(lines)


# ---------------------------------------------------------------- disagreements


@dataclass
class Region:
    """Overlapping spans of all annotators in one text: ``versions[k]`` is annotator k's spans there."""

    item: int
    start: int
    end: int
    versions: list[tuple[Span, ...]]

    @property
    def agreed(self) -> bool:
        """Whether every annotator drew exactly the same spans here."""
        return len(set(self.versions)) == 1


def regions(span_sets: Sequence[Sequence[Span]], item: int = 0) -> list[Region]:
    """Group every annotator's spans of one text into regions of transitively overlapping spans."""
    tagged = sorted((s, k) for k, spans in enumerate(span_sets) for s in spans)
    out: list[Region] = []
    cur: list[tuple[Span, int]] = []
    end = -1
    for s, k in tagged + [(None, -1)]:
        if s is None or (cur and s.start >= end):
            if cur:
                versions = [tuple(sorted(x for x, kk in cur if kk == a)) for a in range(len(span_sets))]
                out.append(Region(item, cur[0][0].start, end, versions))
            cur, end = [], -1
        if s is not None:
            cur.append((s, k))
            end = max(end, s.end)
    return out


def disagreements(al: Aligned) -> list[Region]:
    """Every region where the annotators' spans are not identical."""
    out = []
    for i, recs in enumerate(al.records):
        out += [r for r in regions([x.spans for x in recs], i) if not r.agreed]
    return out


def _marked(text: str, spans: Sequence[Span], lo: int, hi: int) -> str:
    out, pos = [], lo
    for s in sorted(spans):
        out.append(text[pos:s.start])
        out.append(f"[{text[s.start:s.end]}]{s.label}")
        pos = max(pos, s.end)
    out.append(text[pos:hi])
    return "".join(out)


def context(text: str, start: int, end: int, width: int = 40) -> tuple[str, str]:
    """Up to ``width`` characters of text before ``start`` and after ``end``, on one line."""
    left = text[max(0, start - width):start].replace("\n", " ")
    right = text[end:end + width].replace("\n", " ")
    return ("…" if start > width else "") + left, right + ("…" if end + width < len(text) else "")


def format_disagreements(al: Aligned, found: Sequence[Region]) -> str:
    """Each conflicting region in context, with every annotator's version, as plain text."""
    if not found:
        return "no disagreements"
    w = max(len(n) for n in al.names)
    lines = [f"{len(found)} regions where annotators disagree"]
    for r in found:
        rec = al.records[r.item][0]
        left, right = context(rec.text, r.start, r.end)
        lines += ["", f"== {rec.id} ({rec.source}) [{r.start}, {r.end})", f"   {left}«{rec.text[r.start:r.end]}»{right}"]
        for name, v in zip(al.names, r.versions):
            shown = _marked(rec.text, v, r.start, r.end) if v else "(nothing)"
            lines.append(f"   {name:<{w}}  {shown}")
    return "\n".join(lines)


_PALETTE = ["#ffd8a8", "#b2f2bb", "#a5d8ff", "#eebefa", "#ffec99", "#ffc9c9", "#c5f6fa", "#d0bfff"]


def disagreements_html(al: Aligned, found: Sequence[Region]) -> str:
    """A self-contained HTML page of the conflicting regions, spans highlighted per annotator."""
    labels = sorted({s.label for r in found for v in r.versions for s in v})
    color = {t: _PALETTE[i % len(_PALETTE)] for i, t in enumerate(labels)}

    def marked(text: str, spans: Sequence[Span], lo: int, hi: int) -> str:
        out, pos = [], lo
        for s in sorted(spans):
            out.append(html.escape(text[pos:s.start]))
            out.append(f'<mark style="background:{color[s.label]}" title="{html.escape(s.label)}">'
                       f'{html.escape(text[s.start:s.end])}<sub>{html.escape(s.label)}</sub></mark>')
            pos = max(pos, s.end)
        out.append(html.escape(text[pos:hi]))
        return "".join(out)

    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>Annotator disagreements</title><style>',
             "body{font-family:sans-serif;max-width:60em;margin:2em auto}.c{border-top:1px solid #ccc;padding:.5em 0}",
             ".ctx{color:#555}table{border-collapse:collapse}td{padding:.15em .6em;vertical-align:top}",
             "td.n{font-weight:bold;white-space:nowrap}mark{padding:0 .15em;border-radius:3px}sub{font-size:.65em}",
             "</style></head><body>",
             f"<h1>{len(found)} regions where annotators disagree</h1>",
             f"<p>Annotators: {html.escape(', '.join(al.names))}; {len(al.records)} shared texts.</p>"]
    for n, r in enumerate(found, 1):
        rec = al.records[r.item][0]
        left, right = context(rec.text, r.start, r.end)
        parts.append(f'<div class="c" id="r{n}"><div><b>{html.escape(rec.id)}</b> '
                     f'<span class="ctx">{html.escape(rec.source)} [{r.start}, {r.end})</span></div><table>')
        for name, v in zip(al.names, r.versions):
            body = marked(rec.text, v, r.start, r.end) if v else f"{html.escape(rec.text[r.start:r.end])} <i>(nothing)</i>"
            parts.append(f'<tr><td class="n">{html.escape(name)}</td><td><span class="ctx">{html.escape(left)}</span>'
                         f'{body}<span class="ctx">{html.escape(right)}</span></td></tr>')
        parts.append("</table></div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_disagreements(al: Aligned, found: Sequence[Region], text_path: str | os.PathLike | None = None,
                        html_path: str | os.PathLike | None = None) -> None:
    """Write the disagreement report as text and/or HTML."""
    if text_path:
        atomic_write_text(text_path, format_disagreements(al, found) + "\n")
    if html_path:
        atomic_write_text(html_path, disagreements_html(al, found))
