"""The search `nerkit train` makes by default on small data: the derived budget's learning rate and epochs tried at
x1 and x2 each, the dev-best kept.

The derived budget is one rule for every data set; a data set's own best differs from it by a few points at a few
hundred sentences, and no rule closes that (bench/results/domains_h100.md: over 17 data set x size cells the
rule was within 1.0 test F1 of the best of a 6-point grid in 11, and no other grid point as a rule did better).
In all 17 cells that best point was one of these four, so the search costs four trainings instead of one (about 5x
the time: two run twice as long, early stopping shortens some) and, chosen on your dev set only, gets what tuning
would. ``decide`` says when the default searches: up to 1,000 sentences (``budget.SEARCH_SENTENCES``), a dev set,
learning rate and epochs left to the rule; ``--search`` / ``--no-search`` force it either way.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from typing import Sequence

from nerkit import budget as budget_rule
from nerkit.budget import SEARCH_SENTENCES, Budget
from nerkit.errors import NerkitError
from nerkit.formats import as_documents
from nerkit.modeldir import check_output
from nerkit.train import (Datasets, TrainConfig, TrainingDiverged, TrainResult, budget_for, fit, load_datasets,
                          save_or_rescue)

LR_X = (1.0, 2.0)
EPOCHS_X = (1.0, 2.0)


@dataclass(frozen=True)
class SearchPoint:
    """One setting tried: multipliers of the derived (or given) budget, the values used, the dev F1 reached (and the
    test F1, given a test set: recorded for comparison, never used to choose)."""

    lr_x: float
    epochs_x: float
    lr: float
    epochs: float
    dev_f1: float
    seconds: float
    test_f1: float | None = None


@dataclass
class SearchResult:
    """Every point tried, the dev-best one, and its training result (saved to ``result.output`` if given)."""

    points: list[SearchPoint]
    best: SearchPoint
    result: TrainResult

    def table(self) -> str:
        """The points as a small text table, the kept one marked."""
        rows = [f"{'lr':>8} {'epochs':>7} {'dev F1':>7} {'seconds':>8}"]
        for p in self.points:
            mark = "  <- kept" if p == self.best else ""
            rows.append(f"{p.lr:8.2g} {p.epochs:7g} {p.dev_f1 * 100:7.2f} {p.seconds:8.0f}{mark}")
        return "\n".join(rows)


def _processes() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


@dataclass(frozen=True)
class Decision:
    """Whether the default searches, why (one line for the log), and the budget it looked at (None: not read)."""

    search: bool
    reason: str
    budget: dict | None = None


def decide(train, dev=None, config: TrainConfig | None = None, scheme: str | None = None,
           annotators: Sequence[str] | None = None) -> Decision:
    """Whether `nerkit train` without --search/--no-search searches on this data (``train``: a path, documents, or
    the ``Datasets`` `nerkit train` read, whose dev set counts and whose tokenized training data is kept)."""
    cfg = (config or TrainConfig()).resolved()
    if cfg.lr is not None or cfg.epochs is not None or cfg.max_steps is not None:
        return Decision(False, "")  # the user chose the budget: train once with it, nothing to say
    if _processes() > 1:
        return Decision(False, "several processes: training once (--search is for one process)")
    if cfg.resume:
        return Decision(False, "--resume: training once (a search leaves no checkpoint to resume)")
    data = train if isinstance(train, Datasets) else None
    docs = data.train if data is not None else as_documents(train, scheme, annotators)
    if sum(1 for d in docs for x in d.sentences if x.words) > budget_rule.SEARCH_SENTENCES:
        return Decision(False, "")  # large data: no need to tokenize it for a budget that would not search
    base = budget_for(data if data is not None else docs, config=cfg)
    if not Budget(**base).searches():
        return Decision(False, "", base)  # the rule is close to the best there (docs/domains.md)
    if dev is None and not (data is not None and data.dev):
        return Decision(False, f"{base['sentences']:,} sentences and no --dev: training once with the derived budget; "
                               "with a dev set nerkit would try 4 learning rate x epochs settings and keep the best", base)
    return Decision(True, f"{base['sentences']:,} sentences (up to {SEARCH_SENTENCES:,}) with a dev set: trying the "
                          "derived learning rate and epochs at x1 and x2 (4 trainings, about 5x one) and keeping the "
                          "best on dev; --no-search trains once", base)


def search(train, dev=None, test=None, output=None, config: TrainConfig | None = None, scheme: str | None = None,
           lr_x: Sequence[float] = LR_X, epochs_x: Sequence[float] = EPOCHS_X,
           annotators: Sequence[str] | None = None, budget: dict | None = None) -> SearchResult:
    """Train at each learning-rate x epochs multiple of the budget (``budget``: already derived for ``train``);
    keep the best on ``dev``; save it to ``output``. The data is read once (``train`` may be the ``Datasets``
    already read, holding dev and test) and every point trains on it."""
    if dev is None and not (isinstance(train, Datasets) and train.dev):
        raise NerkitError("--search chooses the settings on the dev set: give --dev")
    cfg = (config or TrainConfig()).resolved()
    if cfg.resume:
        raise NerkitError("--search trains several models and keeps one; it cannot --resume")
    if _processes() > 1:  # untried with torchrun: each process would run its own loop of four trainings
        raise NerkitError("--search runs in one process: start it without torchrun (or train once with --no-search)")
    if output is not None:
        check_output(output)  # before the first of several trainings
    data = load_datasets(train, dev, test, scheme, annotators)
    base = budget or budget_for(data, config=cfg)
    grid = [(a, b) for b in epochs_x for a in lr_x]
    points: list[SearchPoint] = []
    best: tuple[SearchPoint, TrainResult] | None = None
    for i, (a, b) in enumerate(grid, 1):
        lr, epochs = base["lr"] * a, max(1.0, round(base["epochs"] * b, 2))
        if cfg.progress:
            print(f"search {i}/{len(grid)}: learning rate x{a:g} ({lr:.2g}), epochs x{b:g} ({epochs:g})",
                  file=sys.stderr, flush=True)
        t0 = time.time()
        try:
            res = fit(data, None, None, None, dataclasses.replace(cfg, lr=lr, epochs=epochs), scheme,
                      annotators=annotators)
        except TrainingDiverged as exc:  # a point too hot for this data: the others still count
            print(f"search {i}/{len(grid)}: {exc}", file=sys.stderr, flush=True)
            continue
        test_f1 = res.metrics["test"]["f1"] if "test" in res.metrics else None
        point = SearchPoint(a, b, lr, epochs, float(res.metrics.get("dev", {}).get("f1", 0.0)), round(time.time() - t0, 1),
                            test_f1)
        points.append(point)
        if best is None or point.dev_f1 > best[0].dev_f1:  # ties keep the earlier, cheaper point
            best = (point, res)
        del res  # one model in memory besides the best
    if best is None:
        raise NerkitError("every training of the search diverged (the loss went infinite or NaN); nothing was "
                          "saved. Train with a lower --lr and --no-search")
    point, res = best
    res.meta.extra["search"] = {"points": [dataclasses.asdict(p) for p in points], "kept": dataclasses.asdict(point),
                                "chosen_on": "dev"}
    if output is not None and res.main:
        res.output = save_or_rescue(res.model.to("cpu"), res.tokenizer, res.meta, output)
    return SearchResult(points, point, res)
