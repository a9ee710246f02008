"""The training loop, apart from what sets it up (``train``): one epoch's batches, one optimizer step, and
``train_while_improving``, a generator that trains until dev F1 stops improving and yields after every step.

As spaCy keeps ``training/loop.py`` apart from initialization: saving, checkpoints and logging stay with the caller
(``train.fit``), so the loop can be driven and tested on its own.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from nerkit import align
from nerkit.errors import NerkitError
from nerkit.spans import SPAN_ATTR


def epoch_batches(lengths: Sequence[int], batch_tokens: int, rng: np.random.Generator | None,
                  processes: int = 1) -> list[list[int]]:
    """One epoch's global batches, drawn from ``rng``: the same on every process. With N processes a batch
    smaller than N windows (the packer's last one) is merged into its neighbour, so every process has work."""
    batches = align.length_grouped_batches(lengths, batch_tokens, rng)
    if processes > 1:
        if len(lengths) < processes:
            raise NerkitError(f"{len(lengths)} training windows cannot be shared by {processes} processes")
        i = 0
        while i < len(batches):
            if len(batches[i]) < processes:
                j = i - 1 if i > 0 else i + 1
                merged = sorted(batches[min(i, j)] + batches[max(i, j)], key=lambda k: -lengths[k])
                batches[min(i, j):max(i, j) + 1] = [merged]
                i = max(0, min(i, j))
                continue
            i += 1
    return batches


def planned_steps(lengths: Sequence[int], batch_tokens: int, epochs: float, max_steps: int | None,
                  processes: int = 1) -> tuple[int, int]:
    """(steps of one epoch over the whole data, the optimizer steps the budget plans: ``max_steps``, else its epochs
    of length-grouped batches); `nerkit train` and `nerkit distill` plan alike."""
    full_epoch = len(epoch_batches(lengths, batch_tokens, np.random.default_rng(0), processes))
    return full_epoch, max_steps or max(1, math.ceil(full_epoch * epochs))


# Sparse data: when most training windows hold no entity (tos-clauses: 82 % of its paragraphs have no clause), each
# epoch draws as many of those as there are windows with entities, a new draw each epoch, so the same steps show the
# model the rare entities about 2.5x as often; the planned steps stay those of the whole data.
EMPTY_SHARE = 0.5  # downsample when more than this share of the windows hold no entity
EMPTY_PER_ENTITY_WINDOW = 1.0


def epoch_subset(has_entity: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """The windows of one epoch: all with an entity and a fresh random draw of the others when those are most of
    the data (``EMPTY_SHARE``); None (every window) otherwise."""
    empty = np.flatnonzero(~has_entity)
    full = np.flatnonzero(has_entity)
    if not len(full) or len(empty) <= EMPTY_SHARE * len(has_entity):
        return None
    keep = rng.choice(empty, size=min(len(empty), int(round(EMPTY_PER_ENTITY_WINDOW * len(full)))), replace=False)
    return np.sort(np.concatenate([full, keep]))


def rank_share(batch: Sequence[int], rank: int, processes: int) -> list[int]:
    """The windows of a global batch that process ``rank`` trains on (strided: the batch is sorted by length,
    so every share pads to about the same width)."""
    return list(batch[rank::processes])


def add_span_head(model, types: int, dim: int, prior: float) -> None:
    """Give ``model`` a span head: the biaffine weight (types x dim+1 x dim+1) over the classifier's span-feature
    columns (``spans``), its bias started at the log-odds of ``prior`` (the share of scored pairs that are
    entities: a start at 0.5 spent the first steps unlearning thousands of negative pairs per sentence)."""
    import torch

    weight = torch.empty(types, dim + 1, dim + 1)
    torch.nn.init.xavier_uniform_(weight)
    weight.mul_(0.1)
    weight[:, dim, dim] = float(np.log(prior / (1 - prior)))
    head = torch.nn.Module()
    head.weight = torch.nn.Parameter(weight)
    setattr(model, SPAN_ATTR, head)


def span_loss(feats, windows: Sequence[align.Feature], weight):
    """Binary cross-entropy of every (first word, last word) pair of each sentence and every type against the gold
    spans, summed, per target word: (batch x tokens x 2 dim [+ types]) span-feature columns in (the last ``types``
    ones, where present, the words' votes, averaged over each span: ``spans`` module)."""
    import torch

    dim = weight.shape[1] - 1
    pooled = feats.shape[-1] - 2 * dim
    if pooled not in (0, weight.shape[0]):
        raise ValueError(f"{feats.shape[-1]} span-feature columns for a head of width {dim} and {weight.shape[0]} types")
    n = max(len(f.word_positions) for f in windows)
    idx = torch.zeros(len(windows), n, dtype=torch.long)
    sent = torch.full((len(windows), n), -1, dtype=torch.long)
    target = torch.zeros(len(windows), n, n, weight.shape[0])
    unsure = torch.zeros(len(windows), n, n, weight.shape[0], dtype=torch.bool)
    for b, f in enumerate(windows):
        k = len(f.word_positions)
        idx[b, :k] = torch.tensor(f.word_positions)
        sent[b, :k] = torch.tensor(f.sentence_ids)
        for a, e, c in f.spans:
            target[b, a, e - 1, c] = 1.0
        for a, e, c in f.unsure:
            unsure[b, a, e - 1, slice(None) if c < 0 else c] = True
    x = feats.float().gather(1, idx.to(feats.device)[..., None].expand(-1, -1, feats.shape[-1]))
    one = torch.ones(*x.shape[:2], 1, device=x.device)
    s = torch.cat([torch.nn.functional.gelu(x[..., :dim], approximate="tanh"), one], -1)
    e = torch.cat([torch.nn.functional.gelu(x[..., dim:2 * dim], approximate="tanh"), one], -1)
    logits = torch.einsum("bid,cde,bje->bijc", s, weight, e)
    if pooled:  # + the mean vote of the words i..j, from prefix sums (pairs across sentences are masked below)
        votes = torch.cat([torch.zeros_like(x[:, :1, 2 * dim:]), x[..., 2 * dim:].cumsum(1)], 1)
        inside = votes[:, None, 1:, :] - votes[:, :-1, None, :]  # (batch, first, last, types)
        width = (torch.arange(n, device=x.device)[None, :] - torch.arange(n, device=x.device)[:, None] + 1)
        logits = logits + inside / width.clamp(min=1)[None, :, :, None]
    sent = sent.to(x.device)
    mask = (sent[:, :, None] == sent[:, None, :]) & (sent[:, :, None] >= 0)
    mask &= torch.ones(n, n, dtype=torch.bool, device=x.device).triu()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target.to(x.device), reduction="none")
    return (bce * (mask[..., None] & ~unsure.to(x.device))).sum() / (sent >= 0).sum().clamp(min=1)


def make_train_step(model, opt, sched, accelerator, windows: align.TrainingWindows, pad_id: int, class_weights,
                    bf16: bool, inner_weight: float = 1.0, span_cols: int = 0
                    ) -> Callable[[list[int]], tuple[list[int], Any]]:
    """The function that trains one optimizer step on a global batch: this process's share forward and backward
    (gradients averaged over processes by DDP), clipping, optimizer and scheduler step. It returns (share, loss);
    a nested model's entity tags on layers below the first weigh ``inner_weight`` in its loss (they are sparse);
    with ``span_cols``, the head's last span_cols columns feed the span head (``span_loss``, added);
    ``update.finite()`` says whether every step so far had a finite gradient norm (False: training diverged)."""
    import torch

    device, n_proc, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights.to(device) if class_weights is not None else None,
                                        ignore_index=align.IGNORE)
    labelled = windows.labelled(None if class_weights is None else class_weights.numpy()) if n_proc > 1 else None
    finite = torch.ones((), dtype=torch.bool, device=device)  # no non-finite gradient norm so far
    span_weight = getattr(accelerator.unwrap_model(model), SPAN_ATTR).weight if span_cols else None

    def update(batch: list[int]) -> tuple[list[int], Any]:
        share = rank_share(batch, rank, n_proc)
        b = align.collate([windows.features[i] for i in share], pad_id)
        inputs = {k: torch.from_numpy(v).to(device) for k, v in b.items()}
        labels_t = inputs.pop("labels")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(**inputs).logits
        feats = None
        if span_cols:
            logits, feats = logits[..., :-span_cols], logits[..., -span_cols:]
        # A nested model scores every tag layer with the same classes: (batch, tokens, layers x classes) logits.
        classes = logits.shape[-1] // (labels_t.shape[-1] if labels_t.dim() == 3 else 1)
        if labels_t.dim() == 3 and inner_weight != 1.0:
            loss = _nested_loss(logits.float().reshape(-1, classes), labels_t, class_weights, inner_weight)
        else:
            loss = loss_fn(logits.float().reshape(-1, classes), labels_t.reshape(-1))
        if labels_t.dim() == 3:
            # Each tag layer is a tagging task of its own: the sum of their means, not one mean over all of them,
            # which gave the first layer 1/L of a flat model's gradient (tos-clauses, 3 layers: dev F1 4.6 after
            # 588 steps). Every layer labels the same tokens, so the pooled mean x L is that sum exactly.
            loss = loss * labels_t.shape[-1]
        if feats is not None:
            loss = loss + span_loss(feats, [windows.features[i] for i in share], span_weight)
        target = loss
        if n_proc > 1:
            # The step's loss is the mean over every labelled token of the global batch; DDP averages gradients
            # over processes, so each one weighs its own mean by its share of those tokens, times N.
            mine, total = float(labelled[share].sum()), float(labelled[batch].sum())
            target = loss * (mine * n_proc / total) if mine > 0 else logits.sum() * 0.0
        accelerator.backward(target)
        optimizer_step(model, opt, sched, finite)
        return share, loss

    update.finite = lambda: bool(finite)  # type: ignore[attr-defined]
    return update


