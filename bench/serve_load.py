"""Load test: `nerkit serve` (micro-batching, fast path) vs a plain FastAPI endpoint calling the HF pipeline.

    python bench/serve_load.py [MODEL_DIR] [--requests 2000] [--concurrency 32] [--fast EXPORTED_DIR]

Starts each server itself on 127.0.0.1 (one after the other, each in its own process), sends the same
bounded run of requests (a deterministic mix of short sentences and long multi-sentence texts from the
CoNLL-2003 test set, one to four texts per request) from ``--concurrency`` concurrent clients, and reports
throughput, latency p50/p99 and errors. Every nerkit response is checked: its texts must equal the
request's texts in order, and its entities must match a direct ``Tagger`` call on the same model.

``--starvation`` measures instead how long 1-text requests take while large ones are being tagged: one client
sends 1-text requests (test sentences) one after the other, first alone, then while ``--large-clients``
clients send large requests (``--large-texts`` texts of ``--large-chars`` characters of test documents)
back to back; it reports p50/p99 of the small requests in both phases and checks every answer against a
direct ``Tagger`` call.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------- the baseline app
def baseline_app(model_dir: str):
    """A plain FastAPI service: one HF pipeline call per request (no batching across requests)."""
    import threading

    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import TokenClassificationPipeline, pipeline

    # The stock pipeline as the speed reference (nerkit model directories name their own pipeline, which
    # transformers runs only with trust_remote_code=True; see nerkit/hf_pipeline.py).
    pipe = pipeline("token-classification", model=model_dir, aggregation_strategy="simple", device=-1,
                    pipeline_class=TokenClassificationPipeline)
    lock = threading.Lock()  # one model call at a time: concurrent torch calls on the same cores only thrash
    app = FastAPI()

    class Req(BaseModel):
        texts: list[str]

    @app.post("/v1/entities")
    def entities(req: Req):
        with lock:
            out = pipe(req.texts) if req.texts else []
        return {"results": [{"text": t, "entities": [
            {"start": int(e["start"]), "end": int(e["end"]), "label": e["entity_group"], "score": float(e["score"]),
             "text": t[int(e["start"]):int(e["end"])]} for e in ents]} for t, ents in zip(req.texts, out)]}

    @app.get("/v1/health")
    def health():
        return {"status": "ok"}

    return app


# ------------------------------------------------------------------------------------------------ workload
def workload(data: str, n: int, seed: int = 0, long_share: float = 0.1, long_chars: int = 1000) -> list[list[str]]:
    """``n`` requests of 1-4 texts: single test sentences, and with probability ``long_share`` a long text
    (3-12 consecutive sentences of a document, cut at ``long_chars`` characters)."""
    from nerkit.data import read_conll

    docs = [[s.surface()[0] for s in d.sentences if s.words] for d in read_conll(data)]
    sents = [s for d in docs for s in d]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        texts = []
        for _ in range(rng.choice([1, 1, 1, 1, 2, 3, 4])):
            if rng.random() >= long_share:
                texts.append(rng.choice(sents))
            else:
                d = rng.choice([d for d in docs if len(d) > 3])
                a = rng.randrange(len(d))
                long = " ".join(d[a:a + rng.randint(3, 12)])
                texts.append(long[:long_chars].rsplit(" ", 1)[0] if len(long) > long_chars else long)
        out.append(texts)
    return out


# ------------------------------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cmd: list[str], port: int, timeout: float = 180) -> subprocess.Popen:
    import httpx

    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    proc.log = log
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"server exited ({proc.returncode}):\n{log.read().decode()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(proc)
    raise SystemExit(f"server on port {port} did not start in {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def busy_s() -> float:
    """CPU seconds the whole machine has been busy, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(port: int, pid: int, requests, concurrency: int) -> tuple[dict, float, float]:
    """Run the load against a server; returns the run, the server's CPU seconds, and the share of the CPUs
    that other processes (neither server nor client) used meanwhile."""
    b0, s0, c0, t0 = busy_s(), process_cpu_s(pid), self_cpu_s(), time.perf_counter()
    run = asyncio.run(load(port, requests, concurrency))
    b1, s1, c1, wall = busy_s(), process_cpu_s(pid), self_cpu_s(), time.perf_counter() - t0
    other = max(0.0, (b1 - b0) - (s1 - s0) - (c1 - c0)) / (wall * max(1, len(os.sched_getaffinity(0))))
    return run, s1 - s0, other


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -------------------------------------------------------------------------------------------------- client
async def load(port: int, requests: list[list[str]], concurrency: int, timeout: float = 120) -> dict:
    import httpx

    url = f"http://127.0.0.1:{port}/v1/entities"
    results: list = [None] * len(requests)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_i = 0

    async def client(c: httpx.AsyncClient):
        nonlocal next_i
        while next_i < len(requests):
            i = next_i
            next_i += 1
            t0 = time.perf_counter()
            try:
                r = await c.post(url, json={"texts": requests[i]})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors[f"HTTP {r.status_code}"] = errors.get(f"HTTP {r.status_code}", 0) + 1
                    continue
                results[i] = r.json()
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as c:
        await c.post(url, json={"texts": ["Warm-up request from Paris."]})
        t0 = time.perf_counter()
        await asyncio.gather(*[client(c) for _ in range(concurrency)])
        wall = time.perf_counter() - t0
    return {"results": results, "latencies": latencies, "errors": errors, "wall_s": wall}


