"""The training budget derived from the data's size: batch size in tokens, epochs, learning rate, warm-up,
evaluation points and early stopping, so that one command with no options fits 100 sentences and 100,000.

The defaults were tuned on CoNLL-2003 (252,000 subword tokens of training data: 2,048-token batches, 2 epochs,
learning rate 3e-4). Smaller data keeps the same recipe but takes smaller batches (more optimizer steps per
epoch), a learning rate scaled with the square root of the batch size, and more epochs, growing with how much smaller
the data is to the power 0.65; evaluation points stay about ten whatever the length, so early stopping reacts
after about a third of the run. The power was chosen on dev sets (bench/domains.py's grid on six data sets at 100
sentences, learning rate x0.5/x1/x2 by epochs x0.5/x1/x2 around a square-root rule): twice the square-root rule's
epochs came closest to each set's best dev F1 (mean gap 0.6 points, against 1.9 for the square root itself and
0.9 for twice its learning rate), and 0.65 gives that factor 2 at 100 sentences while leaving large data alone.
Checked again with this rule at 100, 300 and 1,000 sentences (bench/results/domains_h100.md, 17 complete grids of
learning rate x1/x2/x4 by epochs x1/x2): no multiple of it does clearly better. Mean dev gap to each cell's best:
1.37 for the rule, 1.01-1.60 for the x2 variants (within one seed's noise), 5-6 for x4; on test none is closer
(0.97-1.03 against the rule's 0.94); twice the learning rate at full size lost dev F1 on three of five sets. Over three
training seeds (6 points, 9 cells at 100-300 sentences) the rule is the best of the grid as a rule on dev and test
(mean gaps 0.75 / 0.35, within 1.0 of the seed-averaged oracle in 7 of 9; only CoNLL-2003 wants twice the lr). What
is left is per data set, so on up to 1,000 sentences with a dev set `nerkit train` searches by default: it trains
this budget's learning rate and epochs at x1 and x2 and keeps the dev-best (nerkit.search). With the old fixed
defaults, 666 TSA-MD sentences got 16 optimizer steps and test F1 46.5, and 339 WNUT-17 sentences 14 steps and an
empty model (dev F1 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

REFERENCE_TOKENS = 252_000  # CoNLL-2003 train, subword tokens of the default model: where the defaults were tuned
REFERENCE_BATCH_TOKENS = 2048
REFERENCE_EPOCHS = 2.0
REFERENCE_LR = 3e-4
MIN_BATCH_TOKENS, MAX_BATCH_TOKENS = 256, 2048
MAX_EPOCHS = 60.0
EPOCHS_POWER = 0.65  # epochs grow as (reference size / data size) ** 0.65; chosen on dev sets, see above
TARGET_EVALS = 10  # evaluation points over a planned run
# Up to this size `nerkit train` searches by default (nerkit.search): measured at 100-1,000 sentences, the dev-best
# of four points was +0.9 test F1 over this rule on average over 17 cells, up to +3.2 (docs/domains.md).
SEARCH_SENTENCES = 1000
# Training goes on past the plan while dev F1 still climbs steeply: the best of the last two evaluations at least
# EXTEND_GAIN of its own value above every earlier one. tos-clauses ended its plan at 10.9 dev F1 after 1.3 (a
# climb of 88 %); CoNLL-2003 full ends at 93.40 after 90.49 (3.1 %: its tuned plan is kept, and its time). At 10 %
# a tos-clauses span model stopped at 54.3 after 50.0 (7.9 %, a rise of 4.3 points): 5 % goes on there.
# Two, not one: tos-clauses seed 44 climbed 48.0 -> 56.7 and then held (56.6) at its plan's end; reading the last
# evaluation alone stopped it there (test overlap F1 67.2), reading the last two trained on to dev 63.4 (71.5).
# Asked where every other recorded training asked it (the nine search cells, CoNLL-2003 full, genia-small, ADE and
# tos-clauses seeds 42/43: 20 decisions, bench/extension_replay.py) the two rules decide alike; the nine search
# cells run again with it followed the same curves to the same kept points (docs/domains.md).
EXTEND_GAIN = 0.05
EXTEND_STEPS = 0.5  # each extension: half the planned steps more, the learning rate restarting at half its peak
EXTEND_CAP = 2.0  # at most twice the planned steps more in all


@dataclass(frozen=True)
class Budget:
    """A training budget and the data size it was derived from (``reason`` says which values were chosen)."""

    sentences: int
    tokens: int
    batch_tokens: int
    epochs: float
    lr: float
    warmup: float
    evals_per_epoch: float  # below 1: evaluate every 1/evals_per_epoch epochs
    early_stopping: int
    chosen: tuple[str, ...] = ()  # the settings derived here (the others were given)

    def steps_per_epoch(self) -> int:
        """Estimated optimizer steps per epoch (batches are token budgets; windows fill ~95% of one)."""
        return max(1, math.ceil(self.tokens / (0.95 * self.batch_tokens)))

    def searches(self) -> bool:
        """Whether `nerkit train` tries x1/x2 of this budget's learning rate and epochs by default (given a dev set):
        small data whose learning rate and epochs were both derived (a user who chose them keeps them)."""
        return self.sentences <= SEARCH_SENTENCES and {"learning rate", "epochs"} <= set(self.chosen)

    def describe(self, max_steps: int | None = None) -> str:
        """One line for the log: the data's size and what it led to (and where ``max_steps`` stops it: the budget
        is derived whatever --max-steps says, so its "~N steps" alone would promise more)."""
        steps = self.steps_per_epoch() * self.epochs
        every = (f"{self.evals_per_epoch:g} evaluations per epoch" if self.evals_per_epoch >= 1
                 else f"evaluation every {1 / self.evals_per_epoch:g} epochs")
        derived = f" (derived: {', '.join(self.chosen)})" if self.chosen else " (all given)"
        return (f"{self.sentences:,} sentences, {self.tokens:,} tokens: {self.epochs:g} epochs of "
                f"{self.batch_tokens}-token batches, ~{steps:,.0f} steps, learning rate {self.lr:.2g}, "
                f"{every}, early stopping after {self.early_stopping} without gain{derived}"
                + (f"; --max-steps {max_steps}: training stops there" if max_steps is not None else ""))


def _pow2(x: float) -> int:
    return 2 ** round(math.log2(max(x, 1.0)))


def plan_budget(sentences: int, tokens: int, *, batch_tokens: int | None = None, epochs: float | None = None,
                lr: float | None = None, warmup: float | None = None, evals_per_epoch: float | None = None,
                early_stopping: int | None = None) -> Budget:
    """The budget for training data of ``sentences`` sentences and ``tokens`` subword tokens; given values are kept."""
    chosen = []
    scale = REFERENCE_TOKENS / max(tokens, 1)
    if batch_tokens is None:
        # About 120 batches per epoch at the reference size; small data gets small batches, so more updates.
        batch_tokens = min(MAX_BATCH_TOKENS, max(MIN_BATCH_TOKENS, _pow2(tokens / 120)))
        chosen.append("batch tokens")
    if lr is None:
        lr = REFERENCE_LR * math.sqrt(batch_tokens / REFERENCE_BATCH_TOKENS)
        chosen.append("learning rate")
    if epochs is None:
        epochs = min(MAX_EPOCHS, max(REFERENCE_EPOCHS, round(REFERENCE_EPOCHS * scale ** EPOCHS_POWER)))
        chosen.append("epochs")
    if evals_per_epoch is None:
        evals_per_epoch = 1.0 if epochs <= TARGET_EVALS else 1.0 / math.ceil(epochs / TARGET_EVALS)
        chosen.append("evaluation points")
    if early_stopping is None:
        n_evals = epochs * evals_per_epoch
        early_stopping = max(2, math.ceil(n_evals / 3))
        chosen.append("early stopping")
    if warmup is None:
        warmup = 0.1
    return Budget(sentences, tokens, int(batch_tokens), float(epochs), float(lr), float(warmup),
                  float(evals_per_epoch), int(early_stopping), tuple(chosen))


def climb(history: Sequence[Mapping[str, float]]) -> tuple[float, float]:
    """(best dev F1 before the last two evaluations, best of the last two) for two or more evaluations; with two
    only, the first and the last."""
    recent = 2 if len(history) >= 3 else 1
    return max(h["dev_f1"] for h in history[:-recent]), max(h["dev_f1"] for h in history[-recent:])


def extending(history: Sequence[Mapping[str, float]], more: int, peak: float) -> str:
    """The log line of an extension of ``more`` steps, with the climb ``extension`` read: "dev F1 still climbing (best
    of the last two evaluations 56.75, 18.23 before): 294 more steps, the learning rate restarting at 0.5x"."""
    before, recent = climb(history)
    last = "the last two evaluations" if len(history) >= 3 else "the last evaluation"
    return (f"dev F1 still climbing (best of {last} {recent * 100:.2f}, {before * 100:.2f} before): {more} more "
            f"steps, the learning rate restarting at {peak:g}x")


def extension(history: Sequence[Mapping[str, float]], planned: int, steps: int) -> int:
    """Optimizer steps to train on after the plan's ``planned`` (``steps`` done so far), given the dev evaluations:
    more while the best of the last two is the best by a wide margin (dev F1 still climbing, or levelling off
    just after a steep climb), within the cap; else 0."""
    if len(history) < 2:
        return 0
    before, last = climb(history)
    if not last > 0 or last - before < EXTEND_GAIN * last:
        return 0
    return extension_size(planned, steps)


def extension_size(planned: int, steps: int) -> int:
    """The steps of an extension after ``steps`` of a ``planned`` plan, where the rule extends: half the plan, within
    the cap (0 once it is reached)."""
    room = int(planned * (1 + EXTEND_CAP)) - steps
    return max(0, min(room, math.ceil(planned * EXTEND_STEPS)))
