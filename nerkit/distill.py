"""Distillation: a smaller, faster model (the student) from a trained nerkit model (the teacher).

The student is the teacher's network with fewer encoder layers, started from the teacher's own weights (embeddings,
the widened casing embedding, N of its layers, the classifier head: ``student_from_teacher``), and trained to give
the teacher's per-word tag distributions (``distill_loss``: temperature-scaled KL per tag layer, plus cross-entropy
on the gold tags where the text is labelled, and for a span-head teacher an MSE on the span-feature columns; and
each student layer's output matched to its teacher layer's, ``hidden_loss``) over
the teacher's training text and any unlabelled text (read as ``tag-corpus`` reads it). The teacher's logits are
computed per batch (nothing cached: memory stays that of two models and a batch). The loop, the budget rule, dev
scoring and the model directory are training's own (``loop``, ``budget``, ``train``, ``modeldir``), so the student
is an ordinary nerkit model directory: evaluate, export, serve, tag-corpus and the HF pipeline run it as any other.
"""
# size: the whole distillation path in one place, in sections: the teacher and the student's start, the data, the
# loss and the step, the run (loop, scores, nerkit.json); each a short function.
from __future__ import annotations

import math
import os
import platform
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nerkit import align
from nerkit._version import __version__
from nerkit.budget import extending, extension
from nerkit.data import check_labelled, tokenize
from nerkit.decode import WindowTagger
from nerkit.engines import TorchEngine, keep_freed_memory, load_engine, set_torch_threads, use_bf16
from nerkit.errors import NerkitError
from nerkit.evaluation import evaluate
from nerkit.formats import as_documents, fingerprint
from nerkit.formats.hf import HUB_PREFIX
from nerkit.iob import unlayered_labels
from nerkit.loop import (LoopState, epoch_batches, eval_due, optimizer_step, planned_steps, span_loss,
                         train_while_improving)
from nerkit.modeldir import ModelDir, ModelMeta, check_output, open_model_dir
from nerkit.spans import SPAN_ATTR, SPAN_FILE, SpanScorer, load_span_head, span_layout
from nerkit.train import (EXTEND_PEAK, SPAN_EPOCHS_X, TrainConfig, TrainResult, bars_disabled, build_features,
                          data_size, final_scoring, inner_first, load_tokenizer, make_optimizer, resolve_config,
                          save_or_rescue)
from nerkit.types import Document, Sentence

# Softened distributions carry the teacher's second choices (B-ORG beside B-LOC); 2.0 is the usual start for token
# tasks and, with alpha 0.5, to be confirmed by bench/distill.py.
DEFAULT_TEMPERATURE = 2.0
DEFAULT_ALPHA = 0.5
# Each student layer's output also learns its teacher layer's (MSE over the tokens, as TinyBERT's intermediate
# layers do): the tag distributions alone tell the lower layers little. CoNLL-2003, 3-layer student of the 6-layer
# default teacher (dev 93.40 / test 88.68), weight 0 / 1 / 4 / 10: dev F1 91.73 / 92.12 / 92.37 / 92.53, test
# 86.92 / 87.45 / 87.32 / 87.38 (chosen on dev).
DEFAULT_HIDDEN = 10.0
_LAYER_KEY = re.compile(r"\.layer\.(\d+)\.")  # an encoder layer's weights (BERT, RoBERTa, DistilBERT, DeBERTa, ...)