def verify(requests, results, expected: dict | None) -> dict:
    """Lost / mis-ordered responses, entities consistent with their text, and (given ``expected`` per text)
    how the entities compare with a direct Tagger call."""
    lost = misordered = inconsistent = exact = same_spans = differ = 0
    score_diff = 0.0
    examples = []
    for texts, body in zip(requests, results):
        if body is None:
            continue
        res = body.get("results")
        if not isinstance(res, list) or len(res) != len(texts):
            lost += 1
            continue
        if [r.get("text") for r in res] != texts:
            misordered += 1
            continue
        for t, r in zip(texts, res):
            got = r["entities"]
            if any(t[e["start"]:e["end"]] != e["text"] for e in got):
                inconsistent += 1  # entities of another text would not match this one's characters
            if expected is None:
                continue
            want = expected[t]
            if got == want:
                exact += 1
            elif [(e["start"], e["end"], e["label"]) for e in got] == [(e["start"], e["end"], e["label"]) for e in want]:
                same_spans += 1
                score_diff = max(score_diff, max(abs(a["score"] - b["score"]) for a, b in zip(got, want)))
            else:
                differ += 1
                if len(examples) < 2:
                    examples.append({"text": t[:100], "served": [(e["text"], e["label"]) for e in got],
                                     "direct": [(e["text"], e["label"]) for e in want]})
    return {"lost": lost, "misordered": misordered, "inconsistent": inconsistent, "entities_identical": exact,
            "entities_same_spans_labels": same_spans, "max_score_diff": score_diff, "entities_differ": differ,
            "examples": examples}


