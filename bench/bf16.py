"""What bf16 autocast costs in F1 on CPU: the same model evaluated fp32 vs bf16, and the same run trained both ways.

    python bench/bf16.py inference MODEL_DIR [--data ../shared/data/conll2003/test.txt]
    python bench/bf16.py train [--data ../shared/data/conll2003] [--sentences 2000]

``inference`` evaluates one model twice in one process (bf16 autocast off, then on). ``train`` fine-tunes the
default model on the first N training sentences twice (same seed, bf16 autocast on and off) and scores both
on dev and test with fp32 inference, so only the training precision differs. bf16 needs a CPU with AVX512-BF16
or AMX (``--bf16 on`` elsewhere runs, emulated and slowly). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine  # noqa: E402


def inference(a: argparse.Namespace) -> dict:
    from nerkit.data import load
    from nerkit.evaluation import score
    from nerkit.predict import Tagger

    docs = load(a.data)
    gold = [s.tags for d in docs for s in d.sentences]
    out = {"model": Path(a.model).name, "data": Path(a.data).name, "machine": machine()}
    preds = {}
    for setting in ("off", "on"):
        tagger = Tagger.load(a.model, backend="torch", bf16=setting)
        t = time.time()
        preds[setting] = [tags for doc in tagger.tag_documents(docs) for tags in doc]
        rep = score(gold, preds[setting])
        out[f"bf16_{setting}"] = {"f1": round(rep["f1"] * 100, 2), "precision": round(rep["precision"] * 100, 2),
                                  "recall": round(rep["recall"] * 100, 2), "seconds": round(time.time() - t, 1)}
    same = sum(x == y for a_, b_ in zip(preds["off"], preds["on"]) for x, y in zip(a_, b_))
    out["tag_agreement"] = round(same / max(1, sum(map(len, gold))), 5)
    out["f1_loss_bf16"] = round(out["bf16_off"]["f1"] - out["bf16_on"]["f1"], 2)
    return out


def train(a: argparse.Namespace) -> dict:
    from nerkit.data import load
    from nerkit.evaluation import evaluate
    from nerkit.predict import Tagger
    from nerkit.train import TrainConfig, fit

    try:
        from nerkit.engines import TorchEngine
    except ImportError:  # before the engines module
        from nerkit.predict import TorchEngine
    docs, n = [], 0
    for d in load(Path(a.data) / "train.txt"):
        if n >= a.sentences:
            break
        docs.append(d)
        n += len(d.sentences)
    out = {"train_sentences": n, "machine": machine()}
    for setting in ("on", "off"):
        t = time.time()
        res = fit(docs, dev=str(Path(a.data) / "valid.txt"),
                  output=str(Path(a.save) / f"bf16_{setting}") if a.save else None,
                  config=TrainConfig(model=a.model, bf16=setting, seed=a.seed, progress=False, epochs=a.epochs))
        train_s = time.time() - t
        meta = res["meta"]
        meta = meta if isinstance(meta, dict) else meta.to_dict()
        tagger = Tagger(TorchEngine(res["model"], bf16=False), res["tokenizer"], meta["labels"], meta)  # fp32 scoring
        row = {"train_seconds": round(train_s, 1), "steps": meta["steps"], "bf16_used": meta["bf16"]}
        for split, f in (("dev", "valid.txt"), ("test", "test.txt")):
            row[f"{split}_f1"] = round(evaluate(tagger, load(str(Path(a.data) / f)))["f1"] * 100, 2)
        out[f"train_bf16_{setting}"] = row
    out["dev_f1_loss_bf16"] = round(out["train_bf16_off"]["dev_f1"] - out["train_bf16_on"]["dev_f1"], 2)
    out["test_f1_loss_bf16"] = round(out["train_bf16_off"]["test_f1"] - out["train_bf16_on"]["test_f1"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    i = sub.add_parser("inference")
    i.add_argument("model")
    i.add_argument("--data", default=str(ROOT.parent / "shared/data/conll2003/test.txt"))
    t = sub.add_parser("train")
    t.add_argument("--data", default=str(ROOT.parent / "shared/data/conll2003"))
    t.add_argument("--sentences", type=int, default=2000)
    t.add_argument("--epochs", type=float, default=None)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--model", help="base model (default: nerkit's default)")
    t.add_argument("--save", help="keep both models in this folder (bf16_on/, bf16_off/)")
    ap.add_argument("--out")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    res = inference(a) if a.what == "inference" else train(a)
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
