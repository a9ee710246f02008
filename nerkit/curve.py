"""Learning curve: train on growing subsets of the annotated data and plot dev F1 against annotated sentences,
to see whether more annotation is still paying off."""
from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path
from typing import Callable, Sequence

from nerkit.errors import NerkitError
from nerkit.files import atomic_write_text, replacing
from nerkit.scheme import chunks
from nerkit.types import Document


def parse_fractions(text: str) -> list[float]:
    """'0.1,0.25,1' -> [0.1, 0.25, 1.0], checked to lie in (0, 1] and sorted."""
    try:
        values = sorted({float(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise NerkitError(f"--fractions must be numbers separated by commas, got {text!r}") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise NerkitError(f"fractions must lie in (0, 1], got {text!r}")
    return values


def subsets(docs: Sequence[Document], fractions: Sequence[float], seed: int = 42) -> list[list[Document]]:
    """Nested subsets of labelled sentences (each contains the smaller ones), documents and order kept.

    Sentences rather than documents are sampled, so files that are one long document still give a curve.
    """
    units = [(d, s) for d in range(len(docs)) for s in range(len(docs[d].sentences)) if docs[d].sentences[s].tags]
    if not units:
        raise NerkitError("no labelled sentences in the training data")
    random.Random(seed).shuffle(units)
    out = []
    for f in fractions:
        chosen = sorted(units[:max(1, round(f * len(units)))])
        sub: list[Document] = []
        for d, s in chosen:
            if not sub or sub[-1].id != docs[d].id:
                sub.append(Document(docs[d].id, []))
            sub[-1].sentences.append(docs[d].sentences[s])
        out.append(sub)
    return out


def _count(docs: Sequence[Document]) -> tuple[int, int, int]:
    sents = [s for d in docs for s in d.sentences]
    return len(sents), sum(len(s) for s in sents), sum(len(chunks(t)) for s in sents for t in s.all_tags())


def learning_curve(train, dev, fractions: Sequence[float], output: str | os.PathLike, config=None,
                   seed: int = 42, scheme: str | None = None, keep_models: bool = False,
                   fit: Callable | None = None) -> list[dict]:
    """Train once per fraction (same seed, nested subsets) and write curve.tsv, curve.json and curve.png."""
    from nerkit.train import TrainConfig

    if fit is None:
        from nerkit.train import fit
    if dev is None:
        raise NerkitError("a learning curve needs --dev data to score each model")
    if isinstance(train, (str, os.PathLike)):
        from nerkit.formats import load

        train = load(train, scheme=scheme)
    if isinstance(dev, (str, os.PathLike)):
        from nerkit.formats import load

        dev = load(dev, scheme=scheme)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    config = config or TrainConfig()
    rows = []
    for frac, sub in zip(fractions, subsets(train, fractions, seed)):
        cfg = copy.copy(config)
        cfg.seed = seed
        n_sent, n_tok, n_ent = _count(sub)
        model_dir = out / f"model-{frac:g}" if keep_models else None
        result = fit(sub, dev=dev, output=model_dir, config=cfg)
        dev_m = result.get("metrics", {}).get("dev", {})
        rows.append({"fraction": frac, "sentences": n_sent, "tokens": n_tok, "entities": n_ent,
                     "dev_f1": dev_m.get("f1"), "dev_precision": dev_m.get("precision"),
                     "dev_recall": dev_m.get("recall")})
        _write(rows, out)  # after every point, so an interrupted run keeps what it measured
    plot(rows, out / "curve.png")
    return rows


def _write(rows: Sequence[dict], out: Path) -> None:
    cols = ["fraction", "sentences", "tokens", "entities", "dev_f1", "dev_precision", "dev_recall"]
    def fmt(col: str, v) -> str:
        if v is None:
            return ""
        return f"{v:g}" if col == "fraction" else f"{v:.4f}" if isinstance(v, float) else str(v)

    atomic_write_text(out / "curve.tsv", "\t".join(cols) + "\n" + "".join(
        "\t".join(fmt(c, r[c]) for c in cols) + "\n" for r in rows))
    atomic_write_text(out / "curve.json", json.dumps(list(rows), indent=2) + "\n")


def format_curve(rows: Sequence[dict]) -> str:
    """The curve as a small table."""
    lines = ["fraction  sentences  entities  dev F1"]
    for r in rows:
        f1 = "n/a" if r["dev_f1"] is None else f"{r['dev_f1'] * 100:.2f}"
        lines.append(f"{r['fraction']:>8g}  {r['sentences']:>9}  {r['entities']:>8}  {f1:>6}")
    return "\n".join(lines)


def plot(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """Dev F1 against annotated sentences, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    xs = [r["sentences"] for r in rows]
    ys = [None if r["dev_f1"] is None else r["dev_f1"] * 100 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(xs, [y if y is not None else float("nan") for y in ys], marker="o")
    for r, x, y in zip(rows, xs, ys):
        if y is not None:
            ax.annotate(f"{r['fraction']:g}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xlabel("annotated sentences")
    ax.set_ylabel("dev F1 (%)")
    ax.set_title("Learning curve")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
