"""nerkit's defaults against the classic recipe on every data set in ../shared/data, at 100, 300, 1,000 sentences
and full size, with an oracle: the best of a small grid (learning rate x training budget) chosen on dev.

    python bench/domains.py                       # everything (hours on 2 CPU cores)
    python bench/domains.py --quick               # tsa-md and wnut17 at 100 sentences, one training each: minutes
    python bench/domains.py --datasets finer-ord --sizes 100,300 --systems nerkit,recipe,oracle --jobs 4

Systems: "nerkit" is `nerkit train` with no options (up to 1,000 sentences that searches: four trainings started,
those behind on dev stopped at rungs, the dev-best of the rest kept), "once" one training of the derived budget
(`--no-search`), "recipe" the classic recipe, "oracle" the grid (its (1, 1) point is "once"; where a default run
trained a point to its end, that training is the grid's at that point). Default runs cached before the search
stopped points early (their four points all trained to their ends) are read as "search-full", the previous default,
and set beside the new one (the halving table: test F1 and wall time against one training).

The search's cost against one training is a wall-time ratio: measure both on the same machine, one run at a time,
with the cores a user would give them (the search trains its points side by side, one thread each):

    python bench/domains.py --systems nerkit,once --rerun once --jobs 1 --threads 2 --datasets tsa-md --sizes 100

Training subsets are seeded samples of sentences (the same files for every system); for sizes up to 1,000 the dev
set is a seeded sample of at most 1,000 sentences (a user with 100 annotated sentences rarely has 4,500 more to
validate on), at full size the whole dev set; the test set is always complete. Every run is a subprocess
(``nerkit train`` or ``classic_recipe.py``) timed by wall clock. Finished runs are cached in OUT/runs.jsonl,
so an interrupted benchmark resumes. Writes OUT/domains.md, OUT/domains.json and OUT/domains_<data set>.png.

Extra studies: ``--transfer MODEL_DIR`` adds "transfer" runs (nerkit defaults starting from an existing NER model;
FiNER-ORD and BC5CDR by default), ``--class-weights`` adds sqrt/balanced runs (WNUT-17, FiNER-ORD, LeNER-Br).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import jobs  # bench/jobs.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ["conll2003", "wnut17", "bc5cdr", "tsa-md", "lener-br", "finer-ord"]
SIZES = ["100", "300", "1000", "full"]
DEV_CAP = 1000
_LOCK = threading.Lock()
# The oracle's grid: multipliers of the default learning rate and of the default number of epochs (9 points;
# --lr-grid/--budget-grid change it, the issue asks for at least 6).
LR_GRID = (0.5, 1.0, 2.0)
BUDGET_GRID = (0.5, 1.0, 2.0)
MIN_GRID_POINTS = 6
MIN_ORACLE_SEEDS = 3  # a seed moves test F1 by 0.5-3 points at 100-300 sentences: average at least three
# "nerkit" is `nerkit train`'s defaults: up to 1,000 sentences with a dev set that is a search over these points
# (nerkit.search.LR_X x EPOCHS_X, in its order); "once" is one training with the derived budget (`--no-search`),
# the grid's (1, 1) point. Runs cached before the search was the default have no "search" field: read as "once".
SEARCH_POINTS = ((1.0, 1.0), (2.0, 1.0), (1.0, 2.0), (2.0, 2.0))
ONCE = "once"
FULL = "search-full"  # the default before the search stopped points early: four trainings to their ends


def read_sentences(path: Path) -> list[str]:
    """Sentence blocks of a CoNLL file (without -DOCSTART- lines), as text."""
    blocks, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("-DOCSTART-"):
            continue
        if line.strip():
            cur.append(line)
        elif cur:
            blocks.append("\n".join(cur))
            cur = []
    if cur:
        blocks.append("\n".join(cur))
    return blocks


def make_split(data: Path, ds: str, size: str, work: Path, seed: int) -> Path:
    """DIR/{train,valid,test}.txt for one data set and size (seeded, identical for every system)."""
    d = work / "splits" / ds / size
    if (d / "test.txt").is_file():
        return d
    d.mkdir(parents=True, exist_ok=True)
    src = data / ds
    if size == "full":
        for f in ("train", "valid", "test"):
            (d / f"{f}.txt").write_text((src / f"{f}.txt").read_text(encoding="utf-8"), encoding="utf-8")
        return d
    train = read_sentences(src / "train.txt")
    dev = read_sentences(src / "valid.txt")
    rng = random.Random(f"{seed}-{ds}-{size}")
    sample = rng.sample(range(len(train)), min(int(size), len(train)))
    dev_rng = random.Random(f"{seed}-{ds}-dev")
    dev_keep = sorted(dev_rng.sample(range(len(dev)), min(DEV_CAP, len(dev))))
    (d / "train.txt").write_text("\n\n".join(train[i] for i in sorted(sample)) + "\n", encoding="utf-8")
    (d / "valid.txt").write_text("\n\n".join(dev[i] for i in dev_keep) + "\n", encoding="utf-8")
    (d / "test.txt").write_text((src / "test.txt").read_text(encoding="utf-8"), encoding="utf-8")
    return d


def default_budget(split: Path, model: str) -> dict:
    """The budget nerkit's rule picks for this training file (so the oracle grid is centred on it); cached."""
    cached = split / "budget.json"
    with _LOCK:
        if cached.is_file():
            return json.loads(cached.read_text())
        b = _default_budget(split, model)
        cached.write_text(json.dumps(b))
        return b


