"""Learning curve: train on growing subsets of the annotated data and plot dev F1 against annotated sentences,
to see whether more annotation is still paying off, and how much a doubling of it buys (where entities nest or are
long, the inner entities' recall and the overlap score too: the figures such data is judged by)."""
from __future__ import annotations

import copy
import json
import math
import os
import random
from pathlib import Path
from typing import Callable, Sequence

from nerkit.errors import NerkitError
from nerkit.evaluation import edges_move
from nerkit.files import atomic_write_text, replacing
from nerkit.modeldir import check_output
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


CURVE_FILES = ("curve.tsv", "curve.json", "curve.png")
# Shown beside dev F1 where they say more than it: the overlap score where edges move it (a point over the exact F1
# at some size: clauses, not names), the inner entities' recall where the dev set has inner entities.
EXTRA = {"dev_overlap_f1": "overlap F1", "dev_inner_recall": "inner R"}


def _is_curve(path: Path) -> bool:
    """Whether ``path`` is a curve.json an earlier `nerkit curve` wrote (a list of rows with fraction and dev F1)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(rows, list) and bool(rows) and all(
        isinstance(r, dict) and "fraction" in r and "dev_f1" in r for r in rows)


def check_curve_output(output: str | os.PathLike, fractions: Sequence[float] = (), keep_models: bool = False) -> Path:
    """Refuse, before any training, an output nerkit may not write: a file, or a folder whose curve files an earlier
    `nerkit curve` did not write (a curve is replaced, a user's files never); with ``keep_models``, model folders
    ``check_output`` refuses."""
    out = Path(output)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise NerkitError(f"--output {output}: exists and is not a directory; a learning curve is written to a folder")
    if out.is_dir() and not _is_curve(out / "curve.json"):
        for name in CURVE_FILES:
            if (out / name).exists():
                raise NerkitError(f"--output {output}: holds a {name} that no learning curve of nerkit wrote (no "
                                  "curve.json of one beside it); nerkit will not replace it. Give another folder")
    if keep_models:
        for frac in fractions:
            check_output(out / f"model-{frac:g}")
    return out


def _row(frac: float, sub: Sequence[Document], dev_m: dict) -> dict:
    n_sent, n_tok, n_ent = _count(sub)
    row = {"fraction": frac, "sentences": n_sent, "tokens": n_tok, "entities": n_ent, "dev_f1": dev_m.get("f1"),
           "dev_precision": dev_m.get("precision"), "dev_recall": dev_m.get("recall")}
    if "overlap" in dev_m:
        row["dev_overlap_f1"] = dev_m["overlap"]["f1"]
    inner = dev_m.get("nested", {}).get("inner", {})
    if inner.get("support"):
        row["dev_inner_recall"] = inner["recall"]
    if dev_m.get("per_type"):
        row["dev_f1_per_type"] = {t: v["f1"] for t, v in dev_m["per_type"].items()}
    return row


def learning_curve(train, dev, fractions: Sequence[float], output: str | os.PathLike, config=None,
                   seed: int = 42, scheme: str | None = None, keep_models: bool = False,
                   fit: Callable | None = None) -> list[dict]:
    """Train once per fraction (same seed, nested subsets) and write curve.tsv, curve.json and curve.png."""
    from nerkit.train import TrainConfig

    if fit is None:
        from nerkit.train import fit
    if dev is None:
        raise NerkitError("a learning curve needs --dev data to score each model")
    out = check_curve_output(output, fractions, keep_models)
    if isinstance(train, (str, os.PathLike)):
        from nerkit.formats import load

        train = load(train, scheme=scheme)
    if isinstance(dev, (str, os.PathLike)):
        from nerkit.formats import load

        dev = load(dev, scheme=scheme)
    out.mkdir(parents=True, exist_ok=True)
    config = config or TrainConfig()
    rows = []
    for frac, sub in zip(fractions, subsets(train, fractions, seed)):
        cfg = copy.copy(config)
        cfg.seed = seed
        model_dir = out / f"model-{frac:g}" if keep_models else None
        result = fit(sub, dev=dev, output=model_dir, config=cfg)
        rows.append(_row(frac, sub, result.get("metrics", {}).get("dev", {})))
        _write(rows, out)  # after every point, so an interrupted run keeps what it measured
    plot(rows, out / "curve.png")
    return rows


def _columns(rows: Sequence[dict]) -> list[str]:
    """The extra figures worth a column (``EXTRA``)."""
    cols = []
    if any(r.get("dev_overlap_f1") is not None and r["dev_f1"] is not None
           and edges_move(r["dev_f1"], r["dev_overlap_f1"]) for r in rows):
        cols.append("dev_overlap_f1")
    if any(r.get("dev_inner_recall") is not None for r in rows):
        cols.append("dev_inner_recall")
    return cols


def _write(rows: Sequence[dict], out: Path) -> None:
    types = sorted({t for r in rows for t in r.get("dev_f1_per_type", {})})
    cols = ["fraction", "sentences", "tokens", "entities", "dev_f1", "dev_precision", "dev_recall",
            *(c for c in EXTRA if any(c in r for r in rows))]

    def fmt(col: str, v) -> str:
        if v is None:
            return ""
        return f"{v:g}" if col == "fraction" else f"{v:.4f}" if isinstance(v, float) else str(v)

    body = "".join("\t".join([*(fmt(c, r.get(c)) for c in cols),
                              *(fmt("", r.get("dev_f1_per_type", {}).get(t)) for t in types)]) + "\n" for r in rows)
    atomic_write_text(out / "curve.tsv", "\t".join([*cols, *(f"dev_f1:{t}" for t in types)]) + "\n" + body)
    atomic_write_text(out / "curve.json", json.dumps(list(rows), indent=2) + "\n")


def per_doubling(rows: Sequence[dict], key: str = "dev_f1") -> float | None:
    """What the last step of the curve bought per doubling of the annotated sentences, in points of ``key``
    (None: fewer than two sizes scored)."""
    pts = [(r["sentences"], r[key]) for r in rows if r.get(key) is not None]
    if len(pts) < 2 or pts[-1][0] <= pts[-2][0]:
        return None
    (n0, f0), (n1, f1) = pts[-2:]
    return (f1 - f0) * 100 / math.log2(n1 / n0)


def format_curve(rows: Sequence[dict]) -> str:
    """The curve as a small table, and what its last step bought per doubling of the annotated sentences."""
    extra = _columns(rows)

    def pct(v) -> str:
        return "n/a" if v is None else f"{v * 100:.2f}"

    lines = ["fraction  sentences  entities  dev F1" + "".join(f"  {EXTRA[c]:>10}" for c in extra)]
    for r in rows:
        lines.append(f"{r['fraction']:>8g}  {r['sentences']:>9}  {r['entities']:>8}  {pct(r['dev_f1']):>6}"
                     + "".join(f"  {pct(r.get(c)):>10}" for c in extra))
    gains = [(name, per_doubling(rows, key)) for key, name in (("dev_f1", "dev F1"), *((c, EXTRA[c]) for c in extra))]
    gains = [(name, g) for name, g in gains if g is not None]
    if gains:
        a, b = [r["sentences"] for r in rows if r.get("dev_f1") is not None][-2:]
        lines.append(f"from {a:,} to {b:,} sentences, per doubling of them: "
                     + ", ".join(f"{name} {g:+.2f}" for name, g in gains) + " points")
    return "\n".join(lines)


def plot(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """Dev F1 (and the extra figures the table shows) against annotated sentences on a doubling scale, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    xs = [r["sentences"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for key in ("dev_f1", *_columns(rows)):
        ys = [float("nan") if r.get(key) is None else r[key] * 100 for r in rows]
        ax.plot(xs, ys, marker="o", label="dev F1" if key == "dev_f1" else EXTRA[key])
    for r, x in zip(rows, xs):
        if r["dev_f1"] is not None:
            ax.annotate(f"{r['fraction']:g}", (x, r["dev_f1"] * 100), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=8)
    if len(set(xs)) > 1:
        ax.set_xscale("log", base=2)  # equal steps are doublings: a straight line gains the same per doubling
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(xs, [f"{x:,}" for x in xs])  # the sizes trained, not powers of two
    ax.set_xlabel("annotated sentences")
    ax.set_ylabel("dev score (%)")
    ax.set_title("Learning curve")
    ax.grid(True, alpha=0.3)
    if len(ax.get_lines()) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
