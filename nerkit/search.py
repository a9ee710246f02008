"""The search `nerkit train` makes by default on small data: the derived budget's learning rate and epochs tried at
x1 and x2 each, those behind on dev stopped early, the dev-best kept.

The derived budget is one rule for every data set; a data set's own best differs from it by a few points at a few
hundred sentences, and no rule closes that (bench/results/domains_h100.md: over 17 data set x size cells the
rule was within 1.0 test F1 of the best of a 6-point grid in 11, and no other grid point as a rule did better).
In all 17 cells that best point was one of these four, so the search starts four trainings and, chosen on your dev
set only, gets what tuning would. Trained to their ends the four cost about 5x one training (two run twice as long);
here they take turns instead (successive halving): each runs to a rung, a fixed fraction of its own planned steps
(``RUNGS``), where the half behind on dev F1 so far stops unless within ``MARGIN`` of the best (at the last rung
the best alone goes on, with any point tied with it); those left train to their ends and the dev-best of them is
kept. On a CPU with several cores the trainings run side by side in threads, one core each (``cores_for``), and
the last one left gets them all. An x2-epochs point waits as many epochs for a dev gain as one training would
(``_patience``), not twice as many. ``decide`` says when the default searches: up to 1,000 sentences
(``budget.SEARCH_SENTENCES``), a dev set, learning rate and epochs left to the rule; ``--search`` / ``--no-search``
force it either way.
"""
# size: the whole search in one place (when it runs, its rungs, the race of points, what it keeps), with the
# measurements that set its constants.
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from nerkit import budget as budget_rule
from nerkit.budget import SEARCH_SENTENCES, Budget
from nerkit.engines import available_cores
from nerkit.errors import NerkitError
from nerkit.formats import as_documents
from nerkit.modeldir import check_output
from nerkit.train import (Datasets, TrainConfig, Training, TrainingDiverged, TrainResult, bars_disabled, budget_for,
                          choose_layers, load_datasets, save_or_rescue, start_training, trains_span_head,
                          with_span_dropout)

LR_X = (1.0, 2.0)
EPOCHS_X = (1.0, 2.0)
# Rungs compare the points at equal fractions of each one's own plan, not at equal steps: a point with x2 epochs
# has twice the steps and a schedule (warm-up 10 %, linear decay to 0 at its end) stretched to match, so at equal
# steps it would be judged at half its schedule, its learning rate still high, against x1 points near their end. At
# equal fractions every point has had the same share of warm-up and decay, and the evaluations (about ten per plan,
# ``budget.TARGET_EVALS``) fall at the same fractions. At its first evaluation past 20 % of its plan, the kept point
# of each of the 9 CPU benchmark cells (docs/domains.md) was 0.0-8.4 dev F1 below its end (median 1.2), past 40 %
# 0.0-0.65 (median 0.2): the first rung keeps the top half, the second the best, each with any point within MARGIN.
# Four full trainings cost 6 x one plan's steps; stopped at the rungs they cost 6 x 0.2, then at most 4 x 0.2, then
# the rest of the one point left, 0.6 or 1.2: 2.2-3.2 x one plan, more where points tie at the last rung, less where
# early stopping ends one sooner.
RUNGS = (0.2, 0.4)
# A point within this dev F1 of the best goes on even outside the top half: one training seed moves dev F1 by
# 0.5-1.5 points at 100-300 sentences (docs/domains.md, seed table), so a gap below 1.0 is no evidence yet; and past
# 40 % the kept points above still gained up to 0.65. At the last rung the best alone goes on: two points within 1.0
# there are a coin flip (dev at their ends picks by the same noise), and training two to their ends had cost tsa-md
# 100 2.86x one training's wall time and CoNLL-2003 300 3.47x (docs/domains.md).
MARGIN = 0.01
# After the last rung the points left train side by side in rounds of this share of the shortest plan: a point that
# ends (x1 epochs beside x2, or early stopping) hands its core to the others from the next round on. Every round ends
# on a barrier, where a worker waits out its neighbour's dev evaluation (about one per round per point).
CHUNK = 0.1