def _default_budget(split: Path, model: str) -> dict:
    code = ("import json,sys;from nerkit.train import budget_for;"
            f"b=budget_for({str(split / 'train.txt')!r}, {model!r});print(json.dumps(b))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=_env(1))
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env(threads: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return env


def run_nerkit(split: Path, out: Path, model: str, seed: int, threads: int, extra: list[str]) -> dict:
    """``nerkit train`` on a split; test/dev F1 from the model directory's nerkit.json, wall time of the process."""
    cmd = [sys.executable, "-m", "nerkit.cli", "train", "--train", str(split / "train.txt"),
           "--dev", str(split / "valid.txt"), "--test", str(split / "test.txt"), "--output", str(out),
           "--model", model, "--seed", str(seed), *extra]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads), cwd=ROOT)
    wall = time.time() - t0
    if p.returncode:
        return {"error": p.stderr[-1500:], "wall_s": wall}
    meta = json.loads((out / "nerkit.json").read_text())
    m = meta["metrics"]
    res = {"test_f1": m["test"]["f1"], "dev_f1": m["dev"]["f1"], "wall_s": round(wall, 1),
           **({"search": _search_record(meta["search"])} if "search" in meta else {}),
           "train_s": meta["train_seconds"], "steps": meta["steps"], "epochs": meta["train_args"]["epochs"],
           "lr": meta["train_args"]["lr"], "batch_tokens": meta["train_args"]["batch_tokens"],
           "per_type_test": {t: v["f1"] for t, v in m["test"]["per_type"].items()},
           "errors_test": m["test"]["errors"]["total"],
           # The dev curve says whether a run stopped early, peaked late or was still rising when its budget ended.
           "dev_curve": [[h["epoch"], round(h["dev_f1"], 4)] for h in meta.get("history") or []]}
    return res


def _search_record(found: dict) -> dict:
    """The search's points (lr x, epochs x, dev F1, seconds, test F1, the step it was stopped at or None, steps
    trained, steps planned, dev curve) and the kept one, from nerkit.json."""
    return {"kept": [found["kept"]["lr_x"], found["kept"]["epochs_x"]], "workers": found.get("workers"),
            "points": [[p["lr_x"], p["epochs_x"], p["dev_f1"], p["seconds"], p.get("test_f1"), p.get("stopped_at"),
                        p.get("steps"), p.get("planned_steps"), p.get("curve")] for p in found["points"]]}


def run_recipe(split: Path, model: str, threads: int, recipe: Path, work: Path) -> dict:
    """The classic recipe on a split (its own JSON line), wall time of the process."""
    cmd = [sys.executable, str(recipe), str(split), model, "--out", str(work / "recipe_tmp" / f"{os.getpid()}-{time.time_ns()}")]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads), cwd=ROOT)
    wall = time.time() - t0
    if p.returncode:
        return {"error": p.stderr[-1500:], "wall_s": wall}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return {"test_f1": r["test_f1"], "dev_f1": r["dev_f1"], "wall_s": round(wall, 1), "train_s": r["train_s"]}


def plan(args) -> list[dict]:
    """Every run to do, most informative first."""
    planned = []
    for size in args.sizes:
        for ds in args.datasets:
            for system in args.systems:
                if system == "oracle":
                    # At full size only the points named by --full-points (checking a rule change at scale).
                    points = args.full_points if size == "full" else [(lm, bm) for lm in args.lr_grid for bm in args.budget_grid]
                    for lm, bm in points:
                        if (lm, bm) != (1.0, 1.0):
                            planned.append({"ds": ds, "size": size, "system": "grid", "lr_x": lm, "epochs_x": bm})
                        elif size != "full":  # at full size the default trains once: it is that point
                            planned.append({"ds": ds, "size": size, "system": ONCE})
                else:
                    planned.append({"ds": ds, "size": size, "system": system})
            if args.transfer and ds in args.transfer_datasets and size != "full":
                planned.append({"ds": ds, "size": size, "system": "transfer"})
            if args.class_weights and ds in ("wnut17", "finer-ord", "lener-br") and size in ("1000", "full"):
                for cw in ("sqrt", "balanced"):
                    planned.append({"ds": ds, "size": size, "system": f"cw-{cw}"})
    # Other training seeds (same split) for the default and the grid: how much of a gap to the oracle is luck.
    planned += [{**j, "train_seed": t} for t in getattr(args, "train_seeds", []) for j in list(planned)
             if j["system"] in ("nerkit", ONCE, "grid") and j["size"] != "full"]
    return planned


def key(job: dict) -> str:
    keys = ("ds", "size", "system", "lr_x", "epochs_x", "train_seed")
    return json.dumps({k: job[k] for k in sorted(job) if k in keys}, sort_keys=True)


def execute(job: dict, args, work: Path) -> dict:
    with _LOCK:
        split = make_split(args.data, job["ds"], job["size"], work, args.seed)
    out = (work / "models" / job["ds"] / job["size"] /
           f"{job['system']}-{job.get('lr_x', '')}-{job.get('epochs_x', '')}-{job.get('train_seed', '')}")
    threads = max(1, args.threads)
    if job["system"] == "recipe":
        res = run_recipe(split, args.model, threads, args.recipe, work)
    else:
        extra: list[str] = []
        model = args.model
        if job["system"] == "grid":
            b = default_budget(split, args.model)
            # The values nerkit.search gives its points (runs cached before 2026-11-27 had the lr to 3 digits).
            extra = ["--lr", repr(b["lr"] * job["lr_x"]), "--epochs", repr(max(1.0, round(b["epochs"] * job["epochs_x"], 2)))]
        elif job["system"] == ONCE:
            extra = ["--no-search"]
        elif job["system"] == "transfer":
            model = str(args.transfer)
        elif job["system"].startswith("cw-"):
            extra = ["--class-weights", job["system"][3:]]
        res = run_nerkit(split, out, model, job.get("train_seed", args.seed), threads, extra)
        if not (args.keep and job["system"] == "nerkit"):
            subprocess.run(["rm", "-rf", str(out)])
    return {**job, **res, "machine": args.machine, "threads": threads, "jobs": args.jobs}


