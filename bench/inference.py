"""Benchmark: nerkit's fast inference path vs ``transformers.pipeline`` on the CoNLL-2003 test sentences.

    python bench/inference.py [MODEL_DIR] [--data test.txt] [--fast EXPORTED_DIR] [--limit N]

The model directory defaults to $NERKIT_MODEL or runs/conll; the data is the CoNLL test file or a data
folder holding conll2003/test.txt, from argv, else $NERKIT_DATA, else ../shared/data beside the repository.
Each path runs in its own subprocess (honest peak RSS, no shared warm caches), on the test sentences given as
raw text (words joined by spaces). Measured per path: words per second over the whole set (best of
``--repeats`` passes), latency of one ~20-word text (p50/p99), peak RSS, and entity-level F1 (seqeval), mapping
predicted character spans back onto the gold words. The HF pipeline is measured at batch sizes 1, 8, 16 and 32
and compared at its best. A "ceiling" row times the int8 model's forward passes alone on the batches nerkit
formed. Prints a markdown table; ``--json FILE`` saves the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
DEFAULT_DATA = ROOT.parent / "shared" / "data"  # as in tests/conftest.py

from machine import machine  # noqa: E402  (re-exported for int8_scales and serve_load)


def resolve_data(path: str | os.PathLike | None) -> Path:
    """The CoNLL test file from a file path, or a data folder holding conll2003/test.txt (or test.txt)."""
    p = Path(path or os.environ.get("NERKIT_DATA") or DEFAULT_DATA)
    if p.is_dir():
        for cand in (p / "conll2003" / "test.txt", p / "test.txt"):
            if cand.is_file():
                return cand
    return p
LATENCY_RUNS = 200


# ----------------------------------------------------------------------------------------- data and scoring
def load_sentences(path: str, limit: int | None = None):
    """Gold sentences of a CoNLL file as (text, word offsets, IOB2 tags)."""
    from nerkit.data import read_conll

    out = []
    for doc in read_conll(path):
        for s in doc.sentences:
            if s.words:
                text, offsets = s.surface()
                out.append((text, offsets, s.tags))
    return out[:limit] if limit else out


def spans_to_word_tags(offsets, spans) -> list[str]:
    """IOB2 tags of gold words from predicted (start, end, label) character spans (first overlap wins)."""
    tags = ["O"] * len(offsets)
    for start, end, label in sorted(spans):
        inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        if not inside or any(tags[i] != "O" for i in inside):
            continue
        tags[inside[0]] = f"B-{label}"
        for i in inside[1:]:
            tags[i] = f"I-{label}"
    return tags


def f1(sentences, spans_per_text) -> dict:
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold = [tags for _, _, tags in sentences]
    pred = [spans_to_word_tags(offs, spans) for (_, offs, _), spans in zip(sentences, spans_per_text)]
    return {"f1": f1_score(gold, pred), "precision": precision_score(gold, pred), "recall": recall_score(gold, pred)}


def single_text(sentences) -> str:
    """A fixed ~20-word test sentence with entities (the first with 19 words and two or more entities)."""
    for text, _, tags in sentences:
        if len(tags) == 19 and sum(t.startswith("B-") for t in tags) >= 2:
            return text
    return max(sentences, key=lambda s: -abs(len(s[2]) - 19))[0]


# ----------------------------------------------------------------------------------------------- workers
def _pipeline_runner(model_dir: str, batch_size: int):
    from transformers import TokenClassificationPipeline, pipeline

    # The stock pipeline as the speed reference (nerkit model directories name their own pipeline, which
    # transformers runs only with trust_remote_code=True; see nerkit/hf_pipeline.py).
    pipe = pipeline("token-classification", model=model_dir, aggregation_strategy="simple", device=-1,
                    pipeline_class=TokenClassificationPipeline)

    def run(texts):
        res = pipe(texts, batch_size=batch_size)
        if isinstance(texts, str):
            res = [res]
        return [[(int(e["start"]), int(e["end"]), e["entity_group"]) for e in r] for r in res]

    return run, "torch fp32"


def _nerkit_runner(model_dir: str, backend: str):
    from nerkit.predict import Tagger

    tagger = Tagger.load(model_dir, backend=backend)

    def run(texts):
        if isinstance(texts, str):
            texts = [texts]
        return [[(e.start, e.end, e.label) for e in es] for es in tagger.predict(texts)]

    engine = tagger.engine
    name = engine.name + (" bf16" if getattr(engine, "bf16", False) else "")
    return run, name


def _model_only_runner(model_dir: str, backend: str):
    """The model's forward passes alone: replays the batches ``Tagger`` formed for the same texts, so that
    tokenization, windowing and decoding cost nothing. A ceiling for the whole path, not a way to tag."""
    from nerkit.predict import Tagger

    tagger = Tagger.load(model_dir, backend=backend)
    engine, forward, recorded = tagger.engine, tagger.engine.logits, {}

    def prepare(texts):
        batches = []
        engine.logits = lambda b: (batches.append(b), forward(b))[1]
        try:
            spans = [[(e.start, e.end, e.label) for e in es] for es in tagger.predict([texts] if isinstance(texts, str) else texts)]
        finally:
            engine.logits = forward
        recorded[texts if isinstance(texts, str) else tuple(texts)] = (batches, spans)

    def run(texts):
        batches, spans = recorded[texts if isinstance(texts, str) else tuple(texts)]
        for b in batches:
            forward(b)
        return spans

    run.prepare = prepare
    return run, engine.name + ", model only"


def worker(spec: dict) -> dict:
    import numpy as np

    sentences = load_sentences(spec["data"], spec.get("limit"))
    texts = [t for t, _, _ in sentences]
    words = sum(len(tags) for _, _, tags in sentences)
    t0 = time.perf_counter()
    if spec["kind"] == "pipeline":
        run, engine = _pipeline_runner(spec["model"], spec["batch_size"])
    elif spec["kind"] == "ceiling":
        run, engine = _model_only_runner(spec["model"], spec["backend"])
        for t in (texts[:32], texts, single_text(sentences)):
            run.prepare(t)
    else:
        if spec["backend"] == "torch" and spec.get("bf16") is not None:
            os.environ["NERKIT_BF16"] = "1" if spec["bf16"] else "0"
        run, engine = _nerkit_runner(spec["model"], spec["backend"])
    load_s = time.perf_counter() - t0
    run(texts[:32])  # warm-up (graph initialisation, allocator, caches)
    passes = []
    for _ in range(max(1, spec.get("repeats", 1))):  # best of N: the fastest pass is the least disturbed one
        t0 = time.perf_counter()
        spans = run(texts)
        passes.append(time.perf_counter() - t0)
    total_s = min(passes)
    one = single_text(sentences)
    for _ in range(10):
        run(one)
    lat = []
    for _ in range(spec.get("latency_runs", LATENCY_RUNS)):
        t0 = time.perf_counter()
        run(one)
        lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1000
    return {"engine": engine, "load_s": round(load_s, 2), "seconds": round(total_s, 2),
            "passes_s": [round(x, 2) for x in passes], "texts": len(texts),
            "words": words, "words_per_s": words / total_s, "p50_ms": float(np.percentile(lat_ms, 50)),
            "p99_ms": float(np.percentile(lat_ms, 99)), "single_words": len(one.split()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **f1(sentences, spans)}


def cpu_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all processes), from /proc/stat."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def run_worker(spec: dict) -> dict:
    """Run one measurement in a fresh interpreter; its last stdout line is the JSON result.

    Also reports how busy the other processes kept the CPUs meanwhile (``other_cpu``: 0 = idle machine,
    1 = every core taken by someone else), so that a run on a shared machine says so.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    busy0, own0, t0 = cpu_busy_s(), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    busy1, own1, wall = cpu_busy_s(), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"worker {spec} failed:\n{proc.stderr[-3000:]}")
    own = (own1.ru_utime - own0.ru_utime) + (own1.ru_stime - own0.ru_stime)
    other = max(0.0, (busy1 - busy0) - own) / (wall * max(1, len(os.sched_getaffinity(0))))
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "other_cpu": other}


