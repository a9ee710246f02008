"""The transformers pipeline on a nerkit model vs nerkit's Tagger, on the CoNLL-2003 test sentences.

    python bench/hf_pipeline.py MODEL_DIR [--data ../shared/data/conll2003/test.txt] [--limit N]

The model directory is copied and given nerkit's pipeline (``add_hf_pipeline``, as ``nerkit train`` now does).
Each sentence is tagged as raw text (its words joined by spaces) by: nerkit's Tagger (fp32); the directory's own
pipeline (``trust_remote_code=True``); and the stock ``TokenClassificationPipeline`` (forced, as transformers ran
it before: casing ids all zero) with ``aggregation_strategy="simple"``. Scores are entity-level
micro F1 of exact character spans against the gold entities, and against the Tagger's entities.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def f1(gold: list[set], pred: list[set]) -> float:
    tp = sum(len(g & p) for g, p in zip(gold, pred))
    ng, np_ = sum(map(len, gold)), sum(map(len, pred))
    return round(200 * tp / (ng + np_), 2) if ng + np_ else 100.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/conll2003/test.txt"))
    ap.add_argument("--limit", type=int)
    ap.add_argument("--out")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import TokenClassificationPipeline, pipeline

    from nerkit.data import load
    from nerkit.hf_pipeline import add_hf_pipeline
    from nerkit.predict import Tagger
    from nerkit.scheme import chunks

    texts, gold = [], []
    for doc in load(a.data):
        for s in doc.sentences:
            starts, pos = [], 0
            for w in s.words:
                starts.append(pos)
                pos += len(w) + 1
            texts.append(" ".join(s.words))
            gold.append({(starts[i], starts[j - 1] + len(s.words[j - 1]), lab) for lab, i, j in chunks(s.tags)})
    if a.limit:
        texts, gold = texts[: a.limit], gold[: a.limit]
    tmp = Path(tempfile.mkdtemp()) / Path(a.model).name
    shutil.copytree(a.model, tmp)
    add_hf_pipeline(tmp)
    out: dict = {"model": Path(a.model).name, "sentences": len(texts)}
    runs = {}
    t = time.time()
    tagger = Tagger.load(tmp, backend="torch", bf16="off")
    runs["nerkit Tagger"] = [{(e.start, e.end, e.label) for e in ents} for ents in tagger(texts)]
    out["seconds"] = {"nerkit Tagger": round(time.time() - t, 1)}
    try:
        pipeline("token-classification", model=str(tmp))
        out["refuses_without_trust_remote_code"] = False
    except ValueError as exc:
        out["refuses_without_trust_remote_code"] = "trust_remote_code" in str(exc)
    variants = {
        "pipeline, trust_remote_code=True": dict(trust_remote_code=True),
        "stock pipeline (zero casing ids), simple": dict(pipeline_class=TokenClassificationPipeline,
                                                         aggregation_strategy="simple"),
    }
    for name, kw in variants.items():
        nlp = pipeline("token-classification", model=str(tmp), device="cpu", **kw)
        t = time.time()
        res = nlp(texts, batch_size=1)
        out["seconds"][name] = round(time.time() - t, 1)
        runs[name] = [{(e["start"], e["end"], e.get("entity_group", e.get("entity"))) for e in ents} for ents in res]
    out["f1_vs_gold"] = {k: f1(gold, v) for k, v in runs.items()}
    out["f1_vs_tagger"] = {k: f1(runs["nerkit Tagger"], v) for k, v in runs.items() if k != "nerkit Tagger"}
    out["texts_differing_from_tagger"] = {k: sum(x != y for x, y in zip(runs["nerkit Tagger"], v))
                                          for k, v in runs.items() if k != "nerkit Tagger"}
    text = json.dumps(out, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    shutil.rmtree(tmp.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