@dataclass(frozen=True)
class SearchPoint:
    """One setting tried: multipliers of the derived (or given) budget, the values used, the dev F1 reached (the
    best so far where the search stopped it) and the test F1, given a test set and a point trained to its end
    (recorded for comparison, never used to choose); steps trained of those planned, the step where the search
    stopped it (None: trained to its end), and its dev curve, (step, dev F1) of each evaluation."""

    lr_x: float
    epochs_x: float
    lr: float
    epochs: float
    dev_f1: float
    seconds: float
    test_f1: float | None = None
    steps: int = 0
    planned_steps: int = 0
    stopped_at: int | None = None
    curve: tuple[tuple[int, float], ...] = ()


@dataclass
class SearchResult:
    """Every point tried, the dev-best one, and its training result (saved to ``result.output`` if given)."""

    points: list[SearchPoint]
    best: SearchPoint
    result: TrainResult

    def table(self) -> str:
        """The points as a small text table, the kept one marked and the stopped ones with their step."""
        rows = [f"{'lr':>8} {'epochs':>7} {'dev F1':>7} {'steps':>11} {'seconds':>8}"]
        for p in self.points:
            mark = "  <- kept" if p == self.best else (f"  stopped at step {p.stopped_at}" if p.stopped_at else "")
            steps = f"{p.steps}/{p.planned_steps}"
            rows.append(f"{p.lr:8.2g} {p.epochs:7g} {p.dev_f1 * 100:7.2f} {steps:>11} {p.seconds:8.0f}{mark}")
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
                          "derived learning rate and epochs at x1 and x2 (4 trainings, those behind on dev stopped at "
                          f"{' and '.join(f'{r:.0%}' for r in RUNGS)} of their plan: about 2-3x the time of one) and "
                          "keeping the best on dev; --no-search trains once", base)


def survivors(best: Sequence[float], margin: float = MARGIN, last: bool = False) -> list[bool]:
    """At a rung: which of the points still in the race (dev F1 so far, in grid order) go on: the top half (ties
    to the earlier, cheaper point) and any other within ``margin`` of the best; at the ``last`` rung the best alone
    (and any point tied with it)."""
    order = sorted(range(len(best)), key=lambda i: (-best[i], i))
    top = set(order[:1 if last else math.ceil(len(best) / 2)])
    return [i in top or best[order[0]] - f <= margin + 1e-9 for i, f in enumerate(best)]


class _Stopwatch:
    """A clock that runs only while its training runs (``with watch:``), so a point's seconds and the elapsed times
    of its dev curve leave out the time it waited for its turn."""

    def __init__(self) -> None:
        self.total, self.since = 0.0, None

    def __call__(self) -> float:
        return self.total + (time.time() - self.since if self.since is not None else 0.0)

    def __enter__(self) -> "_Stopwatch":
        self.since = time.time()
        return self

    def __exit__(self, *exc) -> None:
        self.total, self.since = self(), None


@dataclass(eq=False)  # a point is itself: the race keys its stopping tests by point
class _Point:
    """One search point: its training, paused between rungs, and what became of it."""

    lr_x: float
    epochs_x: float
    cfg: TrainConfig
    training: Training | None
    steps: Iterator[Any] | None
    planned: int
    watch: _Stopwatch
    status: str = "running"  # running | done (trained to its end) | stopped (behind at a rung) | diverged
    result: TrainResult | None = None
    stopped_at: int | None = None
    final: tuple[float, int, list] | None = None  # once not running: dev F1, steps trained, dev curve

    @property
    def label(self) -> str:
        """How the log names it."""
        return f"lr x{self.lr_x:g}, epochs x{self.epochs_x:g}"

    @property
    def best(self) -> float:
        """Its best dev F1 so far (final once it no longer runs)."""
        if self.final is not None:
            return self.final[0]
        return max(0.0, self.training.run.state.best_f1)

    def close(self, status: str) -> None:
        """It no longer trains (``status``): keep its dev F1, steps and curve, let its optimizer (and, unless it was
        trained to its end, its model) go."""
        state = self.training.run.state
        dev = float(self.result.metrics.get("dev", {}).get("f1", 0.0)) if self.result is not None else state.best_f1
        self.final = (max(0.0, dev), state.step, [(h["step"], h["dev_f1"]) for h in state.history])
        if status == "stopped":
            self.stopped_at = state.step
        self.status, self.training, self.steps = status, None, None

    def record(self) -> SearchPoint:
        """What nerkit.json keeps of it."""
        res = self.result
        test_f1 = res.metrics["test"]["f1"] if res is not None and "test" in res.metrics else None
        dev, steps, curve = self.final
        return SearchPoint(self.lr_x, self.epochs_x, self.cfg.lr, self.cfg.epochs, dev, round(self.watch(), 1),
                           test_f1, steps, self.planned, self.stopped_at, tuple(tuple(c) for c in curve))


