"""Decoding IOB2 tag sequences from per-word log-probabilities: one dependency-free module (numpy only).

nerkit's decoder (``decode``) and the transformers pipeline copied into model directories (``nerkit_iob.py``, next
to ``nerkit_words.py``) both use it, so the two give the same entities: the IOB2 transition table, Viterbi under
it, the entities of a valid path, and the names of a nested model's tag layers. Keep it free of nerkit imports.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

LAYER_MARK = "@"  # a nested model's head: layer k's tags are named "B-PER@k" (k >= 1; layer 0 keeps "B-PER")


def _split(tag: str) -> tuple[str, str]:
    return ("O", "") if tag == "O" else (tag[0], tag[2:])


def allowed_transitions(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """IOB2 constraints: ``trans[i, j]`` is 0 if tag j may follow tag i, else -inf; and allowed first tags."""
    n = len(labels)
    parts = [_split(t) for t in labels]
    trans = np.zeros((n, n))
    start = np.zeros(n)
    for j, (pj, tj) in enumerate(parts):
        if pj == "I":
            start[j] = -np.inf
            for i, (pi, ti) in enumerate(parts):
                if not (pi in "BI" and ti == tj):
                    trans[i, j] = -np.inf
    return trans, start


def viterbi(logprobs: np.ndarray, trans: np.ndarray, start: np.ndarray) -> list[int]:
    """Most probable tag path that obeys the transition constraints."""
    n = logprobs.shape[0]
    if n == 0:
        return []
    score = logprobs[0] + start
    back = np.zeros((n, logprobs.shape[1]), dtype=np.int64)
    for i in range(1, n):
        cand = score[:, None] + trans
        back[i] = cand.argmax(0)
        score = cand.max(0) + logprobs[i]
    path = [int(score.argmax())]
    for i in range(n - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return path[::-1]


def best_path(logprobs: np.ndarray, trans: np.ndarray, start: np.ndarray) -> list[int]:
    """The best valid path: the argmax when it is valid IOB2 (almost always), else Viterbi under the constraints."""
    if not len(logprobs):
        return []
    path = logprobs.argmax(-1)
    if np.isfinite(start[path[0]]) and np.isfinite(trans[path[:-1], path[1:]]).all():
        return path.tolist()
    return viterbi(logprobs, trans, start)


def path_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, end word) of each entity of a valid IOB2 sequence."""
    out, cur = [], None
    for i, tag in enumerate(list(tags) + ["O"]):
        p, t = _split(tag)
        if cur and not (p == "I" and t == cur[0]):
            out.append((cur[0], cur[1], i))
            cur = None
        if p in "BI" and cur is None:
            cur = (t, i)
    return out


def layered_labels(labels: Sequence[str], layers: int) -> list[str]:
    """A nested model's output labels: ``labels`` for layer 0, then the same tags marked ``@1``, ``@2``, ..."""
    return list(labels) + [f"{t}{LAYER_MARK}{k}" for k in range(1, layers) for t in labels]


SPAN_COLUMNS = "~span:"  # a span head's feature columns after the tags (``spans.SPAN_MARK``): not tags


def unlayered_labels(labels: Sequence[str]) -> tuple[list[str], int]:
    """The tags of one layer and the number of layers of a model's output labels (``layered_labels`` undone; a
    span head's feature columns left out)."""
    labels = [t for t in labels if not t.startswith(SPAN_COLUMNS)]
    base = [t for t in labels if not _marked(t)]
    layers = len(labels) // max(1, len(base))
    if not base or len(labels) != len(base) * layers or labels != layered_labels(base, layers):
        return labels, 1  # not a layered head: every label is a tag of one layer
    return base, layers


def _marked(tag: str) -> bool:
    head, mark, k = tag.rpartition(LAYER_MARK)
    return bool(mark and head and k.isdigit())
