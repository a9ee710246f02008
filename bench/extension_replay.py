"""Replay the rule that trains on past the plan (``budget.extension``) on recorded dev curves (no training).

    python bench/extension_replay.py                         # the curves in bench/results/domains*.json
    python bench/extension_replay.py runs/tos runs/genia     # and model directories' nerkit.json histories

A training asks the rule at its plan's end and again at each extension's end, if early stopping has not ended it
before. This script asks the rule at those evaluations only: for a model directory, at the plan's steps recorded in
``nerkit.json`` (``budget.planned_steps``; in older records its steps less the extensions, taken as the plan's when
within 5 % of the budget's "~N steps") and at each extension's end the training reached; for ``bench/domains.py``'s
records, a search point that trained to its planned steps, at its plan's end and at the end of each extension it
trained through (``extension_ends``: search points can extend since session 29), and a one training, at its last
evaluation, when its steps are the plan of the same cell's (x1, x1) search point (its curve is in epochs: one that
extended is not read). Each answer is set beside the rule before session 28, which read the last evaluation alone
("the last one the best by 5 %"); every decision where the two differ is printed, then the count of decisions read.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from nerkit.budget import EXTEND_GAIN, extension, extension_size

ROOT = Path(__file__).resolve().parent.parent


def last_only(f1s: list[float]) -> bool:
    """The rule before session 28: the last evaluation the best by EXTEND_GAIN of its value."""
    last, before = f1s[-1], max(f1s[:-1])
    return last > 0 and last - before >= EXTEND_GAIN * last


def differs(f1s: list[float]) -> bool:
    """Whether the current rule and the last-only one decide differently after these evaluations."""
    return (extension([{"dev_f1": f} for f in f1s], 1000, 1000) > 0) != last_only(f1s)


def extension_ends(planned: int, steps: int) -> list[int]:
    """The steps where a training of ``planned`` steps that trained ``steps`` asked the rule: its plan's end, then the
    end of each extension it trained through (search points record no extensions; each is sized by the rule)."""
    ends = [planned]
    while (more := extension_size(planned, ends[-1])) and ends[-1] + more <= steps:
        ends.append(ends[-1] + more)
    return ends


def decisions_of(path: Path) -> list[tuple[str, list[float]]]:
    """(name, dev F1s up to a decision) for the runs of a ``bench/domains.py`` results file that reached their plan."""
    out = []
    for row in json.loads(path.read_text()).get("rows", []):
        name = f"{path.name} {row.get('dataset')} {row.get('size')}"
        search = (row.get("nerkit") or {}).get("search") or {}
        plan = {}
        for p in search.get("points", []):
            if len(p) < 9 or not p[8]:
                continue
            plan[(p[0], p[1])] = p[7]
            if p[6] is not None and p[7] and p[6] >= p[7]:  # asked at its plan's end and each extension's it reached
                out += [(f"{name} search point lr x{p[0]:g} epochs x{p[1]:g} at step {end}",
                         [f for s, f in p[8] if s <= end]) for end in extension_ends(p[7], p[6])]
        once = row.get("once") or {}
        if once.get("dev_curve") and once.get("steps") and once["steps"] == plan.get((1.0, 1.0)):
            out.append((f"{name} one training", [f for _, f in once["dev_curve"]]))
    return out


def model_decisions(d: Path) -> list[tuple[str, list[float]]]:
    """(name, dev F1s up to a decision) for a model directory's training."""
    meta = json.loads((d / "nerkit.json").read_text())
    budget = meta.get("budget", {})
    history, extended = meta.get("history") or [], budget.get("extended_steps") or []
    planned = budget.get("planned_steps")
    if planned is None:  # recorded before session 29: the steps less the extensions, if close to the plan's "~N"
        planned = meta["steps"] - sum(extended)
        approx = re.search(r"~([\d,]+) steps", budget.get("describe", ""))
        if approx and planned < 0.95 * int(approx.group(1).replace(",", "")):
            return []  # stopped early: never asked
    ends = [planned + sum(extended[:i]) for i in range(len(extended) + 1)]
    # asked at each end the training reached (early stopping can end it before its plan or an extension)
    return [(f"{d} at step {end}", [h["dev_f1"] for h in history if h["step"] <= end])
            for end in ends if history and end <= meta["steps"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", type=Path, help="model directories (their nerkit.json dev history)")
    args = ap.parse_args()
    runs = [c for f in sorted((ROOT / "bench" / "results").glob("domains*.json")) for c in decisions_of(f)]
    runs += [c for d in args.models for c in model_decisions(d)]
    asked = [(name, f1s) for name, f1s in runs if len(f1s) >= 2]
    for name, f1s in asked:
        if differs(f1s):
            print(f"{name} ({' '.join(f'{f * 100:.1f}' for f in f1s)}): now "
                  f"{'extends' if not last_only(f1s) else 'stops'}, before the other way")
    print(f"{len(asked)} decisions read")


if __name__ == "__main__":
    main()
