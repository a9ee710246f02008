"""Data-parallel training against one process: the same command, 1 process, then N under torchrun (CPU, gloo).

    python bench/distributed.py [--data ../shared/data/conll2003] [--sentences 1000] [--dev-sentences 500]
                                [--processes 2] [--settings "--epochs 3 ..."] [--out bench/results/distributed.json]

Training data: the first CoNLL-2003 training documents up to ``--sentences`` sentences; dev: the first
documents of valid.txt up to ``--dev-sentences`` (whole documents, so document context is as in full runs).
Settings: 3 epochs of 2,048-token batches at lr 3e-4, one evaluation an epoch (the defaults before the
size-driven budget; the budget picks 12 epochs of 256-token batches for 1,000 sentences, 8x the steps, too
long on 2 shared cores). Prints the dev F1 of each run (the target: within 1 point). Wall times are printed but mean little on a
shared machine, and N processes on N cores do the same steps as 1 process on N threads.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402
DOCSTART = "-DOCSTART- -X- -X- O\n"


def first_documents(src: Path, dst: Path, sentences: int) -> int:
    """Copy whole documents from the start of ``src`` until at least ``sentences`` sentences; return the count."""
    docs = src.read_text(encoding="utf-8").split(DOCSTART)[1:]
    keep, n = [], 0
    for d in docs:
        keep.append(d)
        n += sum(1 for block in d.split("\n\n") if block.strip())
        if n >= sentences:
            break
    dst.write_text("".join(DOCSTART + d for d in keep), encoding="utf-8")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data_root = os.environ.get("NERKIT_DATA") or str(ROOT.parent / "shared" / "data")
    ap.add_argument("--data", default=str(Path(data_root) / "conll2003"))
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--dev-sentences", type=int, default=500)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--settings", default="--epochs 3 --batch-tokens 2048 --lr 3e-4 --evals-per-epoch 1",
                    help="nerkit train options of both runs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "distributed.json"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nerkit-ddp-"))
    n_train = first_documents(Path(a.data) / "train.txt", tmp / "train.txt", a.sentences)
    n_dev = first_documents(Path(a.data) / "valid.txt", tmp / "dev.txt", a.dev_sentences)
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    train = ["-m", "nerkit.cli", "train", "--train", str(tmp / "train.txt"), "--dev", str(tmp / "dev.txt"),
             *a.settings.split()]
    rows = []
    for n in (1, a.processes):
        launcher = [] if n == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n)]
        out = tmp / f"model-{n}"
        t = time.time()
        with open(tmp / f"log-{n}.txt", "w") as log:
            subprocess.run([sys.executable, *launcher, *train, "--output", str(out)], stdout=log,
                           stderr=subprocess.STDOUT, env=env, check=True)
        meta = json.loads((out / "nerkit.json").read_text())
        rows.append({"processes": n, "dev_f1": meta["metrics"]["dev"]["f1"], "steps": meta["steps"],
                     "history": [h["dev_f1"] for h in meta["history"]], "wall_s": round(time.time() - t, 1)})
        print(json.dumps(rows[-1]), flush=True)
    result = {"train_sentences": n_train, "dev_sentences": n_dev, "settings": a.settings, "runs": rows,
              "dev_f1_gap_points": round(abs(rows[0]["dev_f1"] - rows[1]["dev_f1"]) * 100, 2),
              "machine": describe(), "data_dir": str(tmp)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"dev F1: 1 process {rows[0]['dev_f1'] * 100:.2f}, {a.processes} processes {rows[1]['dev_f1'] * 100:.2f}")


if __name__ == "__main__":
    main()