def optimizer_step(model, opt, sched, finite) -> None:
    """After backward: clip the gradient norm to 1, record in ``finite`` whether it was finite, step the optimizer
    and the schedule, clear the gradients. Divergence shows as a non-finite norm (the same on every process, after
    DDP's averaging); kept on the device, no sync per step: callers read ``finite`` at their log and save points."""
    import torch

    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    finite.logical_and_(torch.isfinite(norm).to(finite.device))
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


class LinearSchedule:
    """The learning-rate factor of each step: linear warm-up, then linear decay to 0 at the planned end; ``extend``
    adds steps that restart at ``peak`` and decay to 0 again (training on while dev F1 still climbs). An object, not
    a closure, so a checkpoint of the scheduler keeps its extensions."""

    def __init__(self, warm: int, total: int):
        self.warm = warm
        self.segments: list[tuple[int, int, float]] = [(warm, total, 1.0)]  # (first step, end step, peak factor)

    def __call__(self, step: int) -> float:
        if step < self.warm:
            return (step + 1) / self.warm
        for start, end, peak in self.segments:
            if step < end:
                return max(0.0, peak * (end - step) / max(1, end - start))
        return 0.0

    def extend(self, steps: int, peak: float) -> int:
        """Add ``steps`` after the current end; returns the new end."""
        end = self.segments[-1][1]
        self.segments.append((end, end + steps, peak))
        return end + steps


