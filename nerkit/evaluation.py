"""Entity-level evaluation (seqeval, every word of the data) with an error breakdown."""
from __future__ import annotations

import os
from collections import Counter
from typing import Sequence

from nerkit.data import check_labelled
from nerkit.scheme import chunks
from nerkit.types import Document

ERROR_KINDS = ("missed", "spurious", "wrong_type", "wrong_boundary", "wrong_type_and_boundary")


def error_breakdown(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Classify every non-exact gold/predicted entity: missed, spurious, wrong type, wrong boundary, or both."""
    counts: Counter = Counter()
    by_type: dict[str, Counter] = {}
    for g_tags, p_tags in zip(gold, pred):
        g = set(chunks(g_tags))
        p = set(chunks(p_tags))
        exact = g & p
        g_rest, p_rest = g - exact, p - exact
        matched_p = set()
        for gl, gs, ge in sorted(g_rest, key=lambda c: c[1]):
            overlaps = [c for c in p_rest if c[1] < ge and gs < c[2]]
            if not overlaps:
                kind = "missed"
            else:
                same_bounds = [c for c in overlaps if (c[1], c[2]) == (gs, ge)]
                same_label = [c for c in overlaps if c[0] == gl]
                kind = "wrong_type" if same_bounds else "wrong_boundary" if same_label else "wrong_type_and_boundary"
                matched_p.update(overlaps)
            counts[kind] += 1
            by_type.setdefault(gl, Counter())[kind] += 1
        for c in p_rest - matched_p:
            counts["spurious"] += 1
            by_type.setdefault(c[0], Counter())["spurious"] += 1
    return {"total": {k: counts[k] for k in ERROR_KINDS},
            "per_type": {t: {k: c[k] for k in ERROR_KINDS} for t, c in sorted(by_type.items())}}


def score(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """seqeval micro and per-type precision/recall/F1 (default mode, IOB2) plus the error breakdown."""
    from seqeval.metrics import classification_report

    gold, pred = [list(s) for s in gold], [list(s) for s in pred]
    if any(len(g) != len(p) for g, p in zip(gold, pred)) or len(gold) != len(pred):
        raise ValueError("gold and predicted tag sequences differ in length")
    rep = classification_report(gold, pred, output_dict=True, zero_division=0)
    micro = rep.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {t: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                    "support": int(v["support"])}
                for t, v in rep.items() if not t.endswith(" avg")}
    return {
        "precision": float(micro["precision"]), "recall": float(micro["recall"]), "f1": float(micro["f1-score"]),
        "support": int(micro["support"]), "per_type": per_type,
        "sentences": len(gold), "words": sum(len(s) for s in gold),
        "errors": error_breakdown(gold, pred),
    }


def evaluate(tagger, docs: Sequence[Document], name: str | None = None) -> dict:
    """Tag every sentence of labelled documents with ``tagger`` (document context, windows merged) and score it.

    Read files first with ``nerkit.formats.load`` (any format nerkit reads); ``name`` is recorded as the report's
    ``data``.
    """
    if isinstance(docs, (str, os.PathLike)):
        raise TypeError("evaluate() takes documents: read the file with nerkit.formats.load(path) first")
    docs = list(docs)
    check_labelled(docs, "evaluation")
    pred_docs = tagger.tag_documents(docs)
    gold, pred = [], []
    for doc, p_doc in zip(docs, pred_docs):
        for s, p in zip(doc.sentences, p_doc):
            if s.tags is None:
                continue
            gold.append(s.tags)
            pred.append(p)
    report = score(gold, pred)
    if name is not None:
        report["data"] = str(name)
    return report


def format_report(report: dict) -> str:
    """A plain-text table of a report: per type, micro average, then the error breakdown."""
    lines = [f"{'type':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for t, v in report["per_type"].items():
        lines.append(f"{t:<16}{v['precision'] * 100:>10.2f}{v['recall'] * 100:>10.2f}{v['f1'] * 100:>10.2f}{v['support']:>10}")
    lines.append(f"{'micro avg':<16}{report['precision'] * 100:>10.2f}{report['recall'] * 100:>10.2f}"
                 f"{report['f1'] * 100:>10.2f}{report['support']:>10}")
    e = report["errors"]["total"]
    lines.append("errors: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in e.items()))
    lines.append(f"({report['sentences']} sentences, {report['words']} words, all evaluated)")
    return "\n".join(lines)
