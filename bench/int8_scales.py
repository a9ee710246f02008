"""Int8 activation scales: constant (calibrated, what ``nerkit export`` writes) vs dynamic (one per batch) vs fp32.

    python bench/int8_scales.py EXPORTED_DIR [--data test.txt] [--repeats 3]

On the CoNLL-2003 test sentences (raw text), for the fp32 graph, the dynamic int8 graph (rebuilt from the fp32
graph with ``export.quantize_model``) and the exported int8 graph with constant activation scales: engine-only
words/s on the batches nerkit forms (best of ``--repeats`` passes, the graphs taking turns), entity F1 (seqeval,
as bench/inference.py), and how many texts get other entities when tagged alone than in nerkit's batches.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main(argv=None) -> int:
    from inference import f1, load_sentences, machine, resolve_data

    from nerkit import align
    from nerkit.engines import OnnxEngine
    from nerkit.export import quantize_model
    from nerkit.predict import Tagger

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="an exported model directory (nerkit export)")
    ap.add_argument("--data", help="CoNLL test file or data folder (default: $NERKIT_DATA, else ../shared/data)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--alone", type=int, default=500, help="texts tagged alone too (batch-dependence check)")
    a = ap.parse_args(argv)
    model = Path(a.model)
    sents = load_sentences(str(resolve_data(a.data)))
    texts = [t for t, _, _ in sents]
    words = sum(len(offs) for _, offs, _ in sents)
    tagger = Tagger.load(model, backend="onnx")
    with tempfile.TemporaryDirectory() as tmp:
        dyn = Path(tmp) / "model.dynamic.onnx"
        quantize_model(model / "model.onnx", dyn)
        graphs = {"fp32": model / "model.onnx", "int8, dynamic activation scales": dyn,
                  "int8, constant activation scales": model / "model.int8.onnx"}
        engines = {k: OnnxEngine(p, k) for k, p in graphs.items()}
        docs = [tagger._text_doc(t, i) for i, t in enumerate(texts)]
        enc = align.encode_documents(docs, tagger.tokenizer, None)
        wins = align.make_windows(enc, tagger.max_tokens, tagger.target_tokens, tagger.sentence_level)
        tok = tagger.tokenizer
        feats = [align.window_feature(enc[w.doc], w, tok.cls_token_id, tok.sep_token_id, tagger.case_signal)
                 for w in wins]
        lengths = [len(f.input_ids) for f in feats]
        batches = [align.collate([feats[i] for i in b], tok.pad_token_id)
                   for b in align.length_grouped_batches(lengths, tagger.batch_tokens, None)]
        best = dict.fromkeys(engines, float("inf"))
        for e in engines.values():
            e.logits(batches[0])
        for _ in range(a.repeats):
            for k, e in engines.items():
                t0 = time.perf_counter()
                for b in batches:
                    e.logits(b)
                best[k] = min(best[k], time.perf_counter() - t0)
        rows = []
        for k, e in engines.items():
            tagger.engine = e
            ents = tagger.predict(texts)
            score = f1(sents, [[(x.start, x.end, x.label) for x in es] for es in ents])["f1"] * 100
            step = max(1, len(texts) // a.alone)
            differ = sum(tagger.predict([texts[i]])[0] != ents[i] for i in range(0, len(texts), step))
            rows.append((k, words / best[k], score, differ, len(range(0, len(texts), step))))
    info = machine()
    print(f"## int8 activation scales: {model.name}, CoNLL-2003 test ({len(texts)} sentences, {words} words)\n")
    print(f"Machine: {info['cpu']}, {info['cores']} cores ({', '.join(info['isa'])}); onnxruntime "
          f"{info['onnxruntime']}. Engine only, nerkit's batches ({len(batches)}), best of {a.repeats}.\n")
    print("| graph | words/s | × fp32 | F1 | ΔF1 vs fp32 "
          "| texts whose entities (spans, labels or scores) change when tagged alone |")
    print("|---|---|---|---|---|---|")
    for k, wps, score, differ, n in rows:
        print(f"| {k} | {wps:,.0f} | {wps / rows[0][1]:.2f}x | {score:.2f} | {score - rows[0][2]:+.2f} | "
              f"{differ} of {n} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