def _redo(run: dict) -> bool:
    """A default run cached before its search points carried their test F1 (before 2026-11-27 08:30): run again (the
    same trainings on the same machine and thread count, so only the points' test F1 is added). Its record is kept
    until the new one replaces it."""
    return run["system"] == "nerkit" and bool(run.get("search")) and not _points_tested(run)


def _points_tested(run: dict) -> bool:
    """Whether a default run's search recorded the test F1 of each point it trained to its end (points: lr x,
    epochs x, dev, seconds, test, stopped at)."""
    return all(len(p) > 4 and p[4] is not None for p in run["search"]["points"] if _trained_out(p))


def _trained_out(point: list) -> bool:
    """Whether a search point was trained to its end (not stopped at a rung; every point of a search-full run)."""
    return len(point) <= 5 or point[5] is None


def _full_search(run: dict) -> bool:
    """A default run from before the search stopped points: its points carry no "stopped at" field."""
    points = (run.get("search") or {}).get("points")
    return run.get("system") == "nerkit" and bool(points) and all(len(p) <= 5 for p in points)


def _elsewhere(run: dict, args) -> bool:
    """A cached run of a system named by --rerun made on another machine, thread count or number of runs at a time."""
    return run["system"] in getattr(args, "rerun", []) and \
        (run.get("machine"), run.get("threads"), run.get("jobs")) != (args.machine, max(1, args.threads), args.jobs)


def load_runs(path: Path) -> dict[str, dict]:
    runs = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if r.get("system") == "nerkit" and r.get("size") != "full" and "search" not in r:
                    r["system"] = ONCE  # cached before `nerkit train` searched by default: one training
                elif _full_search(r) and _points_tested(r):
                    r["system"] = FULL  # the four-full-trainings default: kept beside the new one, which runs anew
                if "error" not in r:
                    runs[key(r)] = r
    return runs


def summarise(runs: list[dict], datasets: list[str], sizes: list[str]) -> list[dict]:
    """One row per data set and size: default, recipe, oracle (best dev of the grid, its test), transfer, weights."""
    # One training as run (not a search's point of the same settings): the search's wall time is set beside it.
    timed = {(r["ds"], r["size"]): r for r in runs if r["system"] == ONCE and "train_seed" not in r}
    runs = with_search_points(runs)
    rows = []
    for ds in datasets:
        for size in sizes:
            every = [r for r in runs if r["ds"] == ds and r["size"] == size]
            mine = [r for r in every if "train_seed" not in r]  # the table: one training seed, the samples' own
            pick = {r["system"]: r for r in mine if r["system"] != "grid"}
            row = {"dataset": ds, "size": size}
            for name in ("nerkit", FULL, ONCE, "recipe", "transfer", "cw-sqrt", "cw-balanced"):
                if name in pick:
                    row[name] = pick[name]
            grid = [r for r in mine if r["system"] == "grid"] + _ones(pick.values(), size)
            if size != "full" and FULL not in row and (found := compose_search(grid)):
                row[FULL] = found
            if size != "full" and "nerkit" not in row and (found := replay_search(grid) or row.get(FULL)):
                row["nerkit"] = found
            if (ds, size) in timed:
                row["once_run"] = timed[(ds, size)]
            full_grid = complete_points({_point(r) for r in grid})
            if size != "full" and full_grid:  # a grid with holes is cut to its complete rows and columns, never filled
                best = max((r for r in grid if _point(r) in full_grid), key=lambda r: r["dev_f1"])
                row["oracle"] = {"test_f1": best["test_f1"], "dev_f1": best["dev_f1"], "points": len(full_grid),
                                 "lr_x": best.get("lr_x", 1.0), "epochs_x": best.get("epochs_x", 1.0)}
            if grid:
                row["grid"] = {_label(_point(r)): {"dev_f1": r["dev_f1"], "test_f1": r["test_f1"]} for r in grid}
            seeded: dict[tuple[float, float], list[dict]] = {}
            for r in [r for r in every if r["system"] == "grid"] + _ones(every, size):
                seeded.setdefault(_point(r), []).append({"dev_f1": r["dev_f1"], "test_f1": r["test_f1"]})
            if any(len(v) > 1 for v in seeded.values()):
                row["seeds"] = {_label(k): v for k, v in seeded.items() if len(v) > 1}
            if size != "full" and (avg := seed_oracle(seeded, searched=_searched_by_seed(every))):
                row["seed_oracle"] = avg
            if len(row) > 2:
                rows.append(row)
    return rows


