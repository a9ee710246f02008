"""Nested and overlapping entities on tag layers: which layer each span goes on, and how spans nest.

A token tag sequence holds one layer of non-overlapping entities; nested data (an entity inside another, one range
with two types, crossing spans) needs several. ``assign_layers`` puts each span on the lowest layer where it
overlaps nothing, longest first at each start, so layer 0 holds the outermost entities (what a flat model trains on)
and flat data stays on one layer.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Iterable, Sequence

from nerkit.scheme import chunks
from nerkit.types import Span

Offsets = list[tuple[int, int]]  # character range [start, end) of each word


def assign_layers(spans: Iterable[Span], inner_first: bool = False) -> list[list[Span]]:
    """Spans on as few non-overlapping layers as needed, each on the lowest layer where it overlaps nothing: longest
    first at each start, so nested entities go under their container (layer 0 holds the outermost ones); a span with
    a second type, or a crossing span, goes one layer down; flat data stays on one layer. ``inner_first`` takes the
    shortest spans first instead (layer 0 holds the innermost entities, containers go down)."""
    order = (sorted(set(spans), key=lambda s: (s.end - s.start, s.start, s.label)) if inner_first
             else sorted(set(spans), key=lambda s: (s.start, -s.end, s.label)))
    layers: list[list[Span]] = []
    for sp in order:
        k = next((i for i, layer in enumerate(layers) if all(o.end <= sp.start or sp.end <= o.start for o in layer)),
                 len(layers))
        if k == len(layers):
            layers.append([])
        layers[k].append(sp)
    return [sorted(layer) for layer in layers]


def spans_to_layers(offsets: Offsets, spans: Iterable[Span], inner_first: bool = False) -> list[list[str]]:
    """IOB2 tag layers for words at ``offsets``, one for flat spans (see ``assign_layers``, applied to the words a
    span covers: two spans that share a word never share a layer)."""
    starts, ends = [s for s, _ in offsets], [e for _, e in offsets]
    words = {Span(bisect_right(ends, sp.start), bisect_left(starts, sp.end), sp.label) for sp in spans}
    out = []
    for layer in assign_layers(words, inner_first) or [[]]:
        tags = ["O"] * len(offsets)
        for sp in layer:
            tags[sp.start] = f"B-{sp.label}"
            tags[sp.start + 1:sp.end] = [f"I-{sp.label}"] * (sp.end - sp.start - 1)
        out.append(tags)
    return out


def nesting(spans: Sequence[Span]) -> tuple[list[int], int]:
    """Per span, how many other spans contain it (0: outermost); and the number of crossing pairs (partly
    overlapping, neither inside the other). The same range with two types counts as nested, not crossing."""
    order = sorted(spans, key=lambda s: (s.start, -s.end))
    depth = {sp: 0 for sp in spans}
    crossing = 0
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if b.start >= a.end:
                break
            if b.end <= a.end:
                depth[b] += 1  # inside a (the same range with another type: b, later in order, counts as inner)
            else:
                crossing += 1
    return [depth[sp] for sp in spans], crossing


def relayered(tags: Sequence[Sequence[str]], inner_first: bool) -> list[list[str]]:
    """One sentence's tag layers laid anew (``assign_layers`` order) from the entities they hold."""
    spans = {Span(s, e, label) for layer in tags for label, s, e in chunks(layer)}
    n = len(tags[0]) if tags else 0
    return spans_to_layers([(i, i + 1) for i in range(n)], spans, inner_first)


Key = Sequence  # one word's identity: its text, or its subword pieces
InnerOccurrences = dict[tuple, tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]]


def inner_occurrences(items: Iterable[tuple[Sequence[Key], Iterable[tuple[int, int]]]]) -> InnerOccurrences:
    """Where texts annotated as an entity inside another lie inside an entity: for each such text (a tuple of word
    keys), the (item, first word, last + 1) where it is annotated and where it is not. ``items`` are (word keys,
    gold word ranges) of sentences; only texts annotated as an inner entity at least once are reported."""
    items = [(list(keys), {tuple(r) for r in ranges}) for keys, ranges in items]
    inner: set[tuple] = set()
    for keys, rs in items:
        inner.update(tuple(keys[a:b]) for a, b in rs
                     if any(x <= a and b <= y and (x, y) != (a, b) for x, y in rs))
    lengths: dict = {}  # first word -> lengths of the inner texts it starts
    for t in inner:
        lengths.setdefault(t[0], set()).add(len(t))
    found: InnerOccurrences = {}
    for i, (keys, rs) in enumerate(items):
        seen = set()
        for x, y in rs:
            for a in range(x, y):
                for n in lengths.get(keys[a], ()):
                    b = a + n
                    text = tuple(keys[a:b])
                    if b <= y and (a, b) != (x, y) and (a, b) not in seen and text in inner:
                        seen.add((a, b))
                        found.setdefault(text, ([], []))[0 if (a, b) in rs else 1].append((i, a, b))
    return found
