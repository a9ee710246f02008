"""Tag schemes (IOB1, IOB2, BIOES): detection, validation, conversion, and chunk extraction.

Everything in nerkit works on IOB2 internally; other schemes are converted here, and only here.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Sequence


Chunk = tuple[str, int, int]  # (label, first word, last word + 1)


class LabelScheme(str, Enum):
    """A word-level tag scheme."""

    IOB1 = "IOB1"
    IOB2 = "IOB2"
    BIOES = "BIOES"


PREFIXES = {LabelScheme.IOB1: "IB", LabelScheme.IOB2: "IB", LabelScheme.BIOES: "BIES"}


def split_tag(tag: str) -> tuple[str, str]:
    """Split ``"B-PER"`` into ``("B", "PER")``; ``"O"`` gives ``("O", "")``. Raises ValueError on other shapes."""
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIESLU":
        prefix = {"L": "E", "U": "S"}.get(tag[0], tag[0])  # BILOU is BIOES by other names
        return prefix, tag[2:]
    raise ValueError(f"tag {tag!r} is not O or PREFIX-TYPE with PREFIX in B, I, E, S")


def detect_scheme(sequences: Iterable[Sequence[str]]) -> LabelScheme:
    """Guess the scheme of tag sequences: BIOES if E-/S- occur; IOB1 if more entities start with I- than B-; else IOB2."""
    # Counting both kinds of entity start (rather than "any I- start means IOB1") keeps a few stray
    # "O -> I-X" errors in IOB2 data from flipping detection, which would then flag every B- as invalid IOB1.
    i_starts = b_starts = 0
    for tags in sequences:
        prev_p, prev_t = "O", ""
        for tag in tags:
            p, t = split_tag(tag)
            if p in "ES":
                return LabelScheme.BIOES
            if prev_p == "O" or prev_t != t:
                i_starts += p == "I"
                b_starts += p == "B"
            prev_p, prev_t = p, t
    return LabelScheme.IOB1 if i_starts > b_starts else LabelScheme.IOB2


@dataclass
class Violations:
    """Invalid transitions found in tag sequences, counted by kind (e.g. ``"O -> I-PER"``)."""

    counts: Counter = field(default_factory=Counter)
    first: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (sequence, position)

    def add(self, kind: str, seq: int, pos: int) -> None:
        self.counts[kind] += 1
        self.first.setdefault(kind, (seq, pos))

    def __bool__(self) -> bool:
        return bool(self.counts)

    def total(self) -> int:
        return sum(self.counts.values())


def validate(sequences: Sequence[Sequence[str]], scheme: LabelScheme) -> Violations:
    """Report transitions that are invalid under ``scheme``, counted by kind."""
    v = Violations()
    for si, tags in enumerate(sequences):
        prev_p, prev_t = "O", ""
        for i, tag in enumerate(list(tags) + ["O"]):
            p, t = split_tag(tag)
            if p not in PREFIXES[scheme] and p != "O":
                v.add(f"{p}- prefix not used in {scheme.value}", si, i)
            elif scheme is LabelScheme.IOB2 and p == "I" and not (prev_p in "BI" and prev_t == t):
                v.add(f"{prev_p if prev_p == 'O' else prev_p + '-' + prev_t} -> {tag}", si, i)
            elif scheme is LabelScheme.IOB1 and p == "B" and not (prev_p in "BI" and prev_t == t):
                v.add(f"B-{t} not after {t}", si, i)
            elif scheme is LabelScheme.BIOES:
                inside = prev_p in "BI"
                if inside and not (p in "IE" and t == prev_t):
                    v.add(f"{prev_p}-{prev_t} -> {tag if i < len(tags) else 'end'}", si, i)
                elif not inside and p in "IE":
                    v.add(f"{prev_p if prev_p == 'O' else prev_p + '-' + prev_t} -> {tag}", si, i)
            prev_p, prev_t = p, t
    return v


def chunks(tags: Sequence[str], scheme: LabelScheme = LabelScheme.IOB2) -> list[Chunk]:
    """Entities in a tag sequence as ``(label, start, end)`` word ranges; lenient like seqeval's default mode.

    One reading serves IOB1, IOB2 and BIOES alike; ``scheme`` is accepted for call-site clarity.
    """
    out: list[Chunk] = []
    label, start = None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        p, t = split_tag(tag)
        # B- and S- always begin an entity, in every scheme; I-/E- of another type begin one leniently.
        begins = p in "BS" or (p in "IE" and (label != t))
        if label is not None and (p == "O" or begins):
            out.append((label, start, i))
            label = None
        if p != "O" and (label is None):
            label, start = t, i
        if p in "ES" and label is not None:
            out.append((label, start, i + 1))
            label = None
    return out


def from_chunks(chunk_list: Iterable[Chunk], length: int, scheme: LabelScheme = LabelScheme.IOB2) -> list[str]:
    """Tags of length ``length`` in ``scheme`` for non-overlapping chunks."""
    tags = ["O"] * length
    ordered = sorted(chunk_list, key=lambda c: c[1])
    prev_end, prev_label = -1, None
    for label, s, e in ordered:
        for i in range(s, e):
            tags[i] = f"I-{label}"
        if scheme is LabelScheme.IOB2:
            tags[s] = f"B-{label}"
        elif scheme is LabelScheme.IOB1:
            if prev_end == s and prev_label == label:
                tags[s] = f"B-{label}"
        else:
            if e - s == 1:
                tags[s] = f"S-{label}"
            else:
                tags[s], tags[e - 1] = f"B-{label}", f"E-{label}"
        prev_end, prev_label = e, label
    return tags


def convert(tags: Sequence[str], source: LabelScheme, target: LabelScheme = LabelScheme.IOB2) -> list[str]:
    """Convert one tag sequence between schemes (through its chunks)."""
    return from_chunks(chunks(tags, source), len(tags), target)


def labels_of(tags: Iterable[str]) -> list[str]:
    """Entity types named in tags, sorted."""
    return sorted({split_tag(t)[1] for t in tags} - {""})


def iob2_labels(types: Iterable[str]) -> list[str]:
    """The IOB2 tag inventory for entity types: ``O`` first, then ``B-``/``I-`` per type."""
    out = ["O"]
    for t in sorted(set(types)):
        out += [f"B-{t}", f"I-{t}"]
    return out

