"""A trained nested model's span decoders side by side on the same weights: each one's dev F1 at the default
threshold (what the dev evaluations during training compare, and what chose the decoder before session 23), then
with the per-type thresholds dev chooses for it (``train._choose_thresholds``, what training now compares), and its
test scores with those: exact F1, overlap F1 (P / R) and inner-entity recall, and the time its span decoding takes a
test sentence (best of 3, the network's outputs given: what the decoder adds to tagging). One network run of each
file.

    python bench/nested_decoders.py MODEL_DIR DATA_DIR   # DATA_DIR holds valid.jsonl and test.jsonl
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path


def _figures(report: dict) -> str:
    over = report["overlap"]
    inner = report.get("nested", {}).get("inner", {})
    text = (f"exact {report['f1'] * 100:.2f}  overlap {over['f1'] * 100:.2f} (P {over['precision'] * 100:.1f} / "
            f"R {over['recall'] * 100:.1f})")
    return text + (f"  inner R {inner['recall'] * 100:.1f} %" if inner.get("support") else "")


def _decoding_us(tagger, docs) -> float:
    """Microseconds of span decoding a sentence of ``docs`` (network outputs from the tagger's cache), best of 3."""
    rows = []
    for doc, lp in zip(docs, tagger._word_logprobs(docs)):
        k = 0
        for s in doc.sentences:
            rows.append(lp[k:k + len(s.words)])
            k += len(s.words)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for lp in rows:
            tagger.span_entities(lp)
        best = min(best, time.perf_counter() - t0)
    return best * 1e6 / max(1, len(rows))


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
    with tagger.reusing():
        for name in DECODERS:
            head.decoder, head.thresholds = name, {}
            plain = evaluate(tagger, dev)["f1"] * 100
            thresholds, report = train._choose_thresholds(tagger, dev)
            tested = evaluate(tagger, test)
            print(f"{name:10}  dev at 0.5 {plain:.2f}  thresholds {thresholds}\n{'':10}  dev  {_figures(report)}\n"
                  f"{'':10}  test {_figures(tested)}  decoding {_decoding_us(tagger, test):.0f} us a sentence",
                  flush=True)


if __name__ == "__main__":
    main()
