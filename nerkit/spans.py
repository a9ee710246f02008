"""A nested model's span head at inference: biaffine scores of every (first word, last word) pair, decoded into
entities that may nest. One dependency-free module (numpy only), copied into model directories for their
transformers pipeline (``nerkit_spans.py``) as ``iob.py`` is, so both give the same entities.

The network's token classifier gives each word, besides its tag scores, ``2 x dim`` extra columns (named
``~span:s0``... and ``~span:e0``...): the pre-activations of the word's features as a span's first and as its last
word; a pooled head adds one column per type (``~span:m0``...), a word's vote for the span it lies in. A span
(i, j) of type c scores ``[s_i, 1] . U_c . [e_j, 1] + mean(m_i..m_j)_c`` (the biaffine ``U`` lives in
``span_head.safetensors``; the mean by prefix sums: one subtraction a pair). The mean pools what lies between the
edges, as spaCy's spancat and SpanMarker pool a span: a clause is told by its middle ("By using the Service, you
agree ..."), which the two edge words' states alone carried too weakly (tos-clauses dev F1 52.8 without it, 54.3
with it). Spans with probability >= 0.5 (or the threshold dev chose for their type) are kept, best first, unless
they cross (partly overlap) one kept before or are ``near`` one of their type kept before; the "merged" decoder
first joins each span's readings with other edges (``merge_readings``). The columns ride through
every engine (PyTorch, ONNX, int8) as plain logits; the pairs are scored per sentence after the windows are merged,
so a span is never cut by a window edge.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Mapping, NamedTuple, Sequence

import numpy as np

SPAN_MARK = "~span:"  # (iob.SPAN_COLUMNS: the same) the classifier's span-feature columns: "~span:s0".. (first word), "~span:e0".. (last word)
SPAN_FILE = "span_head.safetensors"
SPAN_ATTR = "nerkit_span"  # in training the biaffine weight rides on the model as ``model.nerkit_span.weight``
THRESHOLD = 0.5
# Two spans of one type whose words overlap this much (intersection over union) are one entity read with other edges:
# only spans of 10 words or more can differ and still reach it (a clause, not a protein name). Training leaves such
# neighbours of a gold span out of the loss (train._mark_near) and decoding keeps the better of two (``near``). On
# tos-clauses dev, overlap F1 64.8 -> 67.9 and exact 56.2 -> 57.9 (test 59.8 -> 62.7 and 48.9 -> 49.2, torch).
NEAR_IOU = 0.9


def span_columns(dim: int, pooled: int = 0) -> list[str]:
    """Names of the classifier's span-feature columns for a span head of width ``dim`` (and ``pooled`` types)."""
    return ([f"{SPAN_MARK}s{i}" for i in range(dim)] + [f"{SPAN_MARK}e{i}" for i in range(dim)]
            + [f"{SPAN_MARK}m{i}" for i in range(pooled)])


class SpanLayout(NamedTuple):
    """A head's labels split: its tag labels, the width of its span features (0: no span head) and its pooled
    columns (one per type, or 0)."""

    tags: list[str]
    dim: int
    pooled: int

    @property
    def columns(self) -> int:
        """The span-feature columns after the tags (what the span head reads)."""
        return 2 * self.dim + self.pooled


def span_layout(labels: Sequence[str]) -> SpanLayout:
    """How a head's labels divide into tags and span-feature columns (the one place that reads the layout)."""
    tags = [t for t in labels if not t.startswith(SPAN_MARK)]
    extra = list(labels[len(tags):])
    dim = sum(t.startswith(f"{SPAN_MARK}s") for t in extra)
    pooled = sum(t.startswith(f"{SPAN_MARK}m") for t in extra)
    if extra and (not dim or list(labels) != tags + span_columns(dim, pooled)):
        raise ValueError("a span head's columns must come last: first-word features, last-word ones, then pooled ones")
    return SpanLayout(tags, dim, pooled)