def _advance(point: _Point, until: Callable[[Any], bool], threads: int, tick: Callable[[], None],
             cancel: threading.Event, log: Callable[[str], None]) -> None:
    """Train ``point`` with ``threads`` torch threads until ``until(progress)`` or its end, where its weights are
    scored (``Training.finish``)."""
    import torch

    torch.set_num_threads(threads)  # in this thread: each worker's OpenMP setting is its own
    with point.watch:
        try:
            for p in point.steps:
                tick()
                if cancel.is_set():
                    return
                # Not paused at its last step (plan end, early stopping): ended now, it scores here and its core is
                # free for the next stage; an extension (dev F1 still climbing) pauses at its first step.
                if until(p) and not (p.stopped or p.step >= point.training.run.total_steps):
                    return
            point.result = point.training.finish(point.watch())
        except TrainingDiverged as exc:  # a point too hot for this data: the others still count
            log(f"search {point.label}: {exc}")
            point.close("diverged")
            return
    point.close("done")


def cores_for(cfg: TrainConfig) -> tuple[int, bool]:
    """The cores the search may use (OMP_NUM_THREADS, or those this process may run on) and whether its points train
    side by side, one per core: not on a GPU (its kernels queue on one device anyway), nor with dropout, whose random
    draws come from torch's one global generator, which trainings in threads would share (the kept point would then
    vary from run to run)."""
    import torch

    env = os.environ.get("OMP_NUM_THREADS", "")
    cores = max(1, int(env) if env.isdigit() else available_cores())
    dropout = any(p is None or p > 0 for p in (cfg.hidden_dropout, cfg.attention_dropout))
    return cores, not (torch.cuda.is_available() or dropout)


def race_cores(cfg: TrainConfig, data: Datasets) -> tuple[int, bool]:
    """``cores_for`` the points as they train on ``data``: a nested model's span head trains with dropout
    (``TrainConfig.span_dropout``), so its points take turns."""
    return cores_for(with_span_dropout(cfg, trains_span_head(cfg, choose_layers(cfg.nested, data.train))))