def with_search_points(runs: list[dict]) -> list[dict]:
    """The runs, where a default run's search recorded every point's test F1, with those points as the grid's: they
    are the same trainings (a cached grid run of the same point and seed, made before 2026-11-27 with the learning rate
    rounded to 3 digits, is one seed-like perturbation away from it and is left out)."""
    # A search-full run (every point trained out) wins over a newer search of the same cell.
    searches = {(r["ds"], r["size"], r.get("train_seed")): r for r in sorted(runs, key=lambda r: r["system"] == FULL)
                if r["system"] in ("nerkit", FULL) and r.get("search") and _points_tested(r)}
    if not searches:
        return runs
    out = []
    for r in runs:
        s = searches.get((r["ds"], r["size"], r.get("train_seed")))
        if s and r["system"] in ("grid", ONCE) and list(_point(r)) in [p[:2] for p in s["search"]["points"]
                                                                        if _trained_out(p)]:
            continue
        out.append(r)
    for (ds, size, seed), r in searches.items():
        for a, b, dev, seconds, test, *_ in filter(_trained_out, r["search"]["points"]):
            point = {"system": ONCE} if (a, b) == (1.0, 1.0) else {"system": "grid", "lr_x": a, "epochs_x": b}
            out.append({"ds": ds, "size": size, **point, "dev_f1": dev, "test_f1": test, "wall_s": seconds,
                        "from_search": True, **({"train_seed": seed} if seed is not None else {})})
    return out


def _ones(runs, size: str) -> list[dict]:
    """The one-training runs of the derived budget (the grid's (1, 1) point): "once", or the default at full size."""
    return [r for r in runs if r["system"] == ONCE or (size == "full" and r["system"] == "nerkit")]


def compose_search(points: list[dict]) -> dict | None:
    """The default's search put together from cached runs of its four points (None if one is missing): the dev-best,
    ties to the earlier point as nerkit.search keeps them; marked "composed", its wall time the four runs' sum."""
    by_point = {_point(r): r for r in points}
    if not all(p in by_point for p in SEARCH_POINTS):
        return None
    best = max(SEARCH_POINTS, key=lambda p: by_point[p]["dev_f1"])  # max keeps the first of ties
    return {"test_f1": by_point[best]["test_f1"], "dev_f1": by_point[best]["dev_f1"], "composed": True,
            "wall_s": round(sum(by_point[p]["wall_s"] for p in SEARCH_POINTS), 1),
            "search": {"kept": list(best), "points": [[*p, by_point[p]["dev_f1"], by_point[p]["wall_s"]] for p in SEARCH_POINTS]}}


def replay_search(points: list[dict]) -> dict | None:
    """The default's search replayed on cached runs of its four points trained to their ends (None unless all four
    recorded their dev curves): at each of nerkit.search's rungs a point still training is judged on its best dev F1
    up to its first evaluation at or past that fraction of its planned epochs, those ``survivors`` rejects stop
    there, and the kept point is the dev-best of the others. Marked "replayed"; ``steps_x_once``: the epochs the four
    trained (stopped ones up to their rung), over one training's."""
    from nerkit.search import RUNGS, survivors

    by_point = {_point(r): r for r in points}
    if not all(by_point.get(p, {}).get("dev_curve") and by_point[p].get("epochs") for p in SEARCH_POINTS):
        return None
    curve = {p: [(e / by_point[p]["epochs"], f) for e, f in by_point[p]["dev_curve"]] for p in SEARCH_POINTS}
    status = {p: "running" for p in SEARCH_POINTS}
    trained = {p: curve[p][-1][0] for p in SEARCH_POINTS}  # fraction of its own plan; all of its run unless stopped
    best = {p: by_point[p]["dev_f1"] for p in SEARCH_POINTS}
    for rung in RUNGS:
        here = {}
        for p in SEARCH_POINTS:
            due = [i for i, (frac, _) in enumerate(curve[p]) if frac >= rung - 1e-9]
            if status[p] == "running" and not due:
                status[p] = "done"  # its early stopping ended it before this rung
            elif status[p] == "running":
                here[p] = (max(f for _, f in curve[p][:due[0] + 1]), curve[p][due[0]][0])
        race = [p for p in SEARCH_POINTS if status[p] != "stopped"]
        for p, go_on in zip(race, survivors([here[p][0] if p in here else best[p] for p in race])):
            if not go_on and p in here:
                status[p], (best[p], trained[p]) = "stopped", here[p]
    kept = max((p for p in SEARCH_POINTS if status[p] != "stopped"), key=lambda p: best[p])  # ties: the first
    return {"test_f1": by_point[kept]["test_f1"], "dev_f1": best[kept], "replayed": True,
            "steps_x_once": round(sum(trained[p] * p[1] for p in SEARCH_POINTS) / trained[(1.0, 1.0)], 2),
            "search": {"kept": list(kept), "points": [[*p, best[p], None, by_point[p]["test_f1"] if status[p] != "stopped"
                                                      else None, trained[p] if status[p] == "stopped" else None]
                                                     for p in SEARCH_POINTS]}}


def _searched_by_seed(every: list[dict]) -> list[dict]:
    """The default (searching) run for each training seed: run, or composed from that seed's cached points."""
    seeds = {r.get("train_seed") for r in every if r["system"] in ("nerkit", ONCE, "grid")}
    out = []
    for seed in seeds:
        same = [r for r in every if r.get("train_seed") == seed]
        live = [r for r in same if r["system"] == "nerkit"]
        points = [r for r in same if r["system"] in (ONCE, "grid")]
        found = live[0] if live else replay_search(points) or compose_search(points)
        if found:
            out.append(found)
    return out