def _nested_loss(logits, labels, class_weights, inner_weight: float):
    """Mean cross-entropy over every labelled tag of every layer, the entity tags (not O, id 0) of layers 1.. weighing
    ``inner_weight``: inner layers hold few entities among many O tags, which a plain mean lets the model ignore."""
    import torch

    flat = labels.reshape(-1)
    ce = torch.nn.functional.cross_entropy(logits, flat.clamp(min=0), reduction="none")
    weight = (flat != align.IGNORE).float()
    if class_weights is not None:
        weight = weight * class_weights.to(logits.device)[flat.clamp(min=0)]
    layer = torch.arange(labels.shape[-1], device=labels.device).expand_as(labels).reshape(-1)
    weight = torch.where((layer > 0) & (flat > 0), weight * inner_weight, weight)
    return (ce * weight).sum() / weight.sum().clamp(min=1e-9)


# ---------------------------------------------------------------- the loop


@dataclass
class LoopState:
    """Where the loop is and what it has seen: everything a resumed run needs besides weights and optimizer."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of the current epoch done
    epoch_rng: dict | None = None  # data-order RNG state when the current epoch's batches were drawn
    best_f1: float = -1.0
    best_step: int = 0
    bad: int = 0  # evaluations since the last dev F1 gain
    stopped: bool = False
    elapsed: float = 0.0  # training seconds before this process started (resumed runs)
    history: list[dict] = field(default_factory=list)
    best_dev: dict | None = None


@dataclass
class Progress:
    """One optimizer step of ``train_while_improving``."""

    step: int
    epoch: float  # epochs done, fractional
    loss: Any  # this process's loss (a tensor: ``float()`` it only when logging, it waits for the device)
    batch: list[int]  # the windows this process trained on
    checkpoint: bool  # an evaluation point (dev scored if there is dev data): a state worth saving
    dev: dict | None = None  # the dev report, at evaluation points
    is_best: bool = False
    stopped: bool = False  # early stopping: no dev F1 gain in ``patience`` evaluations


def eval_due(batch_index: int, n_batches: int, step: int, epoch: int, evals_per_epoch: float,
             every_steps: int | None = None) -> bool:
    """Whether the loop evaluates after this batch (0-based, of ``n_batches``) of epoch ``epoch`` (0-based): every
    ``every_steps`` optimizer steps if given; else ``evals_per_epoch`` times an epoch at evenly spaced batches, or
    below 1, at the end of every 1/evals_per_epoch-th epoch."""
    if every_steps:
        return step % every_steps == 0
    if evals_per_epoch >= 1:
        k = int(round(evals_per_epoch))
        return (batch_index + 1) in {max(1, round(n_batches * i / k)) for i in range(1, k + 1)}
    every = max(1, round(1 / evals_per_epoch))
    return batch_index + 1 == n_batches and (epoch + 1) % every == 0


def train_while_improving(state: LoopState, rng: np.random.Generator,
                          batches: Callable[[np.random.Generator], list[list[int]]],
                          update: Callable[[list[int]], tuple[list[int], Any]],
                          evaluate: Callable[[], dict] | None, total_steps: int,
                          due: Callable[[int, int, int, int], bool], patience: int | None,
                          clock: Callable[[], float] = time.time) -> Iterator[Progress]:
    """Train until ``total_steps`` or until dev F1 stops improving, yielding after every optimizer step.

    ``batches(rng)`` draws one epoch's global batches; ``update(batch)`` trains one step on this process's
    share and returns (share, loss); ``evaluate()`` scores dev (the same answer on every process); ``due(batch
    index, batches in epoch, step, epoch)`` says when to evaluate. ``state`` is updated in place (a checkpoint of it,
    taken at an evaluation point, resumes the run exactly). The caller saves and logs. ``clock`` times
    ``state.elapsed`` (a search gives each of its trainings one that stops while the training waits its turn).
    """
    t0 = clock() - state.elapsed
    while state.step < total_steps and not state.stopped:
        if state.batch == 0:
            state.epoch_rng = rng.bit_generator.state
        else:  # resumed mid-epoch: draw the same batches again, then skip the ones done
            rng.bit_generator.state = state.epoch_rng
        epoch = batches(rng)
        for bi in range(state.batch, len(epoch)):
            share, loss = update(epoch[bi])
            state.step += 1
            state.batch = bi + 1
            state.elapsed = clock() - t0
            p = Progress(state.step, round(state.epoch + (bi + 1) / len(epoch), 3), loss, share,
                         checkpoint=due(bi, len(epoch), state.step, state.epoch) or state.step >= total_steps)
            if p.checkpoint and evaluate is not None:
                p.dev = evaluate()
                f1 = p.dev["f1"]
                state.history.append({"step": state.step, "epoch": p.epoch, "dev_f1": f1,
                                      "elapsed_s": round(state.elapsed, 1)})
                if f1 > state.best_f1:
                    state.best_f1, state.best_step, state.bad, state.best_dev = f1, state.step, 0, p.dev
                    p.is_best = True
                else:
                    state.bad += 1
                    state.stopped = p.stopped = bool(patience and state.bad >= patience)
            yield p
            if state.stopped or state.step >= total_steps:
                return
        state.epoch += 1
        state.batch = 0
