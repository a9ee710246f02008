"""nerkit's default training vs the classic recipe on full CoNLL-2003, side by side, in one invocation.

    python bench/conll2003.py [--data ../shared/data/conll2003] [--recipe ../shared/baselines/classic_recipe.py]
                              [--only nerkit|recipe] [--out bench/results/conll2003.json]

Both runs use the same base model (the offline all-MiniLM-L6-v2) and the same machine, one after the other.
Each is a child process; wall time is the whole child (data loading, training, dev+test evaluation, saving),
peak RSS comes from the kernel's accounting of that child (os.wait4).
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


def run(cmd: list[str], log: Path) -> dict:
    """Run a child to completion; return wall seconds, peak RSS (MB) and exit status."""
    t = time.time()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
    return {"wall_s": round(time.time() - t, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024), "status": status}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("NERKIT_CONLL", str(ROOT.parent / "shared/data/conll2003")))
    ap.add_argument("--recipe", default=str(ROOT.parent / "shared/baselines/classic_recipe.py"))
    ap.add_argument("--only", choices=["nerkit", "recipe"])
    ap.add_argument("--epochs", type=float, help="nerkit epochs (default: nerkit's default)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/conll2003.json"))
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    from nerkit.modeldir import read_meta
    from nerkit.train import default_model

    data, base = Path(a.data), default_model()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="nerkit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": describe(), "date": time.strftime("%Y-%m-%d %H:%M"), "data": str(data)}
    if a.only != "recipe":
        out = work / "nerkit-model"
        cmd = [sys.executable, "-m", "nerkit.cli", "train", "--train", str(data / "train.txt"),
               "--dev", str(data / "valid.txt"), "--test", str(data / "test.txt"), "--output", str(out)]
        if a.epochs:
            cmd += ["--epochs", str(a.epochs)]
        print("running nerkit:", " ".join(cmd), flush=True)
        r = run(cmd, work / "nerkit.log")
        meta = read_meta(out)
        r.update({"dev_f1": meta.metrics["dev"]["f1"], "test_f1": meta.metrics["test"]["f1"],
                  "test_precision": meta.metrics["test"]["precision"],
                  "test_recall": meta.metrics["test"]["recall"], "train_s": meta.train_seconds,
                  "model_dir": str(out), "history": meta.history})
        results["nerkit"] = r
        print(json.dumps(r), flush=True)
    if a.only != "nerkit":
        cmd = [sys.executable, a.recipe, str(data), base, "--out", str(work / "recipe-trainer")]
        print("running recipe:", " ".join(cmd), flush=True)
        r = run(cmd, work / "recipe.log")
        last = [line for line in (work / "recipe.log").read_text().splitlines() if line.startswith("{")]
        if last:
            r.update(json.loads(last[-1]))
        results["recipe"] = r
        print(json.dumps(r), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(table(results))


def table(res: dict) -> str:
    """Markdown table of both runs and their ratios."""
    n, r = res.get("nerkit", {}), res.get("recipe", {})
    rows = [f"Machine: {res['machine']}; {res['date']}", "",
            "| figure | nerkit | classic recipe | nerkit / recipe |", "| --- | ---: | ---: | ---: |"]

    def line(name, key, scale=1.0, fmt="{:.2f}", diff=False):
        a, b = n.get(key), r.get(key)
        fa = fmt.format(a * scale) if a is not None else "-"
        fb = fmt.format(b * scale) if b is not None else "-"
        if a is not None and b is not None:
            rel = f"{(a - b) * scale:+.2f} points" if diff else f"{a / b:.2f}x"
        else:
            rel = "-"
        rows.append(f"| {name} | {fa} | {fb} | {rel} |")

    line("test entity F1", "test_f1", 100, diff=True)
    line("dev entity F1", "dev_f1", 100, diff=True)
    line("training time (s)", "train_s", fmt="{:.0f}")
    line("whole run, wall clock (s)", "wall_s", fmt="{:.0f}")
    line("peak RSS (MB)", "peak_rss_mb", fmt="{:.0f}")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