def entity_types(tags: Sequence[str]) -> list[str]:
    """The entity types of one tag layer's labels in the order the span head scores them."""
    return list(dict.fromkeys(t[2:] for t in tags if t != "O"))


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (the training head uses the same), in place on a copy: ``x ** 3`` on float32 took numpy's
    slow power path, 217 us against 7 us for a GENIA sentence's features (a tenth of a span model's tagging time)."""
    y = x * x
    y *= x
    y *= 0.044715
    y += x
    y *= 0.7978845608028654
    np.tanh(y, out=y)
    y += 1.0
    y *= x
    y *= 0.5
    return y


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _logit(p: float) -> float:
    return -np.inf if p <= 0 else float(np.log(p / (1 - p))) if p < 1 else np.inf


def _crosses(a: int, b: int, c: int, d: int) -> bool:
    return a < c < b < d or c < a < d < b


def near(a: int, b: int, c: int, d: int) -> bool:
    """Whether spans [a, b) and [c, d) share ``NEAR_IOU`` or more of the words they cover together."""
    return min(b, d) - max(a, c) >= NEAR_IOU * (max(b, d) - min(a, c))


DECODERS = ("spans", "tags+spans", "merged")
# The "merged" decoder: spans of one type whose words overlap by half or more of their union are one reading of an
# entity whose edges the head is unsure of; their probabilities join (noisy-or: at least one of them is the entity)
# and the most probable one gives the edges. A clause's probability is split over many edge readings (its near
# neighbours are left out of the span loss, so nothing teaches one over another): on tos-clauses (AVX-512 bf16
# training, each decoder with its dev-chosen thresholds, ``train.MERGED_THRESHOLDS``) the same weights gave test
# exact / overlap F1 48.10 / 60.23 -> 52.02 / 64.42 (seed 42) and 50.34 / 64.53 -> 55.38 / 67.02 (seed 43). Readings
# under ``MERGE_FLOOR`` are not joined (0.005 and 0.02 gave the same dev scores). Only readings of
# ``MERGE_MIN_WORDS`` words or more join: a span of one or two words sharing half its words with another is more
# often an entity inside that one than another reading of it (genia-small, seeds 42 / 43: joining those too, test
# inner recall was 25.7 and 33.2 %, with the floor 30.3 and 36.8, single spans 30.7 and 37.5; tos-clauses scored the
# same with any floor up to 10 words).
MERGE_IOU = 0.5
MERGE_FLOOR = 0.01
MERGE_MIN_WORDS = 3
# Sentences up to this many words have their pairs scored together with the others of their length
# (``SpanScorer.candidates_many``), ``_GROUP_PAIRS`` pair scores (4 MB of float32) and ``_GROUP_WORDS`` words at a
# time (a corpus of one-word lines must not stack all its features at once); longer ones alone, a block of first
# words at a time.
BATCH_WORDS = 128
_GROUP_PAIRS = 1 << 20
_GROUP_WORDS = 1 << 12
_MERGE_NUMPY = 64  # readings of one type past which ``merge_readings`` compares them with arrays


def merge_readings(found: Sequence[tuple[int, int, int, float]], iou: float = MERGE_IOU,
                   min_words: int = MERGE_MIN_WORDS) -> list[tuple[int, int, int, float]]:
    """Candidates ``(first word, last word + 1, type index, probability)`` of one sentence merged: the most probable
    one left of a type takes every other one left of its type sharing ``iou`` of their union of words (both of
    ``min_words`` or more), with the probability that at least one of them is right."""
    merged = []
    by_type: dict[int, list[tuple[int, int, float]]] = {}
    for a, b, c, p in sorted(found, key=lambda x: -x[3]):
        by_type.setdefault(c, []).append((a, b, p))
    for c, spans in by_type.items():
        # Plain Python over a sentence's few readings (ADE 3.8, genia-small 4.1 at the floor, 31 at most): numpy's
        # per-call cost made this 36 us a sentence, a quarter of a span model's decoding; arrays past ``_MERGE_NUMPY``.
        miss = [math.log1p(-min(p, 1 - 1e-12)) for _, _, p in spans]  # log(1 - p)
        left = [True] * len(spans)
        ends = np.array([x[1] for x in spans], dtype=np.int64) if len(spans) > _MERGE_NUMPY else None
        for i, (a, b, _) in enumerate(spans):
            if not left[i]:
                continue
            left[i] = False
            members = [i]
            if b - a >= min_words:
                members += _joined(spans, left, i, iou, min_words, ends)
                for k in members:
                    left[k] = False
            # fsum: the same probability however the readings were found and listed
            merged.append((a, b, c, -math.expm1(math.fsum(miss[k] for k in members))))
    return merged



def _joined(spans: Sequence[tuple[int, int, float]], left: list[bool], i: int, iou: float, min_words: int,
            ends: np.ndarray | None) -> list[int]:
    """The readings after ``i`` still left that ``merge_readings`` joins to it (every one before it is taken)."""
    a, b = spans[i][0], spans[i][1]
    if ends is None:
        return [k for k in range(i + 1, len(spans)) if left[k] and spans[k][1] - spans[k][0] >= min_words
                and min(spans[k][1], b) - max(spans[k][0], a) >= iou * (max(spans[k][1], b) - min(spans[k][0], a))]
    starts = np.array([x[0] for x in spans[i + 1:]], dtype=np.int64)
    tail = ends[i + 1:]
    ok = (np.array(left[i + 1:], dtype=bool) & (tail - starts >= min_words)
          & (np.minimum(tail, b) - np.maximum(starts, a) >= iou * (np.maximum(tail, b) - np.minimum(starts, a))))
    return (np.nonzero(ok)[0] + i + 1).tolist()


class SpanScorer:
    """Scores and decodes spans of one sentence from its words' span-feature columns.

    ``decoder`` "spans": the span head alone decides; "tags+spans": the first tag layer's entities are kept and the
    span head adds the entities inside them (an inner entity, or the same range with a second type); "merged": the
    span head alone, each span's probability joined with its other readings' (``merge_readings``). Training
    chooses the one with the best dev F1 (``nerkit.json``, ``nested.decoder``).
    """

    def __init__(self, types: Sequence[str], weight: np.ndarray, threshold: float = THRESHOLD,
                 decoder: str = "spans", max_width: int | None = None, pooled: bool = False,
                 thresholds: Mapping[str, float] | None = None):
        if decoder not in DECODERS:
            raise ValueError(f"span decoder must be one of {', '.join(DECODERS)}, not {decoder!r}")
        self.decoder = decoder
        self.types = list(types)
        self.weight = np.asarray(weight, dtype=np.float64)  # (types, dim + 1, dim + 1)
        self.weight32 = self.weight.astype(np.float32)
        self.dim = self.weight.shape[1] - 1
        self.threshold = threshold
        self.max_width = max_width  # words; longer spans are not scored (a 9,490-word paragraph: not 90M pairs)
        self.pooled = bool(pooled)
        self.thresholds = dict(thresholds or {})  # per type, where dev chose other than ``threshold``
        self._memo: tuple[dict, float] | None = None
        self.columns = 2 * self.dim + (len(self.types) if self.pooled else 0)  # the feature columns it reads
        if self.weight.shape != (len(self.types), self.dim + 1, self.dim + 1):
            raise ValueError(f"span head weight of shape {self.weight.shape} for {len(self.types)} types")

    def _features(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The first- and last-word features ``[gelu(x), 1]`` of ``feats`` (words x columns, or sentences of one
        length x words x columns) and the pooled votes' prefix sums (types x words + 1, per sentence)."""
        if feats.shape[-1] != self.columns:
            raise ValueError(f"the span head reads {self.columns} feature columns a word, not {feats.shape[-1]}")
        one = np.ones((*feats.shape[:-1], 1), dtype=np.float32)
        edges = gelu(feats[..., :2 * self.dim].astype(np.float32))
        s = np.concatenate([edges[..., :self.dim], one], -1)
        e = np.concatenate([edges[..., self.dim:], one], -1)
        if not self.pooled:
            return s, e, None
        # prefix sums (float64: a long paragraph's running sum must not swallow one word's vote), (types, words + 1)
        votes = np.cumsum(feats[..., 2 * self.dim:].astype(np.float64), -2)
        zero = np.zeros((*feats.shape[:-2], 1, len(self.types)))
        return s, e, np.concatenate([zero, votes], -2).swapaxes(-1, -2)

    def _cut(self, threshold: float | None) -> np.ndarray:
        """Per type, the logit a pair needs: p >= thr exactly where the logit is >= log(thr / (1 - thr)) (the sigmoid
        is taken of the kept pairs only); ``threshold`` None: each type's own."""
        return np.array([_logit(self.type_threshold(t) if threshold is None else threshold) for t in self.types],
                        dtype=np.float32)[:, None, None]

    def candidates(self, feats: np.ndarray, threshold: float | None = None,
                   block: int = 256) -> list[tuple[int, int, int, float]]:
        """Every (first word, last word + 1, type index, probability) at or over ``threshold`` (default: the
        scorer's, per type), scored a block of first words at a time over the widths allowed."""
        n = len(feats)
        width = self.max_width or n
        s, e, votes = self._features(feats)
        # Matrix products, not einsum: a GENIA sentence's pairs are a few microseconds of BLAS, and einsum's path
        # search cost more than the products (int8 words/s of a span model: 0.79x a flat model's with einsum).
        left = np.matmul(s, self.weight32)  # (types, words, dim + 1)
        cut = self._cut(threshold)
        found = []
        for a0 in range(0, n, block):
            a1 = min(n, a0 + block)
            b1 = min(n, a1 - 1 + width)
            logits = np.matmul(left[:, a0:a1], e[a0:b1].T)  # (types, first words, last words)
            off = np.arange(a0, b1)[None, :] - np.arange(a0, a1)[:, None]  # last word - first word
            if votes is not None:  # the mean vote of the words from first to last
                inside = votes[:, None, a0 + 1:b1 + 1] - votes[:, a0:a1, None]
                logits = logits + (inside / np.maximum(off + 1, 1)).astype(np.float32)
            ok = (off >= 0) & (off < width) & (logits >= cut)
            c, i, j = np.nonzero(ok)
            p = _sigmoid(logits[c, i, j].astype(np.float64))
            found.extend(zip((i + a0).tolist(), (j + a0 + 1).tolist(), c.tolist(), p.tolist()))
        return found

    def type_threshold(self, label: str) -> float:
        """The probability a span of type ``label`` needs to be kept."""
        return self.thresholds.get(label, self.threshold)

    @contextmanager
    def remembering(self, floor: float) -> Iterator[None]:
        """Within the block, each sentence's candidates at or over ``floor`` are scored once and filtered by the
        thresholds of the moment (thresholds compared on dev: the features must stay alive and unchanged). A block
        inside one remembering from a floor as low keeps the outer's candidates (decoders compared in turn)."""
        if self._memo is not None and self._memo[1] <= floor:
            yield
            return
        self._memo = ({}, floor)
        try:
            yield
        finally:
            self._memo = None

    def candidates_many(self, feats_list: Sequence[np.ndarray], threshold: float | None = None
                        ) -> list[list[tuple[int, int, int, float]]]:
        """``candidates`` of many sentences: those of one length (up to ``BATCH_WORDS`` words) scored together, with
        the very operations and shapes ``candidates`` gives one sentence (so the same candidates, whatever a sentence
        is decoded with)."""
        out: list[list[tuple[int, int, int, float]]] = [[] for _ in feats_list]
        groups: dict[int, list[int]] = {}
        for k, f in enumerate(feats_list):
            if f.shape[1] != self.columns:
                raise ValueError(f"the span head reads {self.columns} feature columns a word, not {f.shape[1]}")
            if len(f) > BATCH_WORDS:
                out[k] = self.candidates(f, threshold)
            elif len(f):
                groups.setdefault(len(f), []).append(k)
        cut = self._cut(threshold)
        for n, idx in groups.items():
            step = max(1, min(_GROUP_PAIRS // (len(self.types) * n * n), _GROUP_WORDS // n))
            for g in range(0, len(idx), step):
                part = idx[g:g + step]
                for k, found in zip(part, self._group_candidates(np.stack([feats_list[k] for k in part]), cut)):
                    out[k] = found
        return out

    def _group_candidates(self, feats: np.ndarray, cut: np.ndarray) -> list[list[tuple[int, int, int, float]]]:
        """``candidates`` of sentences of one length, ``feats`` (sentences, words, columns)."""
        n = feats.shape[1]
        s, e, votes = self._features(feats)
        # one (words x dim + 1) product per sentence and type, as ``candidates`` makes them: the same BLAS calls
        logits = np.matmul(np.matmul(s[:, None], self.weight32), e[:, None].swapaxes(2, 3))  # (sentences, types, ..)
        off = np.arange(n)[None, :] - np.arange(n)[:, None]  # last word - first word
        if votes is not None:  # the mean vote of the words from first to last (on the transposed view: +7 us a sentence)
            votes = np.ascontiguousarray(votes)
            inside = votes[:, :, None, 1:] - votes[:, :, :n, None]
            logits += (inside / np.maximum(off + 1, 1)).astype(np.float32)
        ok = ((off >= 0) & (off < (self.max_width or n))) & (logits >= cut)
        b, c, i, j = np.nonzero(ok)
        p = _sigmoid(logits[b, c, i, j].astype(np.float64))
        rows = list(zip(i.tolist(), (j + 1).tolist(), c.tolist(), p.tolist()))
        bounds = np.searchsorted(b, np.arange(len(feats) + 1)).tolist()
        return [rows[bounds[k]:bounds[k + 1]] for k in range(len(feats))]

    def _candidates_many(self, feats_list: Sequence[np.ndarray]) -> list[list[tuple[int, int, int, float]]]:
        merged = self.decoder == "merged"
        if self._memo is None:
            if not merged:
                return self.candidates_many(feats_list)
            found = self._merged_many(feats_list)
        else:
            memo, floor = self._memo
            keys = [(f.__array_interface__["data"][0], f.shape, f.strides, f[:1].tobytes(), merged)
                    for f in feats_list]
            todo = [k for k, key in enumerate(keys) if key not in memo]
            todo_feats = [feats_list[k] for k in todo]
            new = self._merged_many(todo_feats) if merged else self.candidates_many(todo_feats, floor)
            memo.update((keys[k], f) for k, f in zip(todo, new))
            found = [memo[key] for key in keys]
        cut = [self.type_threshold(t) for t in self.types]
        return [[x for x in f if x[3] >= cut[x[2]]] for f in found]

    def _merged_many(self, feats_list: Sequence[np.ndarray]) -> list[list[tuple[int, int, int, float]]]:
        """The "merged" decoder's candidates: every reading joined (``merge_readings``), from ``MERGE_FLOOR`` or the
        lowest threshold in use if lower (a reading that would be kept alone is always joined)."""
        floor = min(MERGE_FLOOR, self.threshold, *self.thresholds.values())
        return [merge_readings(f) for f in self.candidates_many(feats_list, floor)]

    def decode(self, feats: np.ndarray, tagged: Sequence[tuple[str, int, int, float]] = ()
               ) -> list[tuple[str, int, int, float]]:
        """Entities ``(type, first word, last word + 1, probability)``: every span at or over the threshold, best
        first, unless it crosses one kept before or is ``near`` one of its type kept before (nesting and one range
        with two types are kept). With the "tags+spans" decoder, ``tagged`` (the first tag layer's entities) come
        first and spans are added inside them only."""
        return self.decode_many([feats], [tagged])[0]

    def decode_many(self, feats_list: Sequence[np.ndarray],
                    tagged_list: Sequence[Sequence[tuple[str, int, int, float]]] | None = None
                    ) -> list[list[tuple[str, int, int, float]]]:
        """``decode`` of many sentences, their pairs scored together (``candidates_many``): the same entities as
        one at a time, in a third of the time (ADE's 466 test texts, 3-layer student: 115 -> 39 us a sentence)."""
        tagged_list = tagged_list if tagged_list is not None else [()] * len(feats_list)
        found_all = self._candidates_many(feats_list)
        return [self._keep(found, tagged) if len(f) else [] for f, found, tagged in
                zip(feats_list, found_all, tagged_list)]

    def _keep(self, found: list[tuple[int, int, int, float]], tagged: Sequence[tuple[str, int, int, float]]
              ) -> list[tuple[str, int, int, float]]:
        found = sorted(found, key=lambda x: -x[3])  # stable: ties keep position order
        outer = list(tagged) if self.decoder == "tags+spans" else []
        kept: list[tuple[str, int, int, float]] = list(outer)
        seen = {(t, a, b) for t, a, b, _ in kept}
        for a, b, ci, p in found:
            t = self.types[ci]
            if (t, a, b) in seen or any(_crosses(a, b, x, y) or (u == t and near(a, b, x, y))
                                        for u, x, y, _ in kept):
                continue
            if outer and not any(x <= a and b <= y for _, x, y, _ in outer):
                continue
            kept.append((t, a, b, float(p)))
            seen.add((t, a, b))
        return sorted(kept, key=lambda e: (e[1], -e[2], e[0]))


def load_span_head(path) -> SpanScorer:
    """The span head saved in a model directory's ``span_head.safetensors`` (types and decoder in its metadata)."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        info = f.metadata() or {}
        weight = f.get_tensor("weight")
    types = json.loads(info.get("types", "null"))
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise ValueError(f"{path}: no entity types in the span head's metadata")
    width = int(info["max_width"]) if info.get("max_width", "").isdigit() else None
    thresholds = json.loads(info.get("thresholds", "{}"))
    if not isinstance(thresholds, dict) or not all(t in types and isinstance(p, (int, float))
                                                   for t, p in thresholds.items()):
        raise ValueError(f"{path}: the span head's thresholds name types it does not score")
    return SpanScorer(types, weight, float(info.get("threshold", THRESHOLD)), info.get("decoder", "spans"), width,
                      info.get("pooled") == "mean", thresholds)