@dataclass
class DistillConfig:
    """Distillation settings; ``None`` means the teacher's (data) or derived from the data's size (budget)."""

    layers: int | None = None  # the student's encoder layers (None: ``default_layers``)
    train: Sequence[str] | None = None  # labelled files (None: the one the teacher's nerkit.json names)
    unlabelled: Sequence[str] = ()  # .txt/.jsonl/.parquet files, folders or globs (KL only)
    dev: str | None = None  # early stopping (None: the teacher's dev file)
    test: str | None = None  # final scores (None: the teacher's test file, where it is found)
    epochs: float | None = None
    max_steps: int | None = None
    lr: float | None = None
    batch_tokens: int | None = None
    early_stopping: int | None = None
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float = DEFAULT_ALPHA  # weight of the gold tags' cross-entropy (0: the teacher alone)
    hidden: float = DEFAULT_HIDDEN  # weight of each kept layer's output matching its teacher layer's (0: off)
    seed: int = 42
    bf16: str = "auto"
    scheme: str | None = None  # the tag scheme of CoNLL files (None: detected)
    text_column: str = "text"  # of unlabelled .jsonl/.parquet files
    progress: bool = True

    def check(self) -> None:
        """Refuse settings that cannot distil, before any work."""
        if not (isinstance(self.temperature, (int, float)) and 0 < self.temperature < math.inf):
            raise NerkitError(f"--temperature must be a positive number, got {self.temperature!r}")
        if not (isinstance(self.alpha, (int, float)) and 0 <= self.alpha < math.inf):
            raise NerkitError(f"--alpha must be 0 or a positive number, got {self.alpha!r}")
        if not (isinstance(self.hidden, (int, float)) and 0 <= self.hidden < math.inf):
            raise NerkitError(f"--hidden-weight must be 0 or a positive number, got {self.hidden!r}")
        if self.layers is not None and (isinstance(self.layers, bool) or not isinstance(self.layers, int)):
            raise NerkitError(f"--layers must be a whole number, got {self.layers!r}")


# ---------------------------------------------------------------- the teacher and the student's start


@dataclass
class Teacher:
    """A trained nerkit model opened for distillation: its directory, network (eval mode) and what its head holds."""

    dir: ModelDir
    model: Any
    tokenizer: Any
    base_labels: list[str]  # one tag layer's labels (IOB2)
    tag_layers: int
    span_cols: int  # span-feature columns after the tags (0: no span head)
    span_head: SpanScorer | None
    encoder_layers: int

    @property
    def name(self) -> str:
        """The directory's name (nerkit.json names folders, never locates them: absolute paths would leak)."""
        return self.dir.path.name


def open_teacher(path: str | os.PathLike) -> Teacher:
    """Open a model directory nerkit trained as a teacher; anything else is one NerkitError."""
    model_dir = open_model_dir(path)
    if model_dir.meta.nerkit_version is None:
        raise NerkitError(f"{path}: not a model nerkit trained (its nerkit.json names no nerkit_version); distil a "
                          "directory that `nerkit train` wrote")
    layout = span_layout(model_dir.labels)
    tags, span_dim, span_cols = layout.tags, layout.dim, layout.columns
    base, layers = unlayered_labels(tags)
    net = load_engine(model_dir, "torch", bf16="off").model
    n = getattr(net.config, "num_hidden_layers", None)
    if not isinstance(n, int) or not any(_LAYER_KEY.search(k) for k in net.state_dict()):
        raise NerkitError(f"{path}: a {net.config.model_type} network without numbered encoder layers cannot be "
                          "distilled")
    span = load_span_head(model_dir.path / SPAN_FILE) if span_dim else None
    return Teacher(model_dir, net.eval(), load_tokenizer(str(model_dir.path)), base, layers, span_cols, span, n)


