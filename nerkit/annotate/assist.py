"""Model-assisted annotation: pre-annotating texts with a trained model, and choosing which texts to annotate
next by the model's uncertainty (active learning)."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nerkit.errors import NerkitError
from nerkit.files import atomic_write_text
from nerkit.formats import Record, ChangeLog, labelstudio_tasks, write
from nerkit.types import Span

STRATEGIES = ("margin", "entropy")
BATCH_TEXTS = 256  # texts per model call: bounds the memory held by per-word probabilities


def _model_version(model_dir: str | os.PathLike, tagger) -> str:
    base = getattr(getattr(tagger, "meta", None), "base_model", None)
    return f"nerkit:{Path(model_dir).resolve().name}" + (f" ({base})" if base else "")


def predict_records(tagger, texts: Sequence[str], ids: Sequence[str] | None = None
                    ) -> tuple[list[Record], list[list[float]]]:
    """Records holding a tagger's entities for texts, with each entity's score."""
    records, scores = [], []
    for start in range(0, len(texts), BATCH_TEXTS):
        chunk = list(texts[start:start + BATCH_TEXTS])
        for k, (text, ents) in enumerate(zip(chunk, tagger(chunk) if chunk else [])):
            i = start + k
            rid = ids[i] if ids is not None else f"text-{i + 1}"
            records.append(Record(rid, text, [Span(e.start, e.end, e.label) for e in ents], f"text {i + 1}"))
            scores.append([float(e.score) for e in ents])
    return records, scores


def write_predictions(records: Sequence[Record], scores: Sequence[Sequence[float]], output: str | os.PathLike,
                      fmt: str = "labelstudio", model_version: str = "nerkit") -> ChangeLog:
    """Write predicted records: Label Studio tasks carry them as predictions (with scores), other formats as spans."""
    report = ChangeLog()
    if fmt in ("labelstudio", "label-studio"):
        tasks = labelstudio_tasks(records, predictions=True, model_version=model_version, scores=scores)
        atomic_write_text(output, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
        report.records_out, report.spans_out = len(records), sum(len(r.spans) for r in records)
    else:
        write(records, output, fmt, report)
    return report


def preannotate(model_dir: str | os.PathLike, texts: Sequence[str], output: str | os.PathLike,
                fmt: str = "labelstudio", backend: str = "auto") -> ChangeLog:
    """Tag texts with a model and write them for annotation (Label Studio tasks with predictions by default)."""
    from nerkit.predict import Tagger

    texts = [t for t in texts if t.strip()]
    if not texts:
        raise NerkitError("no texts to pre-annotate")
    tagger = Tagger.load(model_dir, backend=backend)
    records, scores = predict_records(tagger, texts)
    return write_predictions(records, scores, output, fmt, _model_version(model_dir, tagger))


# ---------------------------------------------------------------- active learning


def token_uncertainty(probs: np.ndarray, strategy: str = "margin") -> np.ndarray:
    """Per-word uncertainty, larger = less sure: 1 - (top1 - top2) for margin, entropy (nats) for entropy."""
    if strategy not in STRATEGIES:
        raise NerkitError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if probs.shape[0] == 0:
        return np.zeros(0)
    if strategy == "margin":
        top = np.sort(probs, axis=-1)[:, ::-1]
        second = top[:, 1] if probs.shape[1] > 1 else np.zeros(len(top))
        return 1.0 - (top[:, 0] - second)
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(-1)


def text_uncertainty(probs: np.ndarray, strategy: str = "margin") -> float:
    """A text is as uncertain as its least certain word (lowest margin / highest entropy); for a nested model,
    its least certain word on any tag layer."""
    if probs.ndim == 3:  # (words, layers, classes)
        probs = probs.reshape(-1, probs.shape[-1])
    u = token_uncertainty(probs, strategy)
    return float(u.max()) if len(u) else 0.0


def normalise(text: str) -> str:
    """Key under which texts count as duplicates: case, spacing and digits ignored."""
    return re.sub(r"\d", "0", re.sub(r"\s+", " ", text.casefold()).strip())


@dataclass
class Suggestion:
    """A text worth annotating next, with its uncertainty and where it came from."""

    rank: int
    text: str
    score: float
    index: int  # position in the input
    duplicates: int  # further copies of the text (after normalisation) in the input


def suggest(tagger, texts: Sequence[str], n: int = 100, strategy: str = "margin",
            exclude: Sequence[str] = ()) -> list[Suggestion]:
    """The ``n`` most uncertain distinct texts, most uncertain first; texts in ``exclude`` are skipped."""
    if n < 1:
        raise NerkitError("-n must be at least 1")
    token_uncertainty(np.zeros((0, 2)), strategy)  # checks the strategy before any model call
    seen = {normalise(t) for t in exclude}
    first: dict[str, int] = {}
    copies: dict[str, int] = {}
    for i, t in enumerate(texts):
        key = normalise(t)
        if not key or key in seen:
            continue
        if key in first:
            copies[key] += 1
        else:
            first[key], copies[key] = i, 0
    order = list(first.values())
    scored: list[tuple[float, int]] = []
    for start in range(0, len(order), BATCH_TEXTS):
        idx = order[start:start + BATCH_TEXTS]
        for i, (_, _, probs) in zip(idx, tagger.word_probs([texts[i] for i in idx])):
            scored.append((text_uncertainty(np.asarray(probs), strategy), i))
    # Most uncertain first; ties keep input order so results are reproducible.
    scored.sort(key=lambda si: (-si[0], si[1]))
    return [Suggestion(r + 1, texts[i], round(s, 6), i, copies[normalise(texts[i])])
            for r, (s, i) in enumerate(scored[:n])]


def export_suggestions(suggestions: Sequence[Suggestion], output: str | os.PathLike, fmt: str = "txt",
                       tagger=None, model_version: str = "nerkit") -> ChangeLog:
    """Write suggestions: txt (one text per line), jsonl (text, score, rank), or any annotation format with the
    model's predictions (Label Studio: as predictions, so annotators correct rather than start from nothing)."""
    if fmt == "txt":
        bad = [s.rank for s in suggestions if "\n" in s.text or "\r" in s.text]
        if bad:
            raise NerkitError(f"suggestion {bad[0]} spans several lines; use --to jsonl or labelstudio")
        atomic_write_text(output, "".join(s.text + "\n" for s in suggestions))
        rep = ChangeLog()
        rep.records_out = len(suggestions)
        return rep
    if fmt == "jsonl":
        atomic_write_text(output, "".join(json.dumps({"rank": s.rank, "score": s.score, "text": s.text, "index": s.index,
                                                      "duplicates": s.duplicates}, ensure_ascii=False) + "\n"
                                          for s in suggestions))
        rep = ChangeLog()
        rep.records_out = len(suggestions)
        return rep
    if tagger is None:
        records, scores = [Record(f"suggestion-{s.rank}", s.text) for s in suggestions], [[] for _ in suggestions]
    else:
        records, scores = predict_records(tagger, [s.text for s in suggestions],
                                          [f"suggestion-{s.rank}" for s in suggestions])
    for r, s in zip(records, suggestions):
        r.meta["uncertainty"] = s.score
    return write_predictions(records, scores, output, fmt, model_version)


def read_unlabelled(path: str | os.PathLike) -> list[str]:
    """Texts to rank: one per non-empty line of a .txt file, or the "text" field of .jsonl records."""
    from nerkit.predict import read_texts

    return read_texts(path)


def suggest_file(model_dir: str | os.PathLike, unlabelled: str | os.PathLike, output: str | os.PathLike,
                 n: int = 100, strategy: str = "margin", fmt: str | None = None,
                 exclude: Sequence[str] = (), backend: str = "auto") -> list[Suggestion]:
    """Rank a file of unlabelled texts by model uncertainty and export the top ``n``."""
    from nerkit.predict import Tagger

    tagger = Tagger.load(model_dir, backend=backend)
    items = suggest(tagger, read_unlabelled(unlabelled), n, strategy, exclude)
    if fmt is None:
        fmt = {".txt": "txt", ".jsonl": "jsonl", ".json": "labelstudio"}.get(Path(output).suffix.lower(), "txt")
    export_suggestions(items, output, fmt, tagger, _model_version(model_dir, tagger))
    return items