def seed_oracle(seeded: dict[tuple[float, float], list[dict]], min_seeds: int = MIN_ORACLE_SEEDS,
                searched: list[dict] | None = None) -> dict | None:
    """The oracle over seed means: the grid points with at least min_seeds training seeds, if they form a complete
    grid; the point of best mean dev F1, its mean test F1, and beside it the one-training default's mean test F1 and,
    given one searching run per seed (``searched``, as many as the grid's seeds), the searching default's."""
    points = {p: v for p, v in seeded.items() if len(v) >= min_seeds}
    keep = complete_points(set(points))
    if not keep:
        return None
    points = {p: v for p, v in points.items() if p in keep}

    means = {p: {k: sum(x[k] for x in v) / len(v) for k in ("dev_f1", "test_f1")} for p, v in points.items()}
    best = max(means, key=lambda p: means[p]["dev_f1"])
    once = means[(1.0, 1.0)]
    seeds = min(len(v) for v in points.values())
    found = {}
    if searched and len(searched) >= seeds:
        found = {"search_test_f1": sum(r["test_f1"] for r in searched) / len(searched), "search_seeds": len(searched)}
    return {"lr_x": best[0], "epochs_x": best[1], "points": len(points), "seeds": seeds,
            "means": {_label(p): m for p, m in means.items()}, **means[best],
            "once_dev_f1": once["dev_f1"], "once_test_f1": once["test_f1"], **found}


