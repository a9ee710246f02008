"""Replay the small-data search with other rungs on the dev curves a benchmark recorded (no training).

    python bench/search_rungs.py                                  # runs/domains_v3/runs.jsonl, a few rung sets
    python bench/search_rungs.py --runs R.jsonl --rungs 0.2,0.3 --rungs 0.2,0.4

Each search record of ``bench/domains.py`` (system "nerkit") keeps every point's dev curve up to where it stopped
(the kept point's to its end); its "once" record is the one training it is timed against. A replay runs the race of
``nerkit.search`` (its ``survivors`` rule, ``MARGIN`` at every rung but the last) on those curves: a point is judged
at its first evaluation at or past a rung's fraction of its plan, by its best dev F1 so far. It prints, per cell,
the point kept and the optimizer steps of all points over the one training's. Where the replay needs a curve past
the step where the real search stopped that point, the cell says so ("unknown"): its outcome was not recorded.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nerkit.search import MARGIN, RUNGS, survivors

ROOT = Path(__file__).resolve().parent.parent


def replay(points: dict, rungs: tuple[float, ...]) -> tuple[str, object]:
    """("kept", (point, steps)) or ("unknown", why): the race on recorded curves. ``points``: (lr_x, epochs_x) ->
    (curve [(step, dev F1)], planned steps, steps trained, step stopped at or None)."""
    alive, stopped_at = list(points), {}
    for n, fraction in enumerate(rungs):
        last = n == len(rungs) - 1
        best = []
        for key in alive:
            curve, planned, _, stopped = points[key]
            due = [s for s, _ in curve if s >= fraction * planned]
            if not due and stopped is None:  # it ended before this rung (early stopping): in the race, done
                best.append(max(f for _, f in curve))
                continue
            if not due or (stopped is not None and due[0] > stopped):
                return "unknown", f"{key} was stopped at step {stopped}, before this rung"
            stopped_at[key] = due[0]
            best.append(max(f for s, f in curve if s <= due[0]))
        keep = survivors(best, 0.0 if last else MARGIN, last)
        done = {k for k in alive if not any(s >= fraction * points[k][1] for s, _ in points[k][0])}
        alive = [k for k, go_on in zip(alive, keep) if go_on or k in done]  # an ended point is never stopped
    if any(points[k][3] is not None for k in alive):
        return "unknown", f"{[k for k in alive if points[k][3] is not None][0]} goes on, but was stopped"
    kept = max(alive, key=lambda k: max(f for _, f in points[k][0]))  # ties: the earlier (cheaper) point
    steps = sum(points[k][2] if k in alive else stopped_at[k] for k in points)
    return "kept", (kept, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "domains_v3" / "runs.jsonl")
    ap.add_argument("--rungs", action="append", help="comma-separated fractions (repeat to compare several sets)")
    args = ap.parse_args()
    sets = [tuple(float(x) for x in r.split(",")) for r in args.rungs] if args.rungs else [
        RUNGS, (0.2, 0.3), (0.2, 0.25), (0.15, 0.3)]
    last: dict = {}
    for line in args.runs.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        last[(r["ds"], r["size"], r["system"])] = r
    for rungs in sets:
        print(f"rungs {', '.join(f'{x:g}' for x in rungs)}" + ("  (nerkit's)" if rungs == RUNGS else ""))
        for (ds, size, system), r in sorted(last.items()):
            once = last.get((ds, size, "once"))
            if system != "nerkit" or "search" not in r or once is None:
                continue
            points = {(p[0], p[1]): (p[8], p[7], p[6], p[5]) for p in r["search"]["points"]}
            what, found = replay(points, rungs)
            real = tuple(r["search"]["kept"])
            if what == "kept":
                (kept, steps) = found
                print(f"  {ds:10} {size:>5}: kept lr x{kept[0]:g}, epochs x{kept[1]:g}"
                      f"{'' if kept == real else ' (the search kept another)'}; steps {steps / once['steps']:.2f}x one")
            else:
                print(f"  {ds:10} {size:>5}: unknown: {found}")


if __name__ == "__main__":
    main()