class _Race:
    """The points and the workers that advance them, a rung at a time; one progress bar for all."""

    def __init__(self, cores: int, side_by_side: bool, progress: bool) -> None:
        from tqdm.auto import tqdm

        self.points: list[_Point] = []
        self.cores, self.side_by_side, self.cancel, self.lock = cores, side_by_side, threading.Event(), threading.Lock()
        self.bar = tqdm(total=0, desc="search", unit="step", disable=not progress or bars_disabled(),
                        dynamic_ncols=True)
        self.say = (lambda m: self.bar.write(m, file=sys.stderr)) if progress else (lambda _m: None)

    def tick(self) -> None:
        with self.lock:
            self.bar.update(1)

    def add(self, point: _Point) -> None:
        self.points.append(point)
        self.bar.total += point.planned

    def running(self) -> list[_Point]:
        """The points still training, the longest plan first (started first, they end about together)."""
        return sorted((p for p in self.points if p.status == "running"), key=lambda p: -p.planned)

    def to(self, fraction: float) -> None:
        """Every running point to its first evaluation at or past ``fraction`` of its plan."""
        self._stage({p: (lambda q, end=fraction * p.planned: q.dev is not None and q.step >= end) for p in self.running()})

    def to_the_end(self) -> None:
        """Every running point to its end: side by side in rounds of ``CHUNK`` of the shortest plan in steps, so that
        when one ends the others get its cores from the next round on (at a step fixed by the data, not by timing)."""
        while todo := self.running():
            if len(todo) == 1 or not self.side_by_side:
                self._stage({p: (lambda q: False) for p in todo})
                continue
            chunk = max(1, math.ceil(CHUNK * min(p.planned for p in todo)))
            self._stage({p: (lambda q, end=p.training.run.state.step + chunk: q.step >= end) for p in todo})

    def _stage(self, until: dict[_Point, Callable[[Any], bool]]) -> None:
        """Advance each point until its test holds: side by side as many as there are cores, each with an equal share
        of them. A point keeps one thread count through a stage (changed within one, at whatever step a neighbour
        finished, bf16 sums would make the run vary); between stages it may change, at steps the data fixes."""
        todo = list(until)
        if not todo:
            return
        workers = min(len(todo), self.cores) if self.side_by_side else 1
        threads = max(1, self.cores // workers)
        if workers == 1:
            for p in todo:
                _advance(p, until[p], threads, self.tick, self.cancel, self.say)
        else:
            with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nerkit-search") as pool:
                futures = [pool.submit(_advance, p, until[p], threads, self.tick, self.cancel, self.say) for p in todo]
                try:
                    for f in futures:
                        f.result()
                except BaseException:  # Ctrl-C or a failed point: the others stop at their next step, then it is raised
                    self.cancel.set()
                    raise
        total = sum(p.training.run.total_steps if p.training is not None else p.final[1] for p in self.points)
        self.bar.total = total  # stopped points' steps out, extensions (trained on past a plan) in

    def rung(self, fraction: float) -> None:
        """Stop the points behind at this rung (``survivors``); those trained to their end still count."""
        race = [p for p in self.points if p.status in ("running", "done")]
        last = fraction >= RUNGS[-1]
        keep = survivors([p.best for p in race], 0.0 if last else MARGIN, last)
        for p, go_on in zip(race, keep):
            if not go_on and p.status == "running":
                p.close("stopped")
        best = max((p.best for p in race), default=0.0)
        self.say(f"search at {fraction:.0%} of each plan: " + "; ".join(
            f"{p.label} dev F1 {p.best * 100:.2f}" + (f" (stopped at step {p.stopped_at}: {(best - p.best) * 100:.2f} "
                                                      "behind)" if p.status == "stopped" else "") for p in race))


def search(train, dev=None, test=None, output=None, config: TrainConfig | None = None, scheme: str | None = None,
           lr_x: Sequence[float] = LR_X, epochs_x: Sequence[float] = EPOCHS_X,
           annotators: Sequence[str] | None = None, budget: dict | None = None) -> SearchResult:
    """Start a training at each learning-rate x epochs multiple of the budget (``budget``: already derived for
    ``train``), stop those behind on dev at each of ``RUNGS``, keep the dev-best of those trained to their end; save
    it to ``output``. The data is read once (``train`` may be the ``Datasets`` already read, holding dev and test)
    and every point trains on it."""
    import torch

    if dev is None and not (isinstance(train, Datasets) and train.dev):
        raise NerkitError("--search chooses the settings on the dev set: give --dev")
    cfg = (config or TrainConfig()).resolved()
    if cfg.resume:
        raise NerkitError("--search trains several models and keeps one; it cannot --resume")
    if _processes() > 1:  # untried with torchrun: each process would run its own loop of four trainings
        raise NerkitError("--search runs in one process: start it without torchrun (or train once with --no-search)")
    if output is not None:
        check_output(output)  # before the first of several trainings
    t0, threads = time.time(), torch.get_num_threads()
    data = load_datasets(train, dev, test, scheme, annotators)
    base = budget or budget_for(data, config=cfg)
    race = _Race(*race_cores(cfg, data), cfg.progress)
    try:
        for b in epochs_x:
            for a in lr_x:
                talk = not race.points  # the first's lines above the bar, not on it; the others print nothing
                with race.bar.external_write_mode(file=sys.stderr) if talk else contextlib.nullcontext():
                    race.add(_start_point(data, cfg, base, a, b, annotators, race.say, talk=talk))
        race.say(f"search: {len(race.points)} trainings, {min(race.cores, len(race.points)) if race.side_by_side else 1} "
                 f"at a time; those behind on dev stop at {' and '.join(f'{r:.0%}' for r in RUNGS)} of their plan")
        for fraction in RUNGS:
            race.to(fraction)
            race.rung(fraction)
        race.to_the_end()
    finally:
        race.bar.close()
        torch.set_num_threads(threads)
    return _keep(race.points, output, round(time.time() - t0, 1), race.cores if race.side_by_side else 1)


def _start_point(data: Datasets, cfg: TrainConfig, base: dict, a: float, b: float,
                 annotators: Sequence[str] | None, say: Callable[[str], None], talk: bool = False) -> _Point:
    """One point set up (seeded as a training of its own would be), its loop not started. ``talk``: the first
    point prints what one training says of the data and its budget (a nested model and why, the inner gaps left
    out, transfer, sparse windows; the plan the other points are multiples of), the others train silently."""
    epochs = max(1.0, round(base["epochs"] * b, 2))
    patience = _patience(base, epochs)  # None: the user's (cfg's), or derived for the point as for one training
    point_cfg = dataclasses.replace(cfg, lr=base["lr"] * a, epochs=epochs,
                                    early_stopping=cfg.early_stopping if patience is None else patience)
    # Said once, not four times; its dev lines are named by the point. The point's learning rate, epochs and
    # patience are the rule's (times the point's multiples) where the rule chose them: derived, not the user's, so
    # the point trains on past its plan while dev F1 climbs as one training would (it never did before session 29).
    derived = [k for k in ("learning rate", "epochs", "early stopping") if k in base.get("chosen", ())]
    training = start_training(data, point_cfg, annotators=annotators, talk=talk, derived=derived)
    watch = _Stopwatch()
    training.run.clock = watch
    label = f"lr x{a:g}, epochs x{b:g}"
    steps = training.steps(lambda m: say(f"search {label}: {m}"))
    return _Point(a, b, point_cfg, training, steps, training.run.total_steps, watch)


def _patience(base: dict, epochs: float) -> int | None:
    """Early stopping of a point trained for ``epochs``: the evaluations that span as many epochs as the derived
    plan's patience does (None: the user chose it, or the point is the plan itself). Derived for its own length, an
    x2-epochs point would wait twice as many epochs without a dev gain as one training does (its evaluations are
    twice as far apart). In the nine measured cells its best had always come before the shorter wait ended: the same
    point kept, the same test F1, 8-20 % fewer optimizer steps in the four cells it changed (docs/domains.md)."""
    if "early stopping" not in base.get("chosen", ()) or epochs == base["epochs"]:
        return None
    chosen = "evaluation points" in base["chosen"]
    own = budget_rule.plan_budget(base["sentences"], base["tokens"], batch_tokens=base["batch_tokens"], epochs=epochs,
                                  lr=base["lr"], evals_per_epoch=None if chosen else base["evals_per_epoch"])
    span = base["early_stopping"] / base["evals_per_epoch"]  # epochs one training waits for a dev gain
    return max(2, math.ceil(span * own.evals_per_epoch - 1e-9))


def _keep(points: list[_Point], output, seconds: float, workers: int) -> SearchResult:
    """The dev-best of the points trained to their end (ties to the earlier, cheaper point), its record, saved."""
    done = [p for p in points if p.status == "done"]
    if not done and any(p.status == "stopped" for p in points):
        raise NerkitError("the search's trainings that led on dev diverged (the loss went infinite or NaN) after the "
                          "others were stopped behind them; nothing was saved. Train once with --no-search")
    if not done:
        raise NerkitError("every training of the search diverged (the loss went infinite or NaN); nothing was "
                          "saved. Train with a lower --lr and --no-search")
    kept = max(done, key=lambda p: p.best)  # max keeps the first of ties
    records = {id(p): p.record() for p in points if p.status != "diverged"}
    point, res = records[id(kept)], kept.result
    res.meta.extra["search"] = {
        "points": [dataclasses.asdict(r) for r in records.values()], "kept": dataclasses.asdict(point),
        "chosen_on": "dev", "rungs": list(RUNGS), "margin": MARGIN, "workers": workers, "seconds": seconds,
        "stopped": [{"lr_x": r.lr_x, "epochs_x": r.epochs_x, "step": r.stopped_at} for r in records.values()
                    if r.stopped_at is not None]}
    res.meta.total_seconds = seconds
    if output is not None and res.main:
        res.output = save_or_rescue(res.model.to("cpu"), res.tokenizer, res.meta, output)
    return SearchResult(list(records.values()), point, res)