def summarise(name: str, run: dict, n_texts: int) -> dict:
    import numpy as np

    lat = np.array(run["latencies"]) * 1000 if run["latencies"] else np.zeros(1)
    ok = sum(r is not None for r in run["results"])
    return {"server": name, "requests": len(run["results"]), "ok": ok, "errors": sum(run["errors"].values()),
            "error_kinds": run["errors"], "wall_s": run["wall_s"], "req_per_s": len(run["results"]) / run["wall_s"],
            "texts_per_s": n_texts / run["wall_s"], "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99))}


# ---------------------------------------------------------------------------------------------- starvation
def large_texts(data: str, n: int, chars: int) -> list[str]:
    """``n`` texts of about ``chars`` characters: consecutive test sentences, different for each text."""
    from nerkit.data import read_conll

    sents = [s.surface()[0] for d in read_conll(data) for s in d.sentences if s.words]
    out, k = [], 0
    for _ in range(n):
        text = ""
        while len(text) < chars:
            s = sents[k % len(sents)]
            k += 1
            if len(text) + 1 + len(s) > chars:
                break
            text = f"{text} {s}" if text else s
        out.append(text)
    return out


async def starvation_run(port: int, smalls: list[str], large: list[str], large_clients: int, gap_s: float = 0.05,
                         timeout: float = 600) -> dict:
    """Latencies of 1-text requests sent one at a time, alone and while large requests run back to back."""
    import httpx

    url = f"http://127.0.0.1:{port}/v1/entities"
    out = {"alone": [], "loaded": [], "large": [], "answers": {}, "errors": 0}

    async def small_client(c, phase):
        for t in smalls:
            t0 = time.perf_counter()
            r = await c.post(url, json={"texts": [t]})
            out[phase].append(time.perf_counter() - t0)
            if r.status_code != 200:
                out["errors"] += 1
            else:
                out["answers"][t] = r.json()["results"][0]["entities"]
            await asyncio.sleep(gap_s)

    stop = False

    async def large_client(c):
        while not stop:
            t0 = time.perf_counter()
            r = await c.post(url, json={"texts": large})
            out["large"].append(time.perf_counter() - t0)
            if r.status_code != 200:
                out["errors"] += 1
            else:
                for t, res in zip(large, r.json()["results"]):
                    out["answers"][t] = res["entities"]

    async with httpx.AsyncClient(timeout=timeout) as c:
        await c.post(url, json={"texts": ["Warm-up request from Paris."]})
        await small_client(c, "alone")
        bigs = [asyncio.ensure_future(large_client(c)) for _ in range(large_clients)]
        await asyncio.sleep(1.0)  # the large requests are being tagged
        await small_client(c, "loaded")
        stop = True
        await asyncio.gather(*bigs)
    return out


def starvation(a, fast: Path) -> int:
    import numpy as np

    from nerkit.data import read_conll
    from nerkit.predict import Tagger

    sents = [s.surface()[0] for d in read_conll(a.data) for s in d.sentences if 8 <= len(s.words) <= 30]
    smalls = sents[::max(1, len(sents) // a.small_requests)][:a.small_requests]
    large = large_texts(a.data, a.large_texts, a.large_chars)
    tagger = Tagger.load(fast, backend=a.backend)
    expected = {t: [e.to_dict() for e in es] for t, es in zip(smalls + large, tagger.predict(smalls + large))}
    backend = tagger.engine.name
    del tagger
    port = free_port()
    cmd = [sys.executable, "-m", "nerkit.cli", "serve", str(fast), "--port", str(port), "--backend", a.backend]
    print("nerkit serve ...", file=sys.stderr)
    proc = start_server(cmd, port)
    try:
        t0 = time.perf_counter()
        run = asyncio.run(starvation_run(port, smalls, large, a.large_clients))
        wall = time.perf_counter() - t0
    finally:
        stop_server(proc)
    differ = sum(run["answers"][t] != expected[t] for t in run["answers"])
    info = __import__("machine").machine()

    def ms(xs, q):
        return float(np.percentile(np.array(xs) * 1000, q)) if xs else float("nan")

    rows = [{"phase": "alone", "requests": len(run["alone"]), "p50_ms": ms(run["alone"], 50),
             "p99_ms": ms(run["alone"], 99), "max_ms": ms(run["alone"], 100)},
            {"phase": f"while {a.large_clients} client(s) send {a.large_texts} x {a.large_chars:,}-character "
                      f"requests back to back", "requests": len(run["loaded"]), "p50_ms": ms(run["loaded"], 50),
             "p99_ms": ms(run["loaded"], 99), "max_ms": ms(run["loaded"], 100)}]
    print(f"\n## Small requests while large ones run: {Path(a.model).name}, backend {backend}\n")
    print(f"Machine: {info['cpu']}, {info['cores']} cores ({', '.join(info['isa'])}); client and server share "
          f"them. {wall:.0f} s in all.\n")
    print("| 1-text requests (sent one at a time) | requests | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['phase']} | {r['requests']} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} |")
    print(f"\nLarge requests completed: {len(run['large'])} (p50 {ms(run['large'], 50) / 1000:.1f} s each). "
          f"Errors: {run['errors']}. Texts whose entities differ from a direct Tagger call: {differ} of "
          f"{len(run['answers'])}.")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": info, "rows": rows, "large_s": run["large"],
                                            "errors": run["errors"], "differ": differ}, indent=2))
    return 1 if run["errors"] or differ else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default=os.environ.get("NERKIT_MODEL", str(ROOT / "runs" / "conll")))
    ap.add_argument("--data", help="CoNLL test file or data folder (default: $NERKIT_DATA, else ../shared/data)")
    ap.add_argument("--fast", help="exported model dir for nerkit (default: MODEL if exported, else export to a temp dir)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--baseline-requests", type=int, help="requests for the baseline (default: --requests)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, help="nerkit serve --max-wait-ms")
    ap.add_argument("--max-batch", type=int, help="nerkit serve --max-batch-texts")
    ap.add_argument("--backend", default="auto", help="nerkit serve --backend (onnx: fp32, batch-invariant results)")
    ap.add_argument("--long-share", type=float, default=0.1, help="share of long texts (default 0.1)")
    ap.add_argument("--long-chars", type=int, default=1000, help="length cap of long texts (default 1000)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--starvation", action="store_true",
                    help="measure 1-text requests alone and while large requests run (no baseline)")
    ap.add_argument("--small-requests", type=int, default=100, help="--starvation: 1-text requests per phase")
    ap.add_argument("--large-clients", type=int, default=1, help="--starvation: clients sending large requests")
    ap.add_argument("--large-texts", type=int, default=20, help="--starvation: texts per large request")
    ap.add_argument("--large-chars", type=int, default=20_000, help="--starvation: characters per large text")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--baseline-server", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.baseline_server:  # child process: run the baseline app
        import uvicorn

        uvicorn.run(baseline_app(a.baseline_server), host="127.0.0.1", port=a.port, log_level="warning",
                    access_log=False)
        return 0

    model = Path(a.model)
    if not (model / "config.json").is_file():
        raise SystemExit(f"{model}: not a model directory (pass MODEL_DIR or set NERKIT_MODEL)")
    sys.path.insert(0, str(ROOT / "bench"))
    from inference import machine, resolve_data

    a.data = str(resolve_data(a.data))
    if not Path(a.data).is_file():
        raise SystemExit(f"{a.data}: no such CoNLL file (pass --data or set NERKIT_DATA)")
    tmp = None
    fast = Path(a.fast) if a.fast else model
    if not (fast / "model.int8.onnx").is_file() and not (fast / "model.onnx").is_file():
        from nerkit.export import export

        tmp = tempfile.TemporaryDirectory(prefix="nerkit-load-")
        fast = Path(tmp.name) / "model"
        print(f"exporting {model} to {fast} ...", file=sys.stderr)
        export(model, fast, copy_weights=False)

    if a.starvation:
        code = starvation(a, fast)
        if tmp is not None:
            tmp.cleanup()
        return code
    requests = workload(a.data, a.requests, long_share=a.long_share, long_chars=a.long_chars)
    n_texts = sum(len(r) for r in requests)
    n_words = sum(len(t.split()) for r in requests for t in r)
    print(f"workload: {len(requests)} requests, {n_texts} texts, {n_words} words, concurrency {a.concurrency}",
          file=sys.stderr)

    from nerkit.predict import Tagger

    tagger = Tagger.load(fast, backend=a.backend)
    unique = sorted({t for r in requests for t in r})
    expected = {t: [e.to_dict() for e in es] for t, es in zip(unique, tagger.predict(unique))}
    backend = tagger.engine.name
    del tagger

    rows, checks = [], {}
    port = free_port()
    cmd = [sys.executable, "-m", "nerkit.cli", "serve", str(fast), "--port", str(port), "--backend", a.backend]
    if a.max_wait_ms is not None:
        cmd += ["--max-wait-ms", str(a.max_wait_ms)]
    if a.max_batch is not None:
        cmd += ["--max-batch-texts", str(a.max_batch)]
    print("nerkit serve ...", file=sys.stderr)
    proc = start_server(cmd, port)
    try:
        run, cpu, other = measure(port, proc.pid, requests, a.concurrency)
        import httpx

        health = httpx.get(f"http://127.0.0.1:{port}/v1/health").json()
    finally:
        stop_server(proc)
    row = summarise(f"nerkit serve ({backend}, micro-batching)", run, n_texts)
    row["server_cpu_s"] = cpu
    row["other_cpu"] = other
    row["batching"] = health.get("batching")
    rows.append(row)
    checks["nerkit"] = verify(requests, run["results"], expected)

    if not a.skip_baseline:
        nb = a.baseline_requests or a.requests
        port = free_port()
        print("baseline (FastAPI + HF pipeline per request) ...", file=sys.stderr)
        proc = start_server([sys.executable, str(Path(__file__).resolve()), "--baseline-server", str(model),
                             "--port", str(port)], port)
        try:
            brun, cpu, other = measure(port, proc.pid, requests[:nb], a.concurrency)
        finally:
            stop_server(proc)
        brow = summarise("FastAPI + HF pipeline per request", brun, sum(len(r) for r in requests[:nb]))
        brow["server_cpu_s"] = cpu
        brow["other_cpu"] = other
        rows.append(brow)
        checks["baseline"] = verify(requests[:nb], brun["results"], None)

    base = rows[1] if len(rows) > 1 else None
    print(f"\n## nerkit serve load test: {model.name}, {len(requests)} requests ({n_texts} texts), "
          f"concurrency {a.concurrency}, 127.0.0.1\n")
    info = machine()
    print(f"Machine: {info['cpu']}, {info['cores']} cores ({', '.join(info['isa'])}); client and server share them.\n")
    print("| server | requests | errors | req/s | texts/s | × baseline | p50 ms | p99 ms | server CPU s "
          "| CPU taken by other processes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['req_per_s'] / base['req_per_s']:.2f}x" if base else "n/a"
        print(f"| {r['server']} | {r['requests']} | {r['errors']} | {r['req_per_s']:.1f} | {r['texts_per_s']:.1f} | "
              f"{ratio} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['server_cpu_s']:.0f} | {100 * r['other_cpu']:.0f}% |")
    c = checks["nerkit"]
    print(f"\nWorkload: {n_texts} texts, {n_words} words; {a.long_share:.0%} of texts long (3-12 sentences, "
          f"≤{a.long_chars} chars), the rest single test sentences; 1-4 texts per request.")
    print(f"nerkit responses: {c['lost']} lost, {c['misordered']} mis-ordered, {c['inconsistent']} with entities "
          f"that do not match their text. Entities vs a direct Tagger call ({backend}): {c['entities_identical']} "
          f"texts identical, {c['entities_same_spans_labels']} with the same spans and labels (scores differ by up "
          f"to {c['max_score_diff']:.3f}), {c['entities_differ']} with different spans or labels.")
    if backend == "onnx-int8" and (c["entities_same_spans_labels"] or c["entities_differ"]):
        print("  (an int8 graph exported before issue 9 quantizes activations with one scale per batch, so its "
              "results depend slightly on which texts share a batch; export the model again.)")
    if rows[0].get("batching"):
        b = rows[0]["batching"]
        calls = f", {b['model_calls']} model calls" if "model_calls" in b else ""
        print(f"micro-batching: {b['requests']} requests in {b['batches']} jobs{calls} "
              f"({b['texts'] / max(1, b['batches']):.1f} texts per job, largest {b['largest_batch']}).")
    for ex in c["examples"]:
        print(f"  differs: {json.dumps(ex, ensure_ascii=False)[:300]}")
    if "baseline" in checks:
        cb = checks["baseline"]
        print(f"baseline responses: {cb['lost']} lost, {cb['misordered']} mis-ordered.")
    if base:
        ok = rows[0]["errors"] == 0 and c["lost"] == 0 and c["misordered"] == 0 and c["inconsistent"] == 0
        print(f"\nTargets: zero errors/lost/mis-ordered: {'met' if ok else 'NOT met'}; ≥3x the baseline's throughput: "
              f"{'met' if rows[0]['req_per_s'] >= 3 * base['req_per_s'] else 'NOT met'} "
              f"({rows[0]['req_per_s'] / base['req_per_s']:.2f}x).")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": info, "rows": rows, "checks": checks}, indent=2))
    if tmp is not None:
        tmp.cleanup()
    bad = rows[0]["errors"] or c["lost"] or c["misordered"] or c["inconsistent"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
