"""Adjudication: merge several annotators' versions by majority; ties and conflicts go to a review file that a
person edits (setting each conflict's "decision") and that is then applied to the merged data.

Voting is per region of overlapping spans (``agreement.regions``): each annotator's version of the region
(the exact spans they drew there, possibly none) is one vote. A version with more than half of the votes wins
("majority"); with ``strategy="plurality"`` a version with more votes than any other also wins. Every other
region is left without entities in the merged output and written to the review file.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from nerkit.annotate.agreement import Aligned, context, regions
from nerkit.errors import DataError, NerkitError
from nerkit.files import atomic_write_text
from nerkit.formats import ChangeLog, Record, json_values
from nerkit.types import Span


@dataclass
class Outcome:
    """Merged records, the conflicts for review, and how many regions were decided by vote."""

    records: list[Record]
    conflicts: list[dict]
    agreed: int  # regions where every annotator drew the same spans
    voted: int  # regions decided by vote without full agreement


def _span_dict(text: str, s: Span) -> dict:
    return {"start": s.start, "end": s.end, "label": s.label, "text": text[s.start:s.end]}


def adjudicate(al: Aligned, strategy: str = "majority") -> Outcome:
    """Merge aligned annotations by vote; unresolved regions become review items."""
    if strategy not in ("majority", "plurality"):
        raise NerkitError(f"strategy must be 'majority' or 'plurality', got {strategy!r}")
    n = len(al.names)
    merged, conflicts = [], []
    agreed = voted = 0
    for i, recs in enumerate(al.records):
        first = recs[0]
        keep: list[Span] = []
        for reg in regions([r.spans for r in recs], i):
            votes = Counter(reg.versions)
            ranked = sorted(votes.items(), key=lambda kv: (-kv[1], reg.versions.index(kv[0])))
            top, count = ranked[0]
            runner_up = ranked[1][1] if len(ranked) > 1 else 0
            if count == n:
                agreed += 1
                keep += top
            elif count * 2 > n or (strategy == "plurality" and count > runner_up):
                voted += 1
                keep += top
            else:
                left, right = context(first.text, reg.start, reg.end)
                options = [{"option": k + 1, "votes": c,
                            "annotators": [al.names[a] for a, v in enumerate(reg.versions) if v == version],
                            "spans": [_span_dict(first.text, s) for s in version]}
                           for k, (version, c) in enumerate(ranked)]
                conflicts.append({
                    "conflict": len(conflicts) + 1, "index": i, "id": first.id, "source": first.source,
                    "kind": "tie" if count == runner_up else "no majority",
                    "start": reg.start, "end": reg.end,
                    "context": f"{left}«{first.text[reg.start:reg.end]}»{right}",
                    "text": first.text, "options": options, "decision": None,
                })
        merged.append(Record(first.id, first.text, sorted(keep), first.source, meta=dict(first.meta)))
    return Outcome(merged, conflicts, agreed, voted)


def report_left_out(al: Aligned, report: ChangeLog) -> None:
    """Count and locate each text that not every annotator annotated: it is left out of the merge."""
    for recs in al.partial:
        have = [n for n, r in zip(al.names, recs) if r is not None]
        first = next(r for r in recs if r is not None)
        missing = [n for n, r in zip(al.names, recs) if r is None]
        report.add("not-shared", first.source or first.id, f"annotated by {', '.join(have)}; not by {', '.join(missing)}")


def write_review(conflicts: Sequence[dict], path: str | os.PathLike) -> None:
    """The review file: JSON Lines, one conflict per line; a person sets "decision" on each."""
    atomic_write_text(path, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in conflicts))


def _decided_spans(c: dict, where: str) -> list[Span] | None:
    """The spans a review item's decision selects (None when undecided)."""
    d = c.get("decision")
    if d is None:
        return None
    text, lo, hi = c.get("text"), c.get("start"), c.get("end")
    if not isinstance(text, str) or not isinstance(lo, int) or not isinstance(hi, int):
        raise DataError(where, None, 'review item lost its "text", "start" or "end"')
    if isinstance(d, bool):
        raise DataError(where, None, f"decision must be an option number or a list of spans, got {d!r}")
    if isinstance(d, int):
        opts = {o.get("option"): o for o in c.get("options", [])}
        if d not in opts:
            raise DataError(where, None, f"decision {d} is not one of the options {sorted(opts)}")
        items = opts[d]["spans"]
    elif isinstance(d, list):
        items = d
    else:
        raise DataError(where, None, f"decision must be an option number or a list of spans, got {d!r}")
    spans = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("start"), int) or not isinstance(item.get("end"), int) \
                or not isinstance(item.get("label"), str) or not item["label"].strip():
            raise DataError(where, None, f"decided span {item!r} needs integer start, end and a label")
        s, e = item["start"], item["end"]
        if not lo <= s < e <= hi:
            raise DataError(where, None, f"decided span [{s}, {e}) lies outside the conflict region [{lo}, {hi})")
        if "text" in item and item["text"] != text[s:e]:
            raise DataError(where, None, f"decided span [{s}, {e}) says {item['text']!r} but the text there is {text[s:e]!r}")
        spans.append(Span(s, e, item["label"]))
    return spans


def apply_review(records: Sequence[Record], review: str | os.PathLike,
                 allow_undecided: bool = False) -> tuple[list[Record], int, int]:
    """Add the decided spans of a review file to merged records; returns (records, decided, undecided).

    Undecided items raise NerkitError unless ``allow_undecided`` (they stay without entities).
    """
    out = [Record(r.id, r.text, list(r.spans), r.source, list(r.where), r.annotator, dict(r.meta)) for r in records]
    by_text: dict[str, list[int]] = {}
    for k, r in enumerate(out):
        by_text.setdefault(r.text, []).append(k)
    decided = 0
    undecided: list[str] = []
    for line, c in json_values(review):
        where = f"{review}:{line}"
        if not isinstance(c, dict):
            raise DataError(review, line, "expected a review item (a JSON object)")
        spans = _decided_spans(c, where)
        if spans is None:
            undecided.append(where)
            continue
        idx = c.get("index")
        if not (isinstance(idx, int) and 0 <= idx < len(out) and out[idx].text == c["text"]):
            # The merged file was reordered or filtered: find the record by its text (and id when repeated).
            cands = by_text.get(c["text"], [])
            cands = [k for k in cands if out[k].id == str(c.get("id"))] or cands
            if not cands:
                raise DataError(where, None, f"no record of the merged data has the text of conflict {c.get('conflict')}")
            idx = cands[0]
        rec = out[idx]
        clash = [s for s in rec.spans if s.start < c["end"] and c["start"] < s.end]
        if clash:
            raise DataError(where, None, f"record {rec.id} already has spans in [{c['start']}, {c['end']}): was this review applied twice?")
        rec.spans = sorted(rec.spans + spans)
        rec.where = []
        decided += 1
    if undecided and not allow_undecided:
        raise NerkitError(f"{len(undecided)} review items have no decision yet (first: {undecided[0]}); "
                          'set "decision" to an option number or a list of spans, or allow undecided items')
    return out, decided, len(undecided)