def seed_oracle_table(rows: list[dict]) -> list[str]:
    """The default against the seed-averaged oracle, cell by cell (the target's comparison without one seed's luck)."""
    cells = [r for r in rows if "seed_oracle" in r]
    if not cells:
        return []
    lines = ["", "The default against the oracle over seed means (each point's dev and test F1 averaged over its training "
             "seeds; the point of best mean dev F1). Default: `nerkit train` as shipped (it searches here); once: "
             "one training of the derived budget (`--no-search`):", "",
             "| data set | train sentences | points x seeds | default test F1 (mean) | once test F1 (mean) "
             "| oracle test F1 (mean; point) | default - oracle | once - oracle |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    gaps: dict[str, list[float]] = {"search_test_f1": [], "once_test_f1": []}
    for r in cells:
        o = r["seed_oracle"]
        for k in gaps:
            if k in o:
                gaps[k].append((o[k] - o["test_f1"]) * 100)
        mine = f"{o['search_test_f1'] * 100:.1f}" if "search_test_f1" in o else ""
        d_mine = f"{(o['search_test_f1'] - o['test_f1']) * 100:+.1f}" if "search_test_f1" in o else ""
        cols = [mine, f"{o['once_test_f1'] * 100:.1f}", f"{o['test_f1'] * 100:.1f} (lr x{o['lr_x']:g}, epochs x{o['epochs_x']:g})",
                d_mine, f"{(o['once_test_f1'] - o['test_f1']) * 100:+.1f}"]
        lines.append(f"| {r['dataset']} | {r['size']} | {o['points']} x {o['seeds']} | " + " | ".join(cols) + " |")
    lines.append("")
    for k, name in (("search_test_f1", "the default"), ("once_test_f1", "one training")):
        if gaps[k]:
            lines.append(f"Within 1.0 of the seed-averaged oracle, {name}: {sum(g >= -1.0 for g in gaps[k])} of "
                         f"{len(gaps[k])} cells (mean gap {sum(gaps[k]) / len(gaps[k]):+.2f}).")
    lines += ["", f"Each grid point as a one-training rule over seed means, the same {len(cells)} cells:"]
    return lines + _rule_rows([(r["seed_oracle"]["means"], r["seed_oracle"]) for r in cells])


def _label(point: tuple[float, float]) -> str:
    return f"lr x{point[0]:g}, epochs x{point[1]:g}"


def rule_table(rows: list[dict]) -> list[str]:
    """Each grid point taken as the rule, over the cells with a complete grid: mean gap of its dev F1 to the
    dev-best point (how a rule is chosen: dev only), mean gap of its test F1 to the oracle's, cells within 1.0."""
    full = [r for r in rows if "oracle" in r]
    if not full:
        return []
    return ["", f"Each grid point as the default rule, over the {len(full)} cells with a complete grid "
            "(dev gap: how a rule is chosen; test gap and cells within 1.0: the target):"] + \
        _rule_rows([(r["grid"], r["oracle"]) for r in full])


def _rule_rows(cells: list[tuple[dict[str, dict], dict]]) -> list[str]:
    """The rule table: for each grid point found in every cell (cell = (dev/test F1 per point, the oracle's)), its
    mean dev gap to the dev-best, mean test gap to the oracle, and the cells where it is within 1.0 on test."""
    lines = ["", "| grid point | mean dev gap to the dev-best | mean test gap to the oracle | cells within 1.0 of the oracle |",
             "| --- | ---: | ---: | ---: |"]
    for point in sorted(set.intersection(*(set(points) for points, _ in cells))):
        dev = [(points[point]["dev_f1"] - best["dev_f1"]) * 100 for points, best in cells]
        test = [(points[point]["test_f1"] - best["test_f1"]) * 100 for points, best in cells]
        lines.append(f"| {point} | {sum(dev) / len(dev):+.2f} | {sum(test) / len(test):+.2f} | "
                     f"{sum(t >= -1.0 for t in test)} of {len(test)} |")
    return lines


def seed_table(rows: list[dict]) -> list[str]:
    """Grid points trained with several seeds: mean and spread, and the oracle chosen on the mean dev F1."""
    import statistics as st

    seeded = [r for r in rows if "seeds" in r]
    if not seeded:
        return []
    lines = ["", "Training seeds (same samples), dev F1 / test F1, mean ± standard deviation over the seeds:", "",
             "| data set | train sentences | grid point | seeds | dev F1 | test F1 |", "| --- | ---: | --- | ---: | ---: | ---: |"]
    for r in seeded:
        for point, v in sorted(r["seeds"].items()):
            dev, test = [x["dev_f1"] * 100 for x in v], [x["test_f1"] * 100 for x in v]
            lines.append(f"| {r['dataset']} | {r['size']} | {point} | {len(v)} | {st.mean(dev):.1f} ± {st.stdev(dev):.1f} "
                         f"| {st.mean(test):.1f} ± {st.stdev(test):.1f} |")
    return lines


def grid_table(rows: list[dict]) -> list[str]:
    """Every grid point's dev F1 (test F1) per data set and size."""
    gridded = [r for r in rows if len(r.get("grid", {})) > 1]
    if not gridded:
        return []
    points = sorted({p for r in gridded for p in r["grid"]})
    lines = ["", "The grid, dev F1 (test F1) per point; the oracle is the dev-best of a complete grid:", "",
             "| data set | train sentences | " + " | ".join(points) + " |", "| --- | ---: |" + " ---: |" * len(points)]
    for r in gridded:
        cells = [f"{_f(r['grid'].get(p), 'dev_f1')} ({_f(r['grid'].get(p))})" if p in r["grid"] else "" for p in points]
        lines.append(f"| {r['dataset']} | {r['size']} | " + " | ".join(cells) + " |")
    return lines


def _point(r: dict) -> tuple[float, float]:
    return (float(r.get("lr_x", 1.0)), float(r.get("epochs_x", 1.0)))


def complete_points(points: set[tuple[float, float]]) -> set[tuple[float, float]]:
    """The largest complete grid among ``points``: every learning-rate multiplier kept with every epochs multiplier
    kept, the default (1, 1) included, at least 6 points (else empty; of equal sizes, the one with more rates)."""
    from itertools import combinations

    lrs, eps = sorted({p[0] for p in points}), sorted({p[1] for p in points})
    best: set[tuple[float, float]] = set()
    for i in range(len(lrs), 0, -1):
        for rates in combinations(lrs, i):
            for j in range(len(eps), 0, -1):
                for epochs in combinations(eps, j):
                    cand = {(a, b) for a in rates for b in epochs}
                    if len(cand) > len(best) and (1.0, 1.0) in cand and cand <= points:
                        best = cand
    return best if len(best) >= MIN_GRID_POINTS else set()


def _f(r: dict | None, k: str = "test_f1") -> str:
    return "" if not r or r.get(k) is None else f"{r[k] * 100:.1f}"


def markdown(rows: list[dict], note: str) -> str:
    lines = [note, "",
             "| data set | train sentences | nerkit test F1 | recipe test F1 | nerkit - recipe | oracle test F1 (grid point, points) "
             "| nerkit - oracle | nerkit dev F1 | nerkit wall s | recipe wall s | nerkit / recipe time | once test F1 "
             "| once - oracle |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        n, rc, o, one = r.get("nerkit"), r.get("recipe"), r.get("oracle"), r.get(ONCE)
        d_rec = f"{(n['test_f1'] - rc['test_f1']) * 100:+.1f}" if n and rc else ""
        d_or = f"{(n['test_f1'] - o['test_f1']) * 100:+.1f}" if n and o else ""
        opt = f"{_f(o)} (lr x{o['lr_x']:g}, epochs x{o['epochs_x']:g}; {o['points']})" if o else ""
        ratio = f"{n['wall_s'] / rc['wall_s']:.2f}x" if n and rc and n.get("wall_s") else ""
        mark = "*" if n and n.get("composed") else "†" if n and n.get("replayed") else ""
        d_one = f"{(one['test_f1'] - o['test_f1']) * 100:+.1f}" if one and o else ""
        lines.append(f"| {r['dataset']} | {r['size']} | {_f(n)}{mark} | {_f(rc)} | {d_rec} | {opt} | {d_or} | {_f(n, 'dev_f1')} "
                     f"| {n.get('wall_s', '') if n else ''} | {rc['wall_s'] if rc else ''} | {ratio} | {_f(one)} | {d_one} |")
    if any(r.get("nerkit", {}).get("composed") or r.get("nerkit", {}).get("replayed") for r in rows):
        lines += ["", "nerkit is `nerkit train` as shipped: up to 1,000 sentences it starts four points (learning rate "
                  "and epochs x1/x2), stops those behind on dev at its rungs and keeps the dev-best of the rest. "
                  "† replayed on the dev curves of the cached full runs of those four points (nerkit.search's rungs "
                  "and margin; no wall time); * where the curves are missing, composed from those runs as the "
                  "previous default (all four trained to their ends, its wall time their sum). once: one "
                  "training of the derived budget (`--no-search`), the grid's (1, 1) point."]
    extra = [r for r in rows if any(k in r for k in ("transfer", "cw-sqrt", "cw-balanced"))]
    if any("transfer" in r for r in extra):
        lines += ["", "Transfer (nerkit defaults from the transfer model vs from the base encoder), test F1 (dev F1):", "",
                  "| data set | train sentences | base encoder | transfer | difference |", "| --- | ---: | ---: | ---: | ---: |"]
        for r in extra:
            if "transfer" in r and (base := _base_for(r, r["transfer"])):
                lines.append(f"| {r['dataset']} | {r['size']} | {_f(base)} ({_f(base, 'dev_f1')}) | "
                             f"{_f(r['transfer'])} ({_f(r['transfer'], 'dev_f1')}) | "
                             f"{(r['transfer']['test_f1'] - base['test_f1']) * 100:+.1f} |")
    if any("cw-sqrt" in r for r in extra):
        lines += ["", "Class weights, dev F1 (test F1):", "",
                  "| data set | train sentences | none | sqrt | balanced |", "| --- | ---: | ---: | ---: | ---: |"]
        for r in extra:
            if "cw-sqrt" in r or "cw-balanced" in r:
                base = _base_for(r, r.get("cw-sqrt") or r["cw-balanced"])
                cells = [f"{_f(x, 'dev_f1')} ({_f(x)})" for x in (base, r.get("cw-sqrt"), r.get("cw-balanced"))]
                lines.append(f"| {r['dataset']} | {r['size']} | " + " | ".join(cells) + " |")
    lines += halving_table(rows) + grid_table(rows) + rule_table(rows) + seed_table(rows) + seed_oracle_table(rows)
    return "\n".join(lines) + "\n"


def halving_table(rows: list[dict]) -> list[str]:
    """The search that stops points behind on dev (the default, run or replayed) against the previous default that
    trained all four to their ends (run, or composed): test F1, the oracle, and its cost against one training."""
    cells = [r for r in rows if r.get("nerkit", {}).get("search") and not r["nerkit"].get("composed")]
    if not cells:
        return []
    lines = ["", "The search stopping points behind on dev against the four full trainings (the previous default); "
             "x one training: wall time over a `--no-search` run's on the same machine, threads and runs at a time; "
             "steps x one: optimizer steps of all points over one training's:", "",
             "| data set | train sentences | default test F1 | kept | stopped at | four full: test F1 (kept) "
             "| default - four full | oracle test F1 | default - oracle | default wall s | x one training | steps x one |",
             "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    worse, near, ratios = 0, 0, []
    for r in cells:
        n, full, o, one = r["nerkit"], r.get(FULL), r.get("oracle"), r.get("once_run")
        stopped = ", ".join(f"{_label(tuple(p[:2]))} {_stop(p, n)}" for p in n["search"]["points"]
                            if len(p) > 5 and p[5] is not None) or "none"
        kept = _label(tuple(n["search"]["kept"])) + ("†" if n.get("replayed") else "")
        d_full = (n["test_f1"] - full["test_f1"]) * 100 if full else None
        d_or = (n["test_f1"] - o["test_f1"]) * 100 if o else None
        worse += d_full is not None and d_full < -0.5
        near += d_or is not None and d_or >= -1.0
        ratio = _wall_ratio(n, one)
        ratios += [ratio] if ratio else []
        cols = [_f(n), kept, stopped, f"{_f(full)} ({_label(tuple(full['search']['kept']))})" if full else "",
                f"{d_full:+.1f}" if d_full is not None else "", _f(o), f"{d_or:+.1f}" if d_or is not None else "",
                str(n.get("wall_s", "")), f"{ratio:.2f}x" if ratio else "", _steps_ratio(n, one)]
        lines.append(f"| {r['dataset']} | {r['size']} | " + " | ".join(cols) + " |")
    lines += ["", f"Within 1.0 of the oracle: {near} of {sum('oracle' in r for r in cells)} cells; more than 0.5 "
              f"below the four full trainings: {worse} of {sum(FULL in r for r in cells)}"
              + (f"; wall time {min(ratios):.2f}x-{max(ratios):.2f}x one training (mean {sum(ratios) / len(ratios):.2f}x)."
                 if ratios else ".")]
    return lines


def _stop(point: list, run: dict) -> str:
    """Where a point was stopped: its step of those planned (a run), or the fraction of its plan (a replay)."""
    if run.get("replayed"):
        return f"at {point[5]:.0%}"
    return f"at step {point[5]}/{point[7]}" if len(point) > 7 and point[7] else f"at step {point[5]}"


def _wall_ratio(search: dict, once: dict | None) -> float | None:
    """The search's wall time over one training's, only when both ran on the same machine, threads and jobs."""
    same = ("machine", "threads", "jobs")
    if not once or once.get("from_search") or not search.get("wall_s") or not once.get("wall_s") or \
            any(search.get(k) != once.get(k) for k in same):
        return None
    return search["wall_s"] / once["wall_s"]


def _steps_ratio(search: dict, once: dict | None) -> str:
    """Optimizer steps of every point over one training's (its run's steps, else the (1, 1) point's plan)."""
    if search.get("replayed"):
        return f"{search['steps_x_once']:.2f}x"
    points = search["search"]["points"]
    if not all(len(p) > 7 and p[6] for p in points):
        return ""
    one = once.get("steps") if once and not once.get("from_search") else None
    one = one or next(p[7] for p in points if tuple(p[:2]) == (1.0, 1.0))
    return f"{sum(p[6] for p in points) / one:.2f}x"


def _base_for(row: dict, other: dict) -> dict | None:
    """The base-encoder default to set a variant run against: searching or not, as the variant was trained."""
    searched = "search" in other
    return next((r for r in (row.get("nerkit"), row.get(ONCE)) if r and ("search" in r) == searched), None)


def plot(rows: list[dict], ds: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in rows if r["dataset"] == ds]
    if not mine:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [r["size"] for r in mine]
    names = {"oracle": "oracle (dev-best grid)", ONCE: "one training (--no-search)"}
    for name, style in (("nerkit", "o-"), (ONCE, "x-"), ("recipe", "s--"), ("oracle", "^:"), ("transfer", "d-.")):
        pts = [(i, r[name]["test_f1"] * 100) for i, r in enumerate(mine) if name in r]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=names.get(name, name))
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("training sentences")
    ax.set_ylabel("test entity F1")
    ax.set_title(f"{ds}: learning curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("NERKIT_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--recipe", type=Path, default=ROOT.parent / "shared" / "baselines" / "classic_recipe.py")
    ap.add_argument("--model", help="base encoder directory (default: the offline all-MiniLM-L6-v2)")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--systems", default="nerkit,recipe,oracle")
    ap.add_argument("--transfer", type=Path, help="an existing NER model directory to start from (adds transfer runs)")
    ap.add_argument("--transfer-datasets", default="finer-ord,bc5cdr")
    ap.add_argument("--class-weights", action="store_true", help="add sqrt/balanced class-weight runs")
    ap.add_argument("--quick", action="store_true", help="tsa-md and wnut17 at 100 sentences, one training (--no-search) and the recipe: a few minutes")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (one per GPU stream or CPU share)")
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    ap.add_argument("--seed", type=int, default=13, help="the seed of the samples (and of training, by default)")
    ap.add_argument("--train-seeds", default="", help="more training seeds for the default and the grid (e.g. 14,15)")
    ap.add_argument("--keep", action="store_true", help="keep the default runs' model directories")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "domains")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--deadline", type=float, default=0, help="stop starting runs after this many seconds")
    ap.add_argument("--report", action="store_true", help="only write the tables and plots from the cached runs")
    ap.add_argument("--lr-grid", default=",".join(f"{x:g}" for x in LR_GRID), help="the oracle's learning-rate multipliers")
    ap.add_argument("--budget-grid", default=",".join(f"{x:g}" for x in BUDGET_GRID), help="the oracle's epochs multipliers")
    ap.add_argument("--full-points", default="", help="grid points LR_X:EPOCHS_X also run at full size (e.g. 2:1)")
    ap.add_argument("--stem", default=None, help="name of the written tables and plots (default: domains)")
    ap.add_argument("--rerun", default="", help="systems to run again where their cached run was made on another "
                    "machine, thread count or number of runs at a time (e.g. once: a wall time to set the search's beside)")
    args = ap.parse_args()
    if args.quick:
        # one training, not the default's search (5x longer): the quick run checks the benchmark works, in minutes
        args.datasets, args.sizes, args.systems = "tsa-md,wnut17", "100", f"{ONCE},recipe"
    args.datasets = args.datasets.split(",")
    args.sizes = args.sizes.split(",")
    args.systems = args.systems.split(",")
    args.transfer_datasets = args.transfer_datasets.split(",")
    args.train_seeds = [int(x) for x in args.train_seeds.split(",") if x]
    args.rerun = [x for x in args.rerun.split(",") if x]
    args.lr_grid = [float(x) for x in args.lr_grid.split(",")]
    args.budget_grid = [float(x) for x in args.budget_grid.split(",")]
    args.full_points = [tuple(float(v) for v in p.split(":")) for p in args.full_points.split(",") if p]
    if args.model is None:
        sys.path.insert(0, str(ROOT))
        from nerkit.train import default_model

        args.model = default_model()
    sys.path.insert(0, str(ROOT / "bench"))
    from machine import describe

    args.machine = describe()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.work / "runs.jsonl"
    done = load_runs(cache)
    todo = [] if args.report else [j for j in plan(args) if key(j) not in done or _redo(done[key(j)])
                                    or _elsewhere(done[key(j)], args)]
    print(f"{len(todo)} runs to do ({len(done)} cached in {cache})", flush=True)
    t_start, failed = time.time(), 0
    with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool, cache.open("a") as log:
        futures = {}
        for job in todo:
            futures[pool.submit(_guarded, job, args, args.work, t_start)] = job
        for i, fut in enumerate(cf.as_completed(futures), 1):
            res = fut.result()
            if res is None:
                continue
            log.write(json.dumps(res) + "\n")
            log.flush()
            if "error" not in res:
                done[key(res)] = res
            failed += "error" in res
            status = res.get("error", "").strip().splitlines()[-1:] if "error" in res else f"test F1 {res['test_f1'] * 100:.1f}"
            print(f"[{i}/{len(todo)}] {res['ds']} {res['size']} {res['system']} {res.get('lr_x', '')} "
                  f"{res.get('epochs_x', '')}: {status} ({res['wall_s']:.0f} s)", flush=True)
    runs = list(done.values())
    all_ds = [d for d in DATASETS if any(r["ds"] == d for r in runs)]
    rows = summarise(runs, all_ds, SIZES)
    machines = sorted({f"{r.get('machine', 'not recorded')} ({r.get('jobs', '?')} runs at a time, "
                       f"{r.get('threads', '?')} threads each)" for r in runs})
    note = (f"`python bench/domains.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')} from the runs cached in "
            f"{cache} ({len(runs)} runs); seed {args.seed}; dev capped at {DEV_CAP} sentences for sizes up to 1,000; "
            "test sets complete. Machines: " + "; ".join(machines) + ".")
    stem = args.stem or ("domains_quick" if args.quick else "domains")
    (args.out / f"{stem}.md").write_text(markdown(rows, note))
    (args.out / f"{stem}.json").write_text(json.dumps({"note": note, "rows": rows}, indent=1))
    for ds in all_ds:
        plot(rows, ds, args.out / f"{stem}_{ds}.png")
    print(markdown(rows, note))
    jobs.exit_if(failed)


def _guarded(job, args, work, t_start):
    if args.deadline and time.time() - t_start > args.deadline:
        return None
    try:
        return execute(job, args, work)
    except Exception as exc:  # noqa: BLE001 - one failed run is recorded, the benchmark goes on
        return {**job, "error": f"{type(exc).__name__}: {exc}", "wall_s": 0.0}


if __name__ == "__main__":
    main()
