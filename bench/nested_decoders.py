"""A trained nested model's span decoders side by side on the same weights: each one's dev F1 at the default
threshold (what the dev evaluations during training compare, and what chose the decoder before session 23), then
with the per-type thresholds dev chooses for it (``train._choose_thresholds``, what training now compares), and its
test scores with those: exact F1, overlap F1 (P / R) and inner-entity recall. One network run of each file.

    python bench/nested_decoders.py MODEL_DIR DATA_DIR   # DATA_DIR holds valid.jsonl and test.jsonl
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path


def _figures(report: dict) -> str:
    over = report["overlap"]
    inner = report.get("nested", {}).get("inner", {})
    text = (f"exact {report['f1'] * 100:.2f}  overlap {over['f1'] * 100:.2f} (P {over['precision'] * 100:.1f} / "
            f"R {over['recall'] * 100:.1f})")
    return text + (f"  inner R {inner['recall'] * 100:.1f} %" if inner.get("support") else "")


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
            print(f"{name:10}  dev at 0.5 {plain:.2f}  thresholds {thresholds}\n"
                  f"{'':10}  dev  {_figures(report)}\n{'':10}  test {_figures(evaluate(tagger, test))}", flush=True)


if __name__ == "__main__":
    main()
