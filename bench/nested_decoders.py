"""A trained nested model's span decoders side by side on the same weights: each one's dev F1 at the default
threshold (what the dev evaluations during training compare, and what chose the decoder before session 23), then
with the per-type thresholds dev chooses for it (``train._choose_thresholds``, what training now compares), and its
test scores with those: exact F1, overlap F1 (P / R) and inner-entity recall, and the time its span decoding takes a
test sentence (best of 3, the network's outputs given: what the decoder adds to tagging). One network run of each
file. Last, where the saved decoder's missed test inner entities stand in the span head's probabilities (its exact
span and type): over the threshold but left out by decoding, a little under it (a lower threshold could find
them), or far under (the network does not propose them: no decoding can).

    python bench/nested_decoders.py MODEL_DIR DATA_DIR   # DATA_DIR holds valid.jsonl and test.jsonl
"""
from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter
from pathlib import Path


def _figures(report: dict) -> str:
    over = report["overlap"]
    inner = report.get("nested", {}).get("inner", {})
    text = (f"exact {report['f1'] * 100:.2f}  overlap {over['f1'] * 100:.2f} (P {over['precision'] * 100:.1f} / "
            f"R {over['recall'] * 100:.1f})")
    return text + (f"  inner R {inner['recall'] * 100:.1f} %" if inner.get("support") else "")


def _sentence_rows(tagger, docs):
    """Each sentence of ``docs`` with its words' network outputs (from the tagger's cache inside ``reusing``)."""
    for doc, lp in zip(docs, tagger._word_logprobs(docs)):
        k = 0
        for s in doc.sentences:
            yield s, lp[k:k + len(s.words)]
            k += len(s.words)


def _decoding_us(tagger, docs) -> float:
    """Microseconds of span decoding a sentence of ``docs`` (network outputs from the tagger's cache), best of 3."""
    rows = [lp for _, lp in _sentence_rows(tagger, docs)]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for lp in rows:
            tagger.span_entities(lp)
        best = min(best, time.perf_counter() - t0)
    return best * 1e6 / max(1, len(rows))


BANDS = (0.05, 0.01)  # under the threshold: "near" down to 0.05, "low" to 0.01, "none" under that
BAND_NAMES = ("found", "over the threshold, left out", "near", "low", "none")


def inner_bands(tagger, docs) -> "Counter[str]":
    """Inner gold entities (inside another gold entity) of ``docs``: those the tagger's decoder finds, and the missed
    ones by the probability the span head gives their exact span and type (``BAND_NAMES``)."""
    from nerkit.evaluation import _outermost
    from nerkit.scheme import chunks

    head, tags = tagger.span_head, tagger.layers * len(tagger.labels)
    bands: Counter = Counter()
    for s, rows in _sentence_rows(tagger, docs):
        gold = {c for layer in s.all_tags() for c in chunks(layer)}
        inner = gold - _outermost(gold)
        if not inner:
            continue
        found = {(t, a, b) for t, a, b, _ in tagger.span_entities(rows)}
        prob = {(head.types[c], a, b): p for a, b, c, p in head.candidates(rows[:, tags:], BANDS[-1])}
        for e in inner:
            p = prob.get(e, 0.0)
            bands["found" if e in found else "over the threshold, left out" if p >= head.type_threshold(e[0])
                  else "near" if p >= BANDS[0] else "low" if p >= BANDS[1] else "none"] += 1
    return bands


def _bands_line(bands) -> str:
    total = sum(bands.values())
    if not total:
        return "no inner entities in test"
    return (f"test inner entities {total}: "
            + ", ".join(f"{k} {bands[k]} ({bands[k] / total:.1%})" for k in BAND_NAMES)
            + f"  (near: probability {BANDS[0]} to the threshold; low: {BANDS[1]} to {BANDS[0]}; none: under"
              f" {BANDS[1]})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data", type=Path)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")  # the reader's notes on the data (spans split at word edges): said by train

    from machine import describe

    from nerkit import train
    from nerkit.evaluation import evaluate
    from nerkit.formats import load
    from nerkit.predict import Tagger
    from nerkit.spans import DECODERS

    dev, test = load(a.data / "valid.jsonl"), load(a.data / "test.jsonl")
    tagger = Tagger.load(a.model, backend="torch")
    head = tagger.span_head
    if head is None:
        raise SystemExit(f"{a.model}: no span head (a flat model, or --nested-head layers)")
    print(f"{a.model}: saved decoder {head.decoder}, thresholds {head.thresholds}; {describe()}")
    saved = head.decoder, dict(head.thresholds)
    with tagger.reusing():
        for name in DECODERS:
            head.decoder, head.thresholds = name, {}
            plain = evaluate(tagger, dev)["f1"] * 100
            thresholds, report = train._choose_thresholds(tagger, dev)
            tested = evaluate(tagger, test)
            print(f"{name:10}  dev at 0.5 {plain:.2f}  thresholds {thresholds}\n{'':10}  dev  {_figures(report)}\n"
                  f"{'':10}  test {_figures(tested)}  decoding {_decoding_us(tagger, test):.0f} us a sentence",
                  flush=True)
        head.decoder, head.thresholds = saved
        print(_bands_line(inner_bands(tagger, test)))


if __name__ == "__main__":
    main()
