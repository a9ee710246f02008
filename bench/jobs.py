"""What the benchmarks that run each system as a job share (bench/nested.py, bench/distill.py): a job in a
subprocess of its own script (a crash or a leak stays there), finished jobs cached in a JSONL file by a key of the
settings that change their numbers, and the loop that runs the rest and counts the failures."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent


def env(threads: int, quiet: bool = False) -> dict:
    """A job's environment: offline, ``threads`` OpenMP threads, nerkit from this checkout (``quiet``: no bars)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(threads),
            **({"TQDM_DISABLE": "1"} if quiet else {}),
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def check(cmd: list[str], threads: int, quiet: bool = False) -> subprocess.CompletedProcess:
    """Run a command; its failure is this run's failure, with the end of its stderr."""
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(threads, quiet), cwd=ROOT)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd[:5])} ... exited {p.returncode}: {(p.stderr or p.stdout)[-1500:]}")
    return p


def key(job: dict, fields: Sequence[str]) -> str:
    """The cache key of a run: data set, system and ``fields``, the settings that change its numbers."""
    return json.dumps({k: job.get(k) for k in ("ds", "system", *fields)}, sort_keys=True)


def execute(script: str, job: dict, args, quiet: bool = False) -> dict:
    """Run one job in a subprocess of ``script`` (``--job JSON``, which prints its JSON result last); that result
    with the machine and threads, or an error record."""
    cmd = [sys.executable, str(Path(script).resolve()), "--job", json.dumps(job), "--data", str(args.data),
           "--work", str(args.work), "--threads", str(args.threads)]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(args.threads, quiet), cwd=ROOT)
    if p.returncode:
        return {**job, "error": (p.stderr or p.stdout)[-2000:], "wall_s": round(time.time() - t0, 1)}
    return {**json.loads(p.stdout.strip().splitlines()[-1]), "machine": args.machine, "threads": args.threads}


def load_runs(path: Path, key_of: Callable[[dict], str]) -> dict[str, dict]:
    """Finished runs by key (the last of each; failed ones are not cached)."""
    runs = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                if "error" not in r:
                    runs[key_of(r)] = r
    return runs


def run_all(todo: Iterable[dict], cache: Path, run: Callable[[dict], dict], done: dict[str, dict],
            key_of: Callable[[dict], str], line: Callable[[dict], str]) -> int:
    """Run each job (``run``), append its record to ``cache``, keep the finished ones in ``done`` and print a line
    each (``line``: what a finished one says after its name); the number that failed."""
    todo, failed = list(todo), 0
    with cache.open("a", encoding="utf-8") as log:
        for i, job in enumerate(todo, 1):
            res = run(job)
            log.write(json.dumps(res) + "\n")
            log.flush()
            if "error" in res:
                failed += 1
                print(f"[{i}/{len(todo)}] {job['ds']} {job['system']}: FAILED\n{res['error']}", flush=True)
                continue
            done[key_of(res)] = res
            print(f"[{i}/{len(todo)}] {job['ds']} {job['system']}: {line(res)}", flush=True)
    return failed


def note(script: str, argv: Sequence[str] | None, runs: int, cache: Path, settings: dict) -> str:
    """The report's first line: the command, the date, the runs it holds, and whether the settings make it a quick
    check (``settings`` other than the seed given) rather than the benchmark."""
    quick = ", ".join(f"{k} {v}" for k, v in settings.items() if v is not None and k != "seed")
    return (f"`python bench/{script}.py {' '.join(sys.argv[1:] if argv is None else argv)}` on "
            f"{time.strftime('%Y-%m-%d')}: {runs} runs from {cache}"
            f"{f' ({quick}: a quick check, not the benchmark)' if quick else ''}.")


def exit_if(failed: int) -> None:
    """A benchmark with a failed run does not exit 0 (its report, written before, holds the others)."""
    if failed:
        raise SystemExit(f"{failed} run(s) failed (see above); the report holds the others")


def parser(doc: str, name: str, datasets: Sequence[str], systems: Sequence[str],
           units: str) -> argparse.ArgumentParser:
    """The options every job benchmark takes (``name``: its script and default stem; ``units``: what --limit
    and its siblings count); the script adds its own after them."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("NERKIT_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--datasets", default=",".join(datasets))
    ap.add_argument("--systems", default=",".join(systems))
    for split in ("train", "dev", "test"):
        ap.add_argument("--limit" if split == "train" else f"--{split}-limit", type=int,
                        help=f"{'valid' if split == 'dev' else split} {units} (quick runs)")
    ap.add_argument("--steps", type=int, help="with --limit only: nerkit --max-steps and spaCy training.max_steps")
    ap.add_argument("--seed", type=int, default=13, help="the seed of the samples")
    ap.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / f"{name}_bench")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--stem", default=name)
    ap.add_argument("--report", action="store_true", help="only write the report from the cached runs")
    ap.add_argument("--job", help=argparse.SUPPRESS)  # one run, in a subprocess: prints its JSON result
    return ap


def chosen(ap: argparse.ArgumentParser, args, datasets: Sequence[str], systems: Sequence[str],
           files: Callable[[str], Sequence[str]]) -> tuple[list[str], list[str]]:
    """The data sets and systems asked for, refused the argparse way (exit 2, one line) where a name is unknown,
    --steps comes without --limit, or a data set misses one of its ``files(ds)``."""
    if args.steps and not args.limit:
        ap.error("--steps is for quick runs: give --limit too (full runs train with each system's defaults)")
    asked = args.datasets.split(","), args.systems.split(",")
    for option, got, known in zip(("--datasets", "--systems"), asked, (datasets, systems)):
        if bad := [x for x in got if x not in known]:
            ap.error(f"{option}: unknown {', '.join(bad)} (known: {', '.join(known)})")
    for ds in asked[0]:
        if missing := [f for f in files(ds) if not (args.data / ds / f).is_file()]:
            ap.error(f"{args.data / ds}: missing {', '.join(missing)}")
    return asked
