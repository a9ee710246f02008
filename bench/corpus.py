"""Benchmark: `nerkit tag-corpus` (local runner, Ray runner) vs the plain ``Tagger`` in one process, same 2 cores.

    python bench/corpus.py [MODEL_DIR] [--data test.txt] [--words 200000] [--backend onnx] [--md FILE]

The corpus is the CoNLL-2003 test sentences as raw text (words joined by spaces), repeated until it holds at least
``--words`` words, written as ``--files`` .txt files. Three runs, one after the other in this process, repeated
``--rounds`` times in alternating order (best of each reported):
  - Tagger: ``Tagger.load`` + ``predict`` on every text (the reference; the ONNX engine uses every core);
  - local:  ``tag_corpus(runner="local")``: read the files, tag, write Parquet parts and the manifest;
  - ray:    ``tag_corpus(runner="ray")`` on a local Ray cluster of the same cores (``ray.init(num_cpus=N)``),
            N actors x 1 thread; the cluster's start-up is timed apart (a long-lived cluster pays it once).
Each time includes loading the model. Prints words/s, the ratios to Tagger, and checks that all three give
identical entities (fp32 ONNX is batch-invariant; int8 quantizes activations per batch, so it is not).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402
DEFAULT_DATA = Path(os.environ.get("NERKIT_DATA") or ROOT.parent / "shared" / "data") / "conll2003" / "test.txt"


def build_corpus(conll: Path, words: int, files: int, out: Path) -> list[Path]:
    """Write the test sentences, repeated to at least ``words`` words, round-robin into ``files`` .txt files."""
    from nerkit.data import read_conll

    sents = [" ".join(s.words) for d in read_conll(conll) for s in d.sentences if s.words]
    texts, n = [], 0
    while n < words:
        for s in sents:
            texts.append(s)
            n += len(s.split())
            if n >= words:
                break
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"corpus-{i:02d}.txt" for i in range(files)]
    for i, p in enumerate(paths):
        p.write_text("\n".join(texts[i::files]) + "\n", encoding="utf-8")
    return paths


def read_output(out: Path) -> dict[tuple[str, int], list[tuple]]:
    """(source, row) -> entities as (start, end, label, text, score) from a tag-corpus output folder."""
    import pyarrow.parquet as pq

    got = {}
    for part in sorted(out.glob("part-*.parquet")):
        t = pq.read_table(part, columns=["source", "row", "entities"]).to_pylist()
        for r in t:
            key = (r["source"], r["row"])
            assert key not in got, f"row {key} written twice"
            got[key] = [(e["start"], e["end"], e["label"], e["text"], round(e["score"], 4)) for e in r["entities"]]
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=os.environ.get("NERKIT_MODEL", "runs/conll-fast"))
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--words", type=int, default=200_000)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--backend", default="onnx", help="onnx (fp32, batch-invariant: entities must match), ...")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each engine (the order alternates)")
    ap.add_argument("--md", help="write the results table here (markdown)")
    a = ap.parse_args()

    from nerkit.engines import available_cores
    from nerkit.predict import Tagger
    from nerkit.tagcorpus import tag_corpus

    cores = available_cores()
    work = Path(tempfile.mkdtemp(prefix="nerkit-bench-corpus-"))
    try:
        paths = build_corpus(Path(a.data), a.words, a.files, work / "in")
        lines = {p: p.read_text(encoding="utf-8").splitlines() for p in paths}
        texts = [t for p in paths for t in lines[p]]
        words = sum(len(t.split()) for t in texts)
        print(f"corpus: {len(texts):,} texts, {words:,} words in {len(paths)} files; model {a.model} "
              f"({a.backend}); {cores} cores", flush=True)
        names = {"tagger": "Tagger (one process)", "local": "tag-corpus --engine local",
                 "ray": f"tag-corpus --engine ray ({cores} actors x 1 thread)"}
        times: dict[str, list[float]] = {k: [] for k in names}
        ray_starts: list[float] = []
        outputs: dict[str, list[dict]] = {k: [] for k in names}

        def run_tagger() -> None:
            t0 = time.perf_counter()
            tagger = Tagger.load(a.model, backend=a.backend)
            ents = tagger.predict(texts)
            times["tagger"].append(time.perf_counter() - t0)
            ref, k = {}, 0
            for p in paths:
                for i in range(len(lines[p])):
                    ref[(str(p.resolve()), i)] = [(e.start, e.end, e.label, e.text, e.score) for e in ents[k]]
                    k += 1
            outputs["tagger"].append(ref)

        def run_local(r: int) -> None:
            t0 = time.perf_counter()
            tag_corpus(a.model, [work / "in"], work / f"local{r}", runner="local", backend=a.backend)
            times["local"].append(time.perf_counter() - t0)
            outputs["local"].append(read_output(work / f"local{r}"))

        def run_ray(r: int) -> None:
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
            ray_starts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tag_corpus(a.model, [work / "in"], work / f"ray{r}", runner="ray", backend=a.backend, workers=cores,
                       threads=1)
            times["ray"].append(time.perf_counter() - t0)
            ray.shutdown()
            outputs["ray"].append(read_output(work / f"ray{r}"))

        order = ["tagger", "local", "ray"]
        for r in range(a.rounds):
            # ABC, then CBA: a shared machine's load drifts, and alternating the order spreads the drift evenly
            for k in (order if r % 2 == 0 else order[::-1]):
                {"tagger": run_tagger, "local": lambda: run_local(r), "ray": lambda: run_ray(r)}[k]()
                print(f"round {r + 1}: {k} {times[k][-1]:.1f} s", flush=True)
        import ray

        def same(a_: dict, b_: dict) -> tuple[bool, int]:
            diff = sum(1 for key in b_ if [x[:4] for x in a_.get(key, [])] != [x[:4] for x in b_[key]]
                       or any(abs(x[4] - y[4]) > 1e-4 for x, y in zip(a_.get(key, []), b_[key])))
            return set(a_) == set(b_) and diff == 0, diff

        ref = outputs["tagger"][0]
        checks = {k: [same(ref, o) for o in outputs[k]] for k in ("tagger", "local", "ray")}
        ok_local, d_local = all(c[0] for c in checks["local"]), max(c[1] for c in checks["local"])
        ok_ray, d_ray = all(c[0] for c in checks["ray"] + checks["tagger"]), max(c[1] for c in checks["ray"])
        base = words / min(times["tagger"])
        rows = ["| run | best seconds | words/s | x Tagger | every run (s) |", "| --- | ---: | ---: | ---: | --- |"]
        for k, name in names.items():
            sec = min(times[k])
            rows.append(f"| {name} | {sec:.1f} | {words / sec:,.0f} | {words / sec / base:.2f}x | "
                        f"{', '.join(f'{t:.1f}' for t in times[k])} |")
        n_ent = sum(len(v) for v in ref.values())
        ray_start = min(ray_starts)
        notes = [f"Machine: {describe()}, {platform.system()}; "
                 f"Python {platform.python_version()}; ray {ray.__version__}.",
                 f"Corpus: {len(texts):,} texts, {words:,} words (CoNLL-2003 test sentences repeated), "
                 f"{len(paths)} .txt files; model `{a.model}`, backend {a.backend}; {n_ent:,} entities.",
                 f"{a.rounds} rounds (order Tagger, local, Ray, then reversed); best of each. Ray cluster start "
                 f"(ray.init, not in the times above): {ray_start:.1f} s at best.",
                 f"Identical entities: local vs Tagger {ok_local} ({d_local} rows differ), "
                 f"Ray vs Tagger {ok_ray} ({d_ray} rows differ); every row written exactly once."]
        text = "\n".join(rows + [""] + [f"- {n}" for n in notes]) + "\n"
        print(text)
        if a.md:
            Path(a.md).write_text(text, encoding="utf-8")
        if not (ok_local and ok_ray):
            sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
