"""Wall time of a nested model's end-of-training choices on dev (each decoder with each type's threshold), with the
network's dev outputs reused (``WindowTagger.reusing``) against a network run a trial (what training did from session
12 to 14, when a copy of the dev list missed the tagger's cache). Same model, same choices both ways; alternating
passes, alone on the machine.

    python bench/nested_choices.py MODEL_DIR DEV_FILE [--passes 2]
"""
from __future__ import annotations

import argparse
import contextlib
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("dev")
    ap.add_argument("--passes", type=int, default=2)
    a = ap.parse_args()

    from nerkit import train
    from nerkit.formats import load
    from nerkit.predict import Tagger

    dev = load(a.dev)
    for mode in ("a run a trial", "reused") * a.passes:
        tagger = Tagger.load(a.model, backend="torch")
        tagger.span_head.thresholds = {}
        if mode != "reused":
            tagger.reusing = contextlib.nullcontext
        t0 = time.perf_counter()
        decoder, thresholds, report, _ = train._choose_decoding(tagger, dev)
        print(f"{mode:14} {time.perf_counter() - t0:7.1f} s  decoder {decoder}  thresholds {thresholds}  "
              f"dev F1 {100 * report['f1']:.2f}", flush=True)


if __name__ == "__main__":
    main()
