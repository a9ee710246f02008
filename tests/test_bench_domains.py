"""bench/domains.py's bookkeeping: what it plans, and that the oracle is chosen on dev (never on test)."""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def domains():
    spec = importlib.util.spec_from_file_location("bench_domains", ROOT / "bench" / "domains.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _args(**kw):
    base = {"datasets": ["wnut17"], "sizes": ["100", "full"], "systems": ["nerkit", "recipe", "oracle"],
            "transfer": None, "transfer_datasets": ["finer-ord"], "class_weights": False,
            "lr_grid": [0.5, 1.0, 2.0], "budget_grid": [0.5, 1.0, 2.0], "full_points": [], "train_seeds": []}
    return argparse.Namespace(**{**base, **kw})


def test_plan_has_the_grid_without_repeating_the_default_and_no_grid_at_full_size(domains):
    jobs = domains.plan(_args())
    grid = [j for j in jobs if j["system"] == "grid"]
    assert len(grid) == 8 and all(j["size"] == "100" for j in grid)
    assert {(j["lr_x"], j["epochs_x"]) for j in grid} == {(a, b) for a in domains.LR_GRID for b in domains.BUDGET_GRID} - {(1.0, 1.0)}
    assert sorted(j["system"] for j in jobs if j["size"] == "full") == ["nerkit", "recipe"]
    keys = [domains.key(j) for j in jobs]
    assert len(keys) == len(set(keys))
    extra = domains.plan(_args(datasets=["wnut17", "finer-ord"], sizes=["1000"], systems=["nerkit"], class_weights=True,
                               transfer=Path("m")))
    assert sorted((j["ds"], j["system"]) for j in extra) == [
        ("finer-ord", "cw-balanced"), ("finer-ord", "cw-sqrt"), ("finer-ord", "nerkit"), ("finer-ord", "transfer"),
        ("wnut17", "cw-balanced"), ("wnut17", "cw-sqrt"), ("wnut17", "nerkit")]


def _run(system, dev, test, **kw):
    return {"ds": "wnut17", "size": "100", "system": system, "dev_f1": dev, "test_f1": test, "wall_s": 10.0, **kw}


def test_oracle_is_the_dev_best_point_and_reports_its_test_score(domains):
    runs = [_run("nerkit", 0.40, 0.30), _run("recipe", 0.01, 0.02),
            _run("grid", 0.45, 0.20, lr_x=2.0, epochs_x=0.5),   # best on dev, worse on test
            _run("grid", 0.35, 0.50, lr_x=0.5, epochs_x=2.0)]   # best on test: must not be picked
    rest = [(a, b) for a in domains.LR_GRID for b in domains.BUDGET_GRID if (a, b) not in ((1.0, 1.0), (2.0, 0.5), (0.5, 2.0))]
    (partial,) = domains.summarise(runs + [_run("grid", 0.1, 0.9, lr_x=a, epochs_x=b) for a, b in rest[:-1]],
                                   ["wnut17"], ["100"])
    assert "oracle" not in partial  # 8 of 9 points: no oracle yet
    (row,) = domains.summarise(runs + [_run("grid", 0.1, 0.9, lr_x=a, epochs_x=b) for a, b in rest], ["wnut17"], ["100"])
    assert row["oracle"] == {"test_f1": 0.20, "dev_f1": 0.45, "points": 9, "lr_x": 2.0, "epochs_x": 0.5}
    md = domains.markdown([row], "note")
    assert "| wnut17 | 100 | 30.0 | 2.0 | +28.0 | 20.0 (lr x2, epochs x0.5; 9) | +10.0 | 40.0 |" in md


def test_cache_resumes_and_skips_failed_runs(domains, tmp_path):
    ok, failed = _run("nerkit", 0.4, 0.3), {**_run("recipe", 0, 0), "error": "killed"}
    (tmp_path / "runs.jsonl").write_text(json.dumps(ok) + "\n" + json.dumps(failed) + "\n")
    done = domains.load_runs(tmp_path / "runs.jsonl")
    assert list(done) == [domains.key(ok)]  # the failed run is done again on the next start


def test_splits_are_seeded_samples_shared_by_every_system(domains, tmp_path):
    data = tmp_path / "data" / "toy"
    data.mkdir(parents=True)
    sents = [f"w{i}\tB-X\nx{i}\tO" for i in range(50)]
    for name in ("train", "valid", "test"):
        (data / f"{name}.txt").write_text("\n\n".join(sents) + "\n")
    a = domains.make_split(tmp_path / "data", "toy", "20", tmp_path / "w1", seed=13)
    b = domains.make_split(tmp_path / "data", "toy", "20", tmp_path / "w2", seed=13)
    c = domains.make_split(tmp_path / "data", "toy", "20", tmp_path / "w3", seed=14)
    assert (a / "train.txt").read_text() == (b / "train.txt").read_text() != (c / "train.txt").read_text()
    assert len(domains.read_sentences(a / "train.txt")) == 20
    assert (a / "test.txt").read_text() == (data / "test.txt").read_text()  # the test set is always complete


def test_a_six_point_grid_and_a_rule_check_at_full_size(domains):
    jobs = domains.plan(_args(lr_grid=[1.0, 2.0, 4.0], budget_grid=[1.0, 2.0], full_points=[(2.0, 1.0)]))
    assert sorted((j["lr_x"], j["epochs_x"]) for j in jobs if j["system"] == "grid" and j["size"] == "100") == [
        (1.0, 2.0), (2.0, 1.0), (2.0, 2.0), (4.0, 1.0), (4.0, 2.0)]
    assert [(j["lr_x"], j["epochs_x"]) for j in jobs if j["system"] == "grid" and j["size"] == "full"] == [(2.0, 1.0)]
    six = [_run("nerkit", 0.40, 0.30)] + [_run("grid", 0.3 + a / 100, 0.2, lr_x=a, epochs_x=b)
                                           for a in (1.0, 2.0, 4.0) for b in (1.0, 2.0) if (a, b) != (1.0, 1.0)]
    (row,) = domains.summarise(six, ["wnut17"], ["100"])
    assert row["oracle"]["points"] == 6 and row["oracle"]["lr_x"] == 1.0  # the default's dev 0.40 beats 0.3 + 0.04
    assert "oracle" not in domains.summarise(six[:-1], ["wnut17"], ["100"])[0]  # a hole in the grid: no oracle
    full = [{**r, "size": "full"} for r in six]
    assert "oracle" not in domains.summarise(full, ["wnut17"], ["full"])[0]  # never an oracle at full size


def test_training_seeds_repeat_the_default_and_the_grid_and_are_reported_apart(domains):
    jobs = domains.plan(_args(lr_grid=[1.0, 2.0], budget_grid=[1.0, 2.0, 4.0], train_seeds=[14]))
    seeded = [j for j in jobs if "train_seed" in j]
    assert len(seeded) == 6 and all(j["size"] == "100" and j["system"] in ("nerkit", "grid") for j in seeded)
    assert len({domains.key(j) for j in jobs}) == len(jobs)  # a seed's run never takes another's cache entry
    runs = [_run("nerkit", 0.40, 0.30), _run("nerkit", 0.44, 0.36, train_seed=14), _run("recipe", 0.01, 0.02)]
    (row,) = domains.summarise(runs, ["wnut17"], ["100"])
    assert row["nerkit"]["test_f1"] == 0.30  # the table keeps the samples' own seed
    assert [x["test_f1"] for x in row["seeds"]["lr x1, epochs x1"]] == [0.30, 0.36]
    assert "| wnut17 | 100 | lr x1, epochs x1 | 2 | 42.0 ± 2.8 | 33.0 ± 4.2 |" in domains.markdown([row], "note")


def test_the_seed_averaged_oracle_takes_the_best_mean_dev_point_of_a_complete_seeded_grid(domains):
    points = [(a, b) for a in (1.0, 2.0) for b in (0.5, 1.0, 2.0)]
    runs = []
    for seed in (None, 14, 15):
        extra = {} if seed is None else {"train_seed": seed}
        for a, b in points:
            # (2, 2) is lucky once (best single dev), (2, 1) best on average; test follows the opposite way
            dev = {(2.0, 2.0): 0.60 if seed is None else 0.40, (2.0, 1.0): 0.50}.get((a, b), 0.45)
            test = {(2.0, 1.0): 0.30, (2.0, 2.0): 0.70}.get((a, b), 0.40)
            system = "nerkit" if (a, b) == (1.0, 1.0) else "grid"
            runs.append(_run(system, dev, test, **extra, **({} if system == "nerkit" else {"lr_x": a, "epochs_x": b})))
    (row,) = domains.summarise(runs, ["wnut17"], ["100"])
    assert (row["oracle"]["lr_x"], row["oracle"]["epochs_x"]) == (2.0, 2.0)  # one seed: the lucky point
    avg = row["seed_oracle"]
    assert (avg["lr_x"], avg["epochs_x"], avg["points"], avg["seeds"]) == (2.0, 1.0, 6, 3)
    assert avg["test_f1"] == pytest.approx(0.30) and avg["default_test_f1"] == pytest.approx(0.40)
    md = domains.markdown([row], "note")
    assert "| wnut17 | 100 | 6 x 3 | 40.0 | 30.0 (lr x2, epochs x1) | +10.0 |" in md
    assert "Within 1.0 of the seed-averaged oracle: 1 of 1 cells." in md
    assert "| lr x1, epochs x1 | -5.00 | +10.00 | 1 of 1 |" in md  # the default as the rule, over seed means
    assert "| lr x2, epochs x2 | -3.33 | +40.00 | 1 of 1 |" in md
    two_seeds = [r for r in runs if r.get("train_seed") != 15]
    assert "seed_oracle" not in domains.summarise(two_seeds, ["wnut17"], ["100"])[0]  # fewer than three seeds: none
    holes = [r for r in runs if not (r.get("train_seed") == 15 and r.get("lr_x") == 2.0 and r.get("epochs_x") == 0.5)]
    assert "seed_oracle" not in domains.summarise(holes, ["wnut17"], ["100"])[0]  # a point short of seeds: no grid