def default_layers(teacher_layers: int) -> int:
    """The student's depth when --layers is not given: half the teacher's (3 of all-MiniLM-L6-v2's 6); a first
    choice, to be confirmed by bench/distill.py (teacher against 4, 3 and 2 layers on CoNLL-2003 and ADE)."""
    return max(1, teacher_layers // 2)


def kept_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """The teacher's encoder layers (0-based) the student's start from: evenly spaced, the last always kept (the
    copied classifier was trained on the last layer's output, so the student's head starts on features of the kind it
    reads; DistilBERT likewise took every other layer of its teacher). 6 -> 3: [1, 3, 5]; 6 -> 2: [2, 5]."""
    if teacher_layers < 2:
        raise NerkitError(f"the teacher has {teacher_layers} encoder layer: a student cannot have fewer")
    if not 1 <= student_layers < teacher_layers:
        raise NerkitError(f"--layers must be from 1 to {teacher_layers - 1} (the teacher has {teacher_layers} "
                          f"layers), got {student_layers}")
    return [math.floor((i + 1) * teacher_layers / student_layers + 0.5) - 1 for i in range(student_layers)]


def student_from_teacher(teacher_model, layers: int) -> tuple[Any, list[int]]:
    """A copy of ``teacher_model`` with ``layers`` encoder layers (``kept_layers``), every weight the teacher's
    (embeddings with the casing token types, the kept layers, pooler and classifier), and the layers kept."""
    import copy

    from transformers import AutoModelForTokenClassification

    config = copy.deepcopy(teacher_model.config)
    keep = kept_layers(config.num_hidden_layers, layers)
    config.num_hidden_layers = layers
    student = AutoModelForTokenClassification.from_config(config)
    source = teacher_model.state_dict()
    state = {}
    for name in student.state_dict():
        m = _LAYER_KEY.search(name)
        src = name if m is None else f"{name[:m.start()]}.layer.{keep[int(m.group(1))]}.{name[m.end():]}"
        if src not in source:
            raise NerkitError(f"the student's weight {name} has no counterpart {src} in the teacher")
        state[name] = source[src].detach().clone()
    student.load_state_dict(state)
    return student, keep


# ---------------------------------------------------------------- the data


@dataclass
class DistillData:
    """What the student learns from and is scored on, and how nerkit.json describes it."""

    labelled: list[Document]
    unlabelled: list[Document]
    dev: list[Document]
    test: list[Document]
    described: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the log: where each split came from


def recorded_file(teacher: Teacher, split: str) -> tuple[str | None, Path | str | None]:
    """The file the teacher's nerkit.json names for ``split`` ("train", "dev", "test"), and where it is: in the working
    directory or beside the teacher, with the recorded fingerprint (nerkit.json holds names, not locations). (None,
    None): none recorded; (name, None): recorded but not found."""
    entry = (teacher.dir.meta.data or {}).get(split) or {}
    name = entry.get("path")
    if not isinstance(name, str) or not name:
        return None, None
    if name.startswith(HUB_PREFIX):  # a Hugging Face dataset: read from the hub (or its cache) again
        return name, name
    for cand in (Path(name), teacher.dir.path / name, teacher.dir.path.parent / name):
        if cand.exists() and entry.get("sha256_16") in (None, fingerprint(cand)):
            return name, cand
    return name, None


def _source(teacher: Teacher, split: str, given, need: str) -> list:
    """The paths of a split: ``given``, else the teacher's file; one recorded but not found is an error naming
    ``need`` (the option to give it with), or no paths when ``need`` is empty."""
    if given:
        return list(given) if isinstance(given, (list, tuple)) else [given]
    name, path = recorded_file(teacher, split)
    if path is not None:
        return [path]
    if name is not None and need:
        raise NerkitError(f"the teacher was trained with {split} file {name} (nerkit.json records its name and "
                          f"fingerprint, not where it is), which is neither in the working directory nor beside "
                          f"{teacher.dir.path}: give it with {need}")
    return []


def read_unlabelled(inputs: Sequence[str | os.PathLike], text_column: str = "text"
                    ) -> tuple[list[Document], list[dict]]:
    """Texts of .txt/.jsonl/.parquet files, folders or globs (``tag-corpus``'s readers) as unlabelled documents, one
    per text; and per file its name, fingerprint and text count."""
    from nerkit.tagcorpus import find_inputs, plan_shards, read_shard

    files = find_inputs(inputs)
    docs, counts = [], {str(f): 0 for f in files}
    for shard in plan_shards(files):
        table = read_shard(shard, text_column)
        for row, text in zip(table["row"].to_pylist(), table["text"].to_pylist()):
            words, offsets = tokenize(text)
            if words:
                where = f"{shard.source}:{row + 1}"
                docs.append(Document(where, [Sentence(words, None, where, where, text, offsets)]))
                counts[shard.source] += 1
    return docs, [{"path": Path(f).name, "sha256_16": fingerprint(f), "texts": counts[str(f)]} for f in files]


def _describe(paths: Sequence, docs: Sequence[Document]) -> dict:
    d: dict[str, Any] = {"documents": len(docs), "sentences": sum(len(x.sentences) for x in docs)}
    files = [{"path": Path(p).name, "sha256_16": fingerprint(p)} for p in paths if isinstance(p, (str, os.PathLike))]
    if len(files) == 1:
        d.update(files[0])
    elif files:
        d["files"] = files
    return d


def load_data(teacher: Teacher, cfg: DistillConfig) -> DistillData:
    """The labelled text (--train, else the teacher's), unlabelled text, dev (early stopping) and test, read once."""
    need_train = "" if cfg.unlabelled else "--train PATH (or distil on unlabelled text alone with --unlabelled FILES)"
    train = _source(teacher, "train", cfg.train, need_train)
    if not train and not cfg.unlabelled:
        raise NerkitError(f"{teacher.dir.path}: its nerkit.json names no training file: give the text to distil on "
                          "with --train PATH and/or --unlabelled FILES")
    dev = _source(teacher, "dev", cfg.dev, "--dev PATH")
    test = _source(teacher, "test", cfg.test, "")
    labelled = [d for p in train for d in as_documents(p, cfg.scheme)]
    if teacher.tag_layers > 1 and (teacher.dir.meta.train_args or {}).get("nested_order") == "inner":
        labelled = inner_first(labelled)  # a teacher trained with --nested-order inner: gold likewise
    dev_docs = as_documents(dev[0], cfg.scheme) if dev else []
    test_docs = as_documents(test[0], cfg.scheme) if test else []
    check_labelled(dev_docs, "dev")
    check_labelled(test_docs, "test")
    unlabelled, files = read_unlabelled(cfg.unlabelled, cfg.text_column) if cfg.unlabelled else ([], [])
    if not labelled and not unlabelled:
        raise NerkitError("no text to distil on: the training and unlabelled files hold no words")
    described = {"train": _describe(train, labelled)} if train else {}
    if files:
        described["unlabelled"] = {"texts": len(unlabelled), "files": files}
    for k, paths, docs in (("dev", dev, dev_docs), ("test", test, test_docs)):
        if docs:
            described[k] = _describe(paths, docs)
    notes = [f"{k}: {', '.join(Path(p).name for p in paths) or 'none'}" for k, paths in
             (("train", train), ("dev", dev), ("test", test))]
    if not train:
        notes.append(f"the teacher's training file {recorded_file(teacher, 'train')[0]} was not found: the "
                     "unlabelled text alone")
    return DistillData(labelled, unlabelled, dev_docs, test_docs, described, notes)


# ---------------------------------------------------------------- the loss and the step


def distill_loss(student, teacher, labels, where, layers: int, span_cols: int, temperature: float, alpha: float):
    """The student's loss on one batch: (batch x tokens x columns) logits of both networks, gold ``labels`` (batch x
    tokens [x layers], -100 where unknown) and ``where`` (batch x tokens: the target words' first pieces, the places
    inference reads). KL(teacher || student) of the tag distributions at ``temperature`` (x T^2, so its gradients keep
    their size whatever T), per tag layer, summed over layers as training sums their cross-entropies, averaged over
    words; + ``alpha`` x the gold cross-entropy where labelled; + the MSE of the span-feature columns (span head)."""
    import torch.nn.functional as F

    s, t = student[where].float(), teacher[where].float()
    n_tags = s.shape[-1] - span_cols
    classes = n_tags // layers
    st, tt = s[:, :n_tags].reshape(-1, layers, classes), t[:, :n_tags].reshape(-1, layers, classes)
    kl = F.kl_div(F.log_softmax(st / temperature, -1), F.log_softmax(tt / temperature, -1), reduction="none",
                  log_target=True).sum(-1)
    loss = kl.sum(-1).mean() * temperature ** 2
    gold = labels[where].reshape(-1, layers)
    known = gold != align.IGNORE
    if alpha > 0 and bool(known.any()):
        ce = F.cross_entropy(st.reshape(-1, classes), gold.reshape(-1).clamp(min=0), reduction="none")
        loss = loss + alpha * (ce * known.reshape(-1)).sum() / known.sum() * layers
    if span_cols:
        loss = loss + F.mse_loss(s[:, n_tags:], t[:, n_tags:])
    return loss


def hidden_loss(student_states, teacher_states, kept: Sequence[int], mask):
    """Mean over the student's layers of the MSE between its output and that of the teacher layer it started from
    (``kept``), over the real tokens (``mask``: batch x tokens); the states as transformers gives them (embeddings,
    then each layer's output)."""
    m = mask.unsqueeze(-1).float()
    n = m.sum().clamp(min=1) * student_states[-1].shape[-1]
    total = 0.0
    for i, k in enumerate(kept):
        diff = (student_states[i + 1].float() - teacher_states[k + 1].float()) * m
        total = total + (diff * diff).sum() / n
    return total / len(kept)


def make_distill_step(student, teacher: Teacher, opt, sched, windows: align.TrainingWindows, cfg: DistillConfig,
                      bf16: bool, span_weight=None, kept: Sequence[int] = ()):
    """The function that trains the student one optimizer step on a batch of windows (the teacher's logits computed
    on the same inputs, without gradients); ``span_weight``, the teacher's frozen biaffine, adds the gold spans'
    loss (x alpha) on labelled windows; with ``kept`` (the teacher layers the student's started from) and
    ``cfg.hidden``, each layer's output learns its teacher layer's (``hidden_loss``). ``update.finite()`` says
    whether every gradient norm so far was finite."""
    import torch

    device = next(student.parameters()).device
    pad = teacher.tokenizer.pad_token_id
    finite = torch.ones((), dtype=torch.bool, device=device)
    labelled = [any(f.labels[p] != align.IGNORE for p in f.word_positions) for f in windows.features]

    def update(batch: list[int]):
        feats = [windows.features[i] for i in batch]
        b = align.collate(feats, pad)
        where = np.zeros(b["input_ids"].shape, dtype=bool)
        for row, f in enumerate(feats):
            where[row, f.word_positions] = True
        inputs = {k: torch.from_numpy(v).to(device) for k, v in b.items()}
        labels = inputs.pop("labels")
        states = bool(kept) and cfg.hidden > 0
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            with torch.no_grad():
                t_out = teacher.model(**inputs, output_hidden_states=states)
            s_out = student(**inputs, output_hidden_states=states)
        s_logits = s_out.logits
        loss = distill_loss(s_logits, t_out.logits, labels, torch.from_numpy(where).to(device), teacher.tag_layers,
                            teacher.span_cols, cfg.temperature, cfg.alpha)
        if states:
            loss = loss + cfg.hidden * hidden_loss(s_out.hidden_states, t_out.hidden_states, kept,
                                                   inputs["attention_mask"])
        rows = [r for r, i in enumerate(batch) if labelled[i]]
        if span_weight is not None and cfg.alpha > 0 and rows:
            spans = s_logits[rows][..., -teacher.span_cols:]
            loss = loss + cfg.alpha * span_loss(spans, [feats[r] for r in rows], span_weight)
        loss.backward()
        optimizer_step(student, opt, sched, finite)
        return batch, loss

    update.finite = lambda: bool(finite)  # type: ignore[attr-defined]
    return update


# ---------------------------------------------------------------- the run


@dataclass
class _Plan:
    """The student, its training windows and budget: ``distill``'s first half."""

    student: Any
    kept: list[int]
    windows: align.TrainingWindows
    tcfg: TrainConfig
    budget: Any
    planned: int  # the optimizer steps the budget plans (``planned_steps``), counted once


# A distillation's derived epochs are training's rule x2.5: ADE-Corpus-V2's 3-layer student of its nested teacher
# (dev 80.66 / test 77.72) reached dev 75.59 / test 72.28 in training's 3 epochs and dev 77.83 / test 75.58 in 8,
# its dev F1 still climbing at both ends. A span-head teacher's student takes the span head's x2 on top, as its
# teacher did (train.SPAN_EPOCHS_X): ADE's student of the dropout-trained teacher (dev 82.01 / test 79.70), 7.5 ->
# 15 epochs: dev 78.83 -> 79.70, test 77.29 -> 78.40, distillation 298 -> 567 s (session 26, bench/distill.py).
DISTILL_EPOCHS_X = 2.5


def distill_epochs_x(teacher: Teacher) -> float:
    """How many times training's derived epochs a student of ``teacher`` distils for."""
    return DISTILL_EPOCHS_X * (SPAN_EPOCHS_X if teacher.span_cols else 1.0)


def _plan(teacher: Teacher, cfg: DistillConfig, data: DistillData, layers: int) -> _Plan:
    """The student (``student_from_teacher``), the windows of every text (as the teacher was trained: its context,
    its labels) and the budget derived from their size (training's rule; --epochs etc. override it)."""
    args = teacher.dir.meta.train_args or {}
    win = teacher.dir.meta.windows or {}
    context = args.get("context", 0 if win.get("sentence_level") else win.get("max_tokens", 128))
    tcfg = TrainConfig(model=teacher.name, epochs=cfg.epochs, max_steps=cfg.max_steps, lr=cfg.lr,
                       batch_tokens=cfg.batch_tokens, seed=cfg.seed, context=context, bf16=cfg.bf16,
                       early_stopping=cfg.early_stopping, label_all_subwords=bool(args.get("label_all_subwords")),
                       head_lr_scale=1.0,  # the head is the teacher's, not new: no faster learning rate for it
                       # span targets as the teacher had them (models before this setting: negative)
                       unannotated_inner=args.get("unannotated_inner", "negative"), progress=cfg.progress)
    tcfg.check()
    student, kept = student_from_teacher(teacher.model, layers)
    docs = data.labelled + data.unlabelled
    label2id = {t: i for i, t in enumerate(teacher.base_labels)}
    encoded = align.encode_documents(docs, teacher.tokenizer, label2id, teacher.tag_layers)
    max_len = min(getattr(student.config, "max_position_embeddings", 512), 512)
    windows = build_features(encoded, teacher.tokenizer, tcfg, teacher.base_labels,
                             bool(teacher.dir.meta.case_signal), max_len, span=bool(teacher.span_cols))
    size = data_size(docs, windows)
    # a student learns more slowly than a model trains, and a span head's features more slowly still
    tcfg, budget = resolve_config(tcfg, size, distill_epochs_x(teacher))
    return _Plan(student, kept, windows, tcfg, budget,
                 planned_steps(windows.lengths, tcfg.batch_tokens, tcfg.epochs, tcfg.max_steps)[1])


def _dev_scorer(teacher: Teacher, student, dev: Sequence[Document], device, bf16: str):
    """The dev F1 report of the student now, at the training's precision (as `nerkit train` scores dev,
    ``train._eval_tagger``); None without dev data."""
    if not dev:
        return None, None
    tagger = WindowTagger(TorchEngine(student, bf16=use_bf16(bf16, device)), teacher.tokenizer,
                          teacher.dir.labels, teacher.dir.meta.windows, bool(teacher.dir.meta.case_signal),
                          teacher.span_head)

    def score() -> dict:
        student.eval()
        rep = evaluate(tagger, dev)
        student.train()
        return rep

    return tagger, score


def _train(plan: _Plan, update, score, sched, talk: bool) -> tuple[LoopState, dict | None, list[int]]:
    """The loop (``loop.train_while_improving``) to its end, the best dev weights kept, and on while dev F1 still
    climbs at the plan's end (derived epochs only: ``budget.extension``): the state, best weights, extensions."""
    from tqdm.auto import tqdm

    tcfg, windows = plan.tcfg, plan.windows
    total = planned = plan.planned
    state, best, extended, rng = LoopState(), None, [], np.random.default_rng(tcfg.seed)
    extend = score is not None and "epochs" in plan.budget.chosen and tcfg.max_steps is None
    bar = tqdm(total=total, desc="distilling", unit="step", disable=not talk or bars_disabled(), dynamic_ncols=True)
    log = (lambda m: bar.write(m, file=sys.stderr)) if talk else (lambda _m: None)
    plan.student.train()
    while True:
        for p in train_while_improving(state, rng, lambda r: epoch_batches(windows.lengths, tcfg.batch_tokens, r),
                                       update, score, total,
                                       lambda bi, n, step, ep: eval_due(bi, n, step, ep, tcfg.evals_per_epoch),
                                       tcfg.early_stopping):
            bar.update(1)
            if (p.step % 10 == 0 or p.checkpoint) and not update.finite():
                bar.close()
                raise NerkitError(f"distillation diverged: the gradients became infinite or NaN by step {p.step} "
                                  f"(learning rate {tcfg.lr:g}); nothing was saved. Try a lower --lr")
            if p.step % 10 == 0:
                bar.set_postfix(loss=f"{float(p.loss.detach()):.4f}")
            if p.dev is not None:
                log(f"step {p.step}: dev F1 {p.dev['f1'] * 100:.2f}")
            if p.is_best:
                best = {k: v.detach().clone() for k, v in plan.student.state_dict().items()}
            if p.stopped:
                log(f"early stopping: no dev F1 gain in {state.bad} evaluations")
        more = extension(state.history, planned, state.step) if extend and not state.stopped else 0
        if not more:
            bar.close()
            return state, best, extended
        total = sched.lr_lambdas[0].extend(more, EXTEND_PEAK)
        extended.append(more)
        bar.total = total
        log(extending(state.history, more, EXTEND_PEAK))


def _summary(report: dict) -> dict:
    keys = ("precision", "recall", "f1", "support", "per_type", "nested", "errors")
    return {k: report[k] for k in keys if k in report}


def _meta(teacher: Teacher, cfg: DistillConfig, plan: _Plan, data: DistillData, state: LoopState, metrics: dict,
          record: dict) -> ModelMeta:
    """nerkit.json of the student: the teacher's labels, windows, casing and nested settings (so every verb runs it
    as it runs the teacher), this run's record, and what it was distilled from and on what."""
    tm = teacher.dir.meta
    scores = tm.metrics or {}
    tf = {s: round(scores[s]["f1"], 4) for s in ("dev", "test") if (scores.get(s) or {}).get("f1") is not None}
    meta = ModelMeta(windows=dict(tm.windows or {}), case_signal=tm.case_signal, labels=list(teacher.dir.labels),
                     nerkit_version=__version__, base_model=tm.base_model, tag_scheme="IOB2",
                     train_args={k: v for k, v in asdict(plan.tcfg).items() if k not in ("progress", "resume")},
                     data=data.described, metrics=metrics, history=state.history, best_step=state.best_step,
                     steps=state.step, platform=platform.platform(), train_seconds=record["train_seconds"],
                     total_seconds=record["total_seconds"], bf16=record["bf16"], device=record["device"],
                     budget={"describe": plan.budget.describe(), "chosen": list(plan.budget.chosen),
                             "planned_steps": plan.planned,
                             **({"extended_steps": record["extended"]} if record["extended"] else {})})
    meta.extra["distilled_from"] = {"model": teacher.name, "base_model": tm.base_model,
                                    "layers": teacher.encoder_layers, "f1": tf,
                                    "weights_sha256_16": fingerprint(teacher.dir.path / "model.safetensors")}
    meta.extra["distill"] = {
        "layers": len(plan.kept), "kept_layers": plan.kept, "temperature": cfg.temperature, "alpha": cfg.alpha,
        "hidden": cfg.hidden,
        "labelled_sentences": sum(len(d.sentences) for d in data.labelled), "unlabelled_texts": len(data.unlabelled),
        "windows": len(plan.windows.features),
        **({"span_head": "the teacher's, frozen"} if teacher.span_cols else {})}
    if tm.extra.get("nested"):
        meta.extra["nested"] = {k: v for k, v in tm.extra["nested"].items() if k != "dev_f1_by_decoder"}
    return meta


def _attach_span_head(student, teacher: Teacher) -> None:
    """The teacher's biaffine on the student (``modeldir`` writes it to span_head.safetensors)."""
    import torch

    head = torch.nn.Module()
    head.weight = torch.nn.Parameter(torch.tensor(teacher.span_head.weight, dtype=torch.float32), requires_grad=False)
    setattr(student, SPAN_ATTR, head)


def _announce(t: Teacher, plan: _Plan, data: DistillData) -> None:
    """The log's first lines: what is distilled into what, on which text, with which budget."""
    tf = (t.dir.meta.metrics or {}).get("test", {}).get("f1")
    n = len(plan.kept)
    kept = ", ".join(str(k + 1) for k in plan.kept)
    print(f"distilling {t.name} ({t.encoder_layers} layers{f', test F1 {tf * 100:.2f}' if tf is not None else ''}) "
          f"into {n} layer{'s' * (n > 1)} (teacher layer{'s' * (n > 1)} {kept} kept) on "
          f"{sum(len(d.sentences) for d in data.labelled):,} labelled sentences and {len(data.unlabelled):,} "
          f"unlabelled texts; {'; '.join(data.notes)}", file=sys.stderr, flush=True)
    longer = ""
    if "epochs" in plan.budget.chosen:
        longer = f"; epochs x{DISTILL_EPOCHS_X:g} the rule's for a student" + (
            f", x{SPAN_EPOCHS_X:g} again for the span head" if t.span_cols else "")
    print(f"distillation budget: {plan.budget.describe(plan.tcfg.max_steps)}{longer}", file=sys.stderr, flush=True)


def distill(teacher: str | os.PathLike, output: str | os.PathLike, config: DistillConfig | None = None) -> TrainResult:
    """Distil the nerkit model ``teacher`` into a student of ``config.layers`` encoder layers saved to ``output`` (an
    ordinary nerkit model directory); its scores on dev and test, where it was saved and its nerkit.json."""
    import torch
    from transformers import set_seed

    cfg = config or DistillConfig()
    cfg.check()
    t_start = time.time()
    check_output(output)  # before any work: never find out after an hour that the output cannot be written
    if Path(output).resolve() == Path(teacher).resolve():
        raise NerkitError(f"--output {output}: is the teacher; give a new directory for the student")
    t = open_teacher(teacher)
    layers = default_layers(t.encoder_layers) if cfg.layers is None else cfg.layers
    kept_layers(t.encoder_layers, layers)  # refused here, before the data is read
    data = load_data(t, cfg)
    set_seed(cfg.seed)
    set_torch_threads()
    keep_freed_memory()  # as a training does: the steps' pages stay
    plan = _plan(t, cfg, data, layers)
    talk = cfg.progress
    if talk:
        _announce(t, plan, data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    student = plan.student.to(device)
    t.model.to(device)
    bf16 = use_bf16(cfg.bf16, device)
    opt, sched = make_optimizer(student, plan.tcfg, plan.planned, device)
    span_weight = (torch.tensor(t.span_head.weight, dtype=torch.float32, device=device) if t.span_head is not None
                   else None)
    update = make_distill_step(student, t, opt, sched, plan.windows, cfg, bf16, span_weight, plan.kept)
    tagger, score = _dev_scorer(t, student, data.dev, device, cfg.bf16)
    if score is None and talk:
        print("no dev data: no early stopping, the last weights are kept", file=sys.stderr, flush=True)
    t_train = time.time()
    state, best, extended = _train(plan, update, score, sched, talk)
    train_s = time.time() - t_train
    if best is not None:
        student.load_state_dict(best)
    student.eval()
    if not all(bool(torch.isfinite(v).all()) for v in student.state_dict().values() if v.is_floating_point()):
        raise NerkitError(f"distillation diverged by step {state.step}: NaN weights; nothing was saved. Try a "
                          "lower --lr")
    return _finish(t, cfg, plan, data, state, tagger, output,
                   {"train_seconds": round(train_s, 1), "total_seconds": round(time.time() - t_start, 1),
                    "bf16": bf16, "device": str(device), "extended": extended})


def _finish(t: Teacher, cfg: DistillConfig, plan: _Plan, data: DistillData, state: LoopState, tagger, output,
            record: dict) -> TrainResult:
    """Score the kept weights on dev and test, write nerkit.json's record, save the model directory."""
    student = plan.student
    device = next(student.parameters()).device
    if tagger is None and data.test:
        tagger, _ = _dev_scorer(t, student, data.test, device, cfg.bf16)
    best_dev = final_scoring(tagger, cfg.bf16, device, state.best_dev) if tagger is not None else state.best_dev
    metrics = {}
    if data.dev:
        metrics["dev"] = _summary(best_dev or evaluate(tagger, data.dev))
    if data.test:
        metrics["test"] = _summary(evaluate(tagger, data.test))
    if cfg.progress:
        print("student: " + ", ".join(f"{k} F1 {v['f1'] * 100:.2f}" for k, v in metrics.items()), file=sys.stderr,
              flush=True)
    meta = _meta(t, cfg, plan, data, state, metrics, record)
    student = student.to("cpu")
    if t.span_cols:
        _attach_span_head(student, t)
    out_dir = save_or_rescue(student, t.tokenizer, meta, output)
    return TrainResult(metrics, out_dir, meta, student, t.tokenizer)