# ------------------------------------------------------------------------------------------------ report

def table(rows: list[dict], base: dict, ref_f1: float | None) -> str:
    head = ("| path | engine | words/s | × pipeline | single-text p50 ms | p99 ms | p50 ÷ pipeline | peak RSS MB "
            "| F1 | ΔF1 vs nerkit torch fp32 (points) | CPU taken by other processes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        d = f"{100 * (r['f1'] - ref_f1):+.2f}" if ref_f1 is not None else "n/a"
        lines.append(f"| {r['label']} | {r['engine']} | {r['words_per_s']:,.0f} | {r['words_per_s'] / base['words_per_s']:.2f}x "
                     f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['p50_ms'] / base['p50_ms']:.2f} "
                     f"| {r['peak_rss_mb']:,.0f} | {100 * r['f1']:.2f} | {d} | {100 * r.get('other_cpu', 0):.0f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default=os.environ.get("NERKIT_MODEL", str(ROOT / "runs" / "conll")))
    ap.add_argument("data_pos", nargs="?", help="CoNLL test file (or --data, or $NERKIT_DATA)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--fast", help="an exported model dir (default: MODEL if exported, else export to a temp dir)")
    ap.add_argument("--batch-sizes", default="1,8,16,32", help="HF pipeline batch sizes to try")
    ap.add_argument("--backends", default="onnx-int8,onnx,torch", help="nerkit backends to measure")
    ap.add_argument("--ceiling", default="onnx-int8",
                    help="also time this backend's model alone on the same batches ('' to skip)")
    ap.add_argument("--limit", type=int, help="first N sentences only (quick runs)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the texts per path; the best counts")
    ap.add_argument("--json", help="write all figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return 0
    data = str(resolve_data(a.data or a.data_pos))
    model = Path(a.model)
    if not (model / "config.json").is_file():
        raise SystemExit(f"{model}: not a model directory (pass MODEL_DIR or set NERKIT_MODEL)")
    if not Path(data).is_file():
        raise SystemExit(f"{data}: no such CoNLL file (pass it or set NERKIT_DATA)")

    tmp = None
    fast = Path(a.fast) if a.fast else model
    export_s = None
    if not (fast / "model.int8.onnx").is_file() and not (fast / "model.onnx").is_file():
        from nerkit.export import export

        tmp = tempfile.TemporaryDirectory(prefix="nerkit-bench-")
        fast = Path(tmp.name) / "model"
        print(f"exporting {model} to {fast} ...", file=sys.stderr)
        t0 = time.perf_counter()
        export(model, fast, copy_weights=False)
        export_s = time.perf_counter() - t0

    info = machine()
    load0 = os.getloadavg()
    base_spec = {"data": data, "limit": a.limit, "repeats": a.repeats}
    rows = []
    for bs in [int(b) for b in a.batch_sizes.split(",") if b]:
        print(f"pipeline batch_size={bs} ...", file=sys.stderr)
        r = run_worker({**base_spec, "kind": "pipeline", "model": str(model), "batch_size": bs})
        rows.append({"label": f"HF pipeline (batch {bs})", "kind": "pipeline", "batch_size": bs, **r})
    for backend in [b for b in a.backends.split(",") if b]:
        print(f"nerkit backend={backend} ...", file=sys.stderr)
        src = model if backend == "torch" else fast
        # the reference row is fp32 PyTorch (no bf16 autocast even where the CPU has it)
        r = run_worker({**base_spec, "kind": "nerkit", "model": str(src), "backend": backend, "bf16": False})
        rows.append({"label": f"nerkit {backend}", "kind": "nerkit", "backend": backend, **r})
    if a.ceiling:
        print(f"nerkit backend={a.ceiling}, model only ...", file=sys.stderr)
        r = run_worker({**base_spec, "kind": "ceiling", "model": str(fast), "backend": a.ceiling})
        rows.append({"label": f"nerkit {a.ceiling}, model only (ceiling)", "kind": "ceiling", "backend": a.ceiling, **r})
    load1 = os.getloadavg()

    pipes = [r for r in rows if r["kind"] == "pipeline"]
    best = max(pipes, key=lambda r: r["words_per_s"])
    ref = next((r for r in rows if r.get("backend") == "torch"), None)
    ref_f1 = ref["f1"] if ref else None
    n = rows[0]
    print(f"\n## nerkit inference benchmark: {model.name}, CoNLL-2003 test ({n['texts']} sentences, {n['words']} words)\n")
    print(f"Machine: {info['cpu']}, {info['cores']} cores ({', '.join(info['isa'])}); python {info['python']}, "
          f"torch {info['torch']}, transformers {info['transformers']}, onnxruntime {info['onnxruntime']}. "
          f"Load average before/after: {load0[0]:.2f}/{load1[0]:.2f} (includes this benchmark). "
          f"Throughput: best of {a.repeats} passes over all texts, for every path alike.")
    print(f"Single text ({n['single_words']} words): `{single_text(load_sentences(data, a.limit))}`\n")
    print(table(rows, best, ref_f1))
    fastest = max((r for r in rows if r["kind"] == "nerkit"), key=lambda r: r["words_per_s"])
    print(f"\nBaseline: HF pipeline at its best batch size ({best['batch_size']}): {best['words_per_s']:,.0f} words/s, "
          f"single-text p50 {best['p50_ms']:.1f} ms.")
    for r in [x for x in rows if x["kind"] == "nerkit"]:
        ok_speed = r["words_per_s"] >= 5 * best["words_per_s"]
        ok_lat = r["p50_ms"] <= 0.5 * best["p50_ms"]
        f1_note = "F1 not compared (no torch row)" if ref_f1 is None else (
            f"F1 {100 * (r['f1'] - ref_f1):+.2f} points vs nerkit torch fp32 (target within 0.3: "
            f"{'met' if abs(r['f1'] - ref_f1) * 100 <= 0.3 else 'NOT met'})")
        print(f"- {r['label']}: throughput {r['words_per_s'] / best['words_per_s']:.2f}x (target ≥5x: "
              f"{'met' if ok_speed else 'NOT met'}), p50 {r['p50_ms'] / best['p50_ms']:.2f}x of the pipeline's "
              f"(target ≤0.5: {'met' if ok_lat else 'NOT met'}), {f1_note}")
    for r in [x for x in rows if x["kind"] == "ceiling"]:
        print(f"- ceiling: {r['backend']}'s forward passes alone, on the batches nerkit formed (tokenization, windowing "
              f"and decoding free): {r['words_per_s']:,.0f} words/s = {r['words_per_s'] / best['words_per_s']:.2f}x "
              "the pipeline; no change outside the model can take the path past this")
    if export_s is not None:
        print(f"\n(The model was exported for this run in {export_s:.1f} s.)")
    other = max(r.get("other_cpu", 0) for r in rows)
    if other > 0.1:
        print(f"\nNote: other processes took up to {100 * other:.0f}% of the CPUs during these measurements; figures "
              "are lower and noisier than on an idle machine (PyTorch's OpenMP threads suffer more from contention "
              "than ONNX Runtime's).")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": info, "rows": rows, "fastest": fastest["label"],
                                            "baseline": best["label"], "load_avg": [load0, load1]}, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
