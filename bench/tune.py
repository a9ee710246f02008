"""Choose training defaults on a DEV set: run a grid of TrainConfig variants and print dev F1 for each.

    python bench/tune.py --train DATA/train.txt --dev DATA/valid.txt --grid bench/grid.json [--parallel 4]

Each grid entry is a dict of TrainConfig overrides (plus an optional "name"). Runs go in separate
processes (``--parallel`` at a time, useful on a GPU machine); one JSON line per run is printed and
appended to ``--out``. The test set is never read here.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def run_one(args: argparse.Namespace, overrides: dict) -> dict:
    """Train one configuration in a child process and return its summary."""
    code = (
        "import json, sys, time\n"
        "from nerkit.train import TrainConfig, fit\n"
        "o = json.loads(sys.argv[1]); o.pop('name', None)\n"
        "t = time.time()\n"
        f"r = fit({args.train!r}, dev={args.dev!r}, output=None, config=TrainConfig(progress=False, **o))\n"
        "m = r['meta']\n"
        "print('RESULT ' + json.dumps({'dev_f1': r['metrics']['dev']['f1'], 'history': m['history'],"
        " 'train_s': m['train_seconds'], 'wall_s': round(time.time() - t, 1), 'steps': m['steps']}))\n"
    )
    cfg = dict(overrides)
    if args.model:
        cfg.setdefault("model", args.model)
    t = time.time()
    p = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], capture_output=True, text=True)
    res = {"name": overrides.get("name", json.dumps(overrides)), "config": cfg}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            res.update(json.loads(line[7:]))
    if p.returncode:
        res["error"] = p.stderr[-2000:]
    res["elapsed_s"] = round(time.time() - t, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--grid", required=True, help="JSON file: a list of TrainConfig override dicts")
    ap.add_argument("--model")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--out", default="tune_results.jsonl")
    args = ap.parse_args()
    grid = json.load(open(args.grid))
    failed = 0
    with ThreadPoolExecutor(args.parallel) as pool, open(args.out, "a") as out:
        from concurrent.futures import as_completed

        for fut in as_completed([pool.submit(run_one, args, o) for o in grid]):
            res = fut.result()
            failed += "error" in res
            line = json.dumps(res)
            print(line, flush=True)
            out.write(line + "\n")
            out.flush()
    print("\n| run | dev F1 | per-eval dev F1 | train s |\n| --- | ---: | --- | ---: |")
    for line in open(args.out):
        r = json.loads(line)
        hist = " ".join(f"{h['dev_f1'] * 100:.2f}" for h in r.get("history", []))
        f1 = f"{r['dev_f1'] * 100:.2f}" if "dev_f1" in r else "error"
        print(f"| {r['name']} | {f1} | {hist} | {r.get('train_s', '')} |")
    if failed:
        raise SystemExit(f"{failed} run(s) failed (their errors in {args.out}); the table holds the others")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
