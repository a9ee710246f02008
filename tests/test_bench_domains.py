"""bench/domains.py's bookkeeping: what it plans, and that the oracle is chosen on dev (never on test)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
from conftest import load_bench

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def domains():
    return load_bench("domains")


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
    # the grid's (1, 1) point is one training (--no-search); the default searches at 100 sentences
    assert sorted(j["system"] for j in jobs if j["size"] == "100" and j["system"] != "grid") == ["nerkit", "once", "recipe"]
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
    runs = [_run("once", 0.40, 0.30), _run("recipe", 0.01, 0.02),
            _run("grid", 0.45, 0.20, lr_x=2.0, epochs_x=0.5),   # best on dev, worse on test
            _run("grid", 0.35, 0.50, lr_x=0.5, epochs_x=2.0)]   # best on test: must not be picked
    rest = [(a, b) for a in domains.LR_GRID for b in domains.BUDGET_GRID if (a, b) not in ((1.0, 1.0), (2.0, 0.5), (0.5, 2.0))]
    (partial,) = domains.summarise(runs + [_run("grid", 0.1, 0.9, lr_x=a, epochs_x=b) for a, b in rest[:-1]],
                                   ["wnut17"], ["100"])
    # 8 of 9 points: cut to the complete 6-point grid without the hole (lr x1/x2 by epochs x0.5/x1/x2), never filled
    assert partial["oracle"]["points"] == 6 and partial["oracle"]["lr_x"] == 2.0
    (row,) = domains.summarise(runs + [_run("grid", 0.1, 0.9, lr_x=a, epochs_x=b) for a, b in rest], ["wnut17"], ["100"])
    assert row["oracle"] == {"test_f1": 0.20, "dev_f1": 0.45, "points": 9, "lr_x": 2.0, "epochs_x": 0.5}
    md = domains.markdown([row], "note")
    # no default run cached: composed from its four points (the (1, 1) point is the dev-best of them), marked *
    assert row["nerkit"]["composed"] and row["nerkit"]["search"]["kept"] == [1.0, 1.0]
    assert "| wnut17 | 100 | 30.0* | 2.0 | +28.0 | 20.0 (lr x2, epochs x0.5; 9) | +10.0 | 40.0 | 40.0 | 10.0 | 4.00x | 30.0 | +10.0 |" in md


def test_cache_resumes_and_skips_failed_runs(domains, tmp_path):
    ok, failed = _run("nerkit", 0.4, 0.3, search={"kept": [1.0, 1.0], "points": []}), {**_run("recipe", 0, 0), "error": "killed"}
    older = {**_run("nerkit", 0.5, 0.4), "size": "300"}  # cached before the default searched: one training
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (ok, failed, older)))
    done = domains.load_runs(tmp_path / "runs.jsonl")
    assert list(done) == [domains.key(ok), domains.key({**older, "system": "once"})]  # the failed run is done again
    assert domains.key({"ds": "wnut17", "size": "300", "system": "nerkit"}) not in done  # the default runs anew


def test_the_composed_search_is_the_dev_best_of_the_four_points_ties_to_the_earlier(domains):
    import nerkit.search

    assert list(domains.SEARCH_POINTS) == [(a, b) for b in nerkit.search.EPOCHS_X for a in nerkit.search.LR_X]
    pts = [_run("once", 0.5, 0.3), _run("grid", 0.6, 0.2, lr_x=2.0, epochs_x=1.0),
           _run("grid", 0.6, 0.9, lr_x=1.0, epochs_x=2.0), _run("grid", 0.1, 0.8, lr_x=2.0, epochs_x=0.5)]
    assert domains.compose_search(pts) is None  # (2, 2) missing
    found = domains.compose_search(pts + [_run("grid", 0.55, 0.7, lr_x=2.0, epochs_x=2.0)])
    assert found["search"]["kept"] == [2.0, 1.0] and found["test_f1"] == 0.2 and found["wall_s"] == 40.0
    live = _run("nerkit", 0.58, 0.5, search={"kept": [2.0, 2.0], "points": []})
    (row,) = domains.summarise(pts + [live], ["wnut17"], ["100"])
    assert row["nerkit"] is live  # a run of the default itself wins over composing


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
    six = [_run("once", 0.40, 0.30)] + [_run("grid", 0.3 + a / 100, 0.2, lr_x=a, epochs_x=b)
                                           for a in (1.0, 2.0, 4.0) for b in (1.0, 2.0) if (a, b) != (1.0, 1.0)]
    (row,) = domains.summarise(six, ["wnut17"], ["100"])
    assert row["oracle"]["points"] == 6 and row["oracle"]["lr_x"] == 1.0  # the default's dev 0.40 beats 0.3 + 0.04
    assert "oracle" not in domains.summarise(six[:-1], ["wnut17"], ["100"])[0]  # a hole in the grid: no oracle
    full = [{**r, "size": "full"} for r in six]
    assert "oracle" not in domains.summarise(full, ["wnut17"], ["full"])[0]  # never an oracle at full size


def test_training_seeds_repeat_the_default_and_the_grid_and_are_reported_apart(domains):
    jobs = domains.plan(_args(lr_grid=[1.0, 2.0], budget_grid=[1.0, 2.0, 4.0], train_seeds=[14]))
    seeded = [j for j in jobs if "train_seed" in j]
    assert len(seeded) == 7 and all(j["size"] == "100" and j["system"] in ("nerkit", "once", "grid") for j in seeded)
    assert len({domains.key(j) for j in jobs}) == len(jobs)  # a seed's run never takes another's cache entry
    runs = [_run("once", 0.40, 0.30), _run("once", 0.44, 0.36, train_seed=14), _run("recipe", 0.01, 0.02)]
    (row,) = domains.summarise(runs, ["wnut17"], ["100"])
    assert row["once"]["test_f1"] == 0.30  # the table keeps the samples' own seed
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
            system = "once" if (a, b) == (1.0, 1.0) else "grid"
            runs.append(_run(system, dev, test, **extra, **({} if system == "once" else {"lr_x": a, "epochs_x": b})))
    (row,) = domains.summarise(runs, ["wnut17"], ["100"])
    assert (row["oracle"]["lr_x"], row["oracle"]["epochs_x"]) == (2.0, 2.0)  # one seed: the lucky point
    avg = row["seed_oracle"]
    assert (avg["lr_x"], avg["epochs_x"], avg["points"], avg["seeds"]) == (2.0, 1.0, 6, 3)
    assert avg["test_f1"] == pytest.approx(0.30) and avg["once_test_f1"] == pytest.approx(0.40)
    # the searching default, composed per seed: (2, 2) kept for the lucky seed (test 0.70), (2, 1) for the others
    assert avg["search_test_f1"] == pytest.approx((0.70 + 0.30 + 0.30) / 3) and avg["search_seeds"] == 3
    md = domains.markdown([row], "note")
    assert "| wnut17 | 100 | 6 x 3 | 43.3 | 40.0 | 30.0 (lr x2, epochs x1) | +13.3 | +10.0 |" in md
    assert "Within 1.0 of the seed-averaged oracle, the default: 1 of 1 cells (mean gap +13.33)." in md
    assert "Within 1.0 of the seed-averaged oracle, one training: 1 of 1 cells (mean gap +10.00)." in md
    assert "| lr x1, epochs x1 | -5.00 | +10.00 | 1 of 1 |" in md  # the default as the rule, over seed means
    assert "| lr x2, epochs x2 | -3.33 | +40.00 | 1 of 1 |" in md
    two_seeds = [r for r in runs if r.get("train_seed") != 15]
    assert "seed_oracle" not in domains.summarise(two_seeds, ["wnut17"], ["100"])[0]  # fewer than three seeds: none
    holes = [r for r in runs if not (r.get("train_seed") == 15 and r.get("lr_x") == 2.0 and r.get("epochs_x") == 0.5)]
    assert "seed_oracle" not in domains.summarise(holes, ["wnut17"], ["100"])[0]  # a point short of seeds: no grid


def test_a_searching_default_run_supplies_its_four_points_to_the_grid(domains):
    cached = [_run("once", 0.50, 0.30), _run("grid", 0.70, 0.90, lr_x=2.0, epochs_x=2.0),  # rounded-lr run of (2, 2)
              _run("grid", 0.20, 0.10, lr_x=1.0, epochs_x=0.5), _run("grid", 0.20, 0.10, lr_x=2.0, epochs_x=0.5),
              _run("grid", 0.20, 0.10, lr_x=2.0, epochs_x=1.0), _run("grid", 0.20, 0.10, lr_x=1.0, epochs_x=2.0)]
    pts = [[1.0, 1.0, 0.50, 9.0, 0.30], [2.0, 1.0, 0.60, 9.0, 0.40], [1.0, 2.0, 0.40, 9.0, 0.50], [2.0, 2.0, 0.55, 9.0, 0.95]]
    live = _run("nerkit", 0.60, 0.40, search={"kept": [2.0, 1.0], "points": pts})
    (row,) = domains.summarise(cached + [live], ["wnut17"], ["100"])
    assert row["nerkit"] is live and row["grid"]["lr x2, epochs x2"] == {"dev_f1": 0.55, "test_f1": 0.95}
    assert (row["oracle"]["lr_x"], row["oracle"]["epochs_x"], row["oracle"]["test_f1"]) == (2.0, 1.0, 0.40)
    no_tests = {**live, "search": {"kept": [2.0, 1.0], "points": [p[:4] for p in pts]}}  # older record: not used
    (old,) = domains.summarise(cached + [no_tests], ["wnut17"], ["100"])
    assert old["oracle"]["test_f1"] == 0.90 and old["grid"]["lr x2, epochs x1"]["dev_f1"] == 0.20


def test_a_default_run_without_its_points_test_scores_is_run_again(domains):
    old = _run("nerkit", 0.6, 0.4, search={"kept": [1.0, 1.0], "points": [[1.0, 1.0, 0.6, 9.0]]})
    new = _run("nerkit", 0.6, 0.4, search={"kept": [1.0, 1.0], "points": [[1.0, 1.0, 0.6, 9.0, 0.4]]})
    assert domains._redo(old) and not domains._redo(new) and not domains._redo(_run("once", 0.6, 0.4))


def _halving(test, kept, stopped, **kw):
    """A default run of the search that stops points: (lr x, epochs x, dev, seconds, test, stopped at, steps,
    planned, curve) per point."""
    pts = [[1.0, 1.0, 0.50, 9.0, 0.30, None, 100, 100, []], [2.0, 1.0, 0.40, 2.0, None, 20, 20, 100, []],
           [1.0, 2.0, 0.60, 9.0, 0.45, None, 200, 200, []], [2.0, 2.0, 0.30, 4.0, None, 40, 40, 200, []]]
    assert [tuple(p[:2]) for p in pts if p[5]] == stopped
    return _run("nerkit", 0.60, test, search={"kept": kept, "points": pts}, **kw)


def test_an_old_default_run_is_the_four_full_trainings_and_the_new_one_runs_beside_it(domains, tmp_path):
    pts = [[1.0, 1.0, 0.50, 9.0, 0.30], [2.0, 1.0, 0.61, 9.0, 0.40], [1.0, 2.0, 0.60, 9.0, 0.45],
           [2.0, 2.0, 0.55, 9.0, 0.95]]
    old = _run("nerkit", 0.61, 0.40, search={"kept": [2.0, 1.0], "points": pts})
    (tmp_path / "runs.jsonl").write_text(json.dumps(old) + "\n")
    done = domains.load_runs(tmp_path / "runs.jsonl")
    assert list(done) == [domains.key({**old, "system": "search-full"})]  # the new default is not cached: runs anew
    new = _halving(0.45, [1.0, 2.0], [(2.0, 1.0), (2.0, 2.0)], machine="m", threads=2, jobs=1, wall_s=30.0)
    assert not domains._redo(new)  # stopped points have no test F1: nothing missing
    once = _run("once", 0.5, 0.3, machine="m", threads=2, jobs=1, wall_s=12.0, steps=100)
    rest = [_run("grid", 0.1, 0.1, lr_x=a, epochs_x=b) for a in (1.0, 2.0) for b in (0.5,)]
    (row,) = domains.summarise(list(done.values()) + [new, once] + rest, ["wnut17"], ["100"])
    assert row["nerkit"] is new and row["search-full"]["search"]["kept"] == [2.0, 1.0]
    # the grid's points are the full trainings' (the new search's stopped points never count as grid points)
    assert row["grid"]["lr x2, epochs x2"] == {"dev_f1": 0.55, "test_f1": 0.95}
    md = domains.markdown([row], "note")
    assert ("| wnut17 | 100 | 45.0 | lr x1, epochs x2 | lr x2, epochs x1 at step 20/100, lr x2, epochs x2 at step 40/200 "
            "| 40.0 (lr x2, epochs x1) | +5.0 | 40.0 | +5.0 | 30.0 | 2.50x | 3.60x |") in md
    assert "more than 0.5 below the four full trainings: 0 of 1; wall time 2.50x-2.50x one training" in md
    # a one-training run made with other threads or jobs gives no ratio
    (other,) = domains.summarise([new, {**once, "threads": 1}], ["wnut17"], ["100"])
    assert "| 30.0 |  | 3.60x |" in domains.markdown([other], "note")


def test_rerun_runs_a_system_again_only_where_it_was_timed_otherwise(domains):
    args = argparse.Namespace(rerun=["once"], machine="m", threads=2, jobs=1)
    here = _run("once", 0.5, 0.3, machine="m", threads=2, jobs=1)
    assert not domains._elsewhere(here, args)
    assert domains._elsewhere({**here, "jobs": 2}, args) and domains._elsewhere({**here, "machine": "h100"}, args)
    assert not domains._elsewhere({**here, "system": "grid", "jobs": 2}, args)


def test_the_search_replayed_on_the_dev_curves_of_four_full_runs(domains):
    import nerkit.search

    assert nerkit.search.RUNGS == (0.2, 0.4) and nerkit.search.MARGIN == 0.01
    ten = [i / 10 for i in range(1, 11)]

    def full(a, b, devs, test, epochs=10.0):
        curve = [[round(f * epochs * b, 3), d] for f, d in zip(ten, devs)]
        system = {"system": "once"} if (a, b) == (1.0, 1.0) else {"system": "grid", "lr_x": a, "epochs_x": b}
        return {**_run(system.pop("system"), max(devs), test, **system), "dev_curve": curve, "epochs": epochs * b}

    runs = [full(1.0, 1.0, [0.3, 0.5, 0.55, 0.585, 0.6, 0.6, 0.61, 0.61, 0.61, 0.61], 0.30),
            full(2.0, 1.0, [0.2, 0.3, 0.35, 0.36] + [0.36] * 6, 0.20),
            full(1.0, 2.0, [0.4, 0.52, 0.57, 0.59, 0.62, 0.64, 0.65, 0.66, 0.66, 0.66], 0.45),
            full(2.0, 2.0, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95], 0.90)]
    found = domains.replay_search(runs)  # the same curves as tests/test_search.py's run of the search itself
    assert found["search"]["kept"] == [1.0, 2.0] and found["test_f1"] == 0.45 and found["replayed"]
    assert [p[5] for p in found["search"]["points"]] == [None, 0.2, None, 0.2]
    assert found["steps_x_once"] == (1.0 + 0.2 + 2.0 + 0.2 * 2) / 1.0
    (row,) = domains.summarise(runs, ["wnut17"], ["100"])
    assert row["nerkit"] == found and row["search-full"]["search"]["kept"] == [2.0, 2.0]  # composed: all four out
    assert "| lr x1, epochs x2† | lr x2, epochs x1 at 20%, lr x2, epochs x2 at 20% | 90.0 (lr x2, epochs x2) | -45.0 |" in \
        domains.markdown([row], "note")
    assert domains.replay_search([{k: v for k, v in r.items() if k != "dev_curve"} for r in runs]) is None


def test_search_rung_replay_follows_the_search_rule():
    replay = load_bench("search_rungs").replay
    # four points (plans 100/100/200/200 steps), evaluations every tenth of a plan; dev F1 rises to a ceiling
    def curve(plan: int, top: float, upto: int | None = None) -> list:
        return [(s, top * min(1.0, s / (0.6 * plan))) for s in range(plan // 10, (upto or plan) + 1, plan // 10)]

    points = {(1.0, 1.0): (curve(100, 0.50, 20), 100, 20, 20), (2.0, 1.0): (curve(100, 0.60), 100, 100, None),
              (1.0, 2.0): (curve(200, 0.55, 40), 200, 40, 40), (2.0, 2.0): (curve(200, 0.58, 80), 200, 80, 80)}
    # at 20 % (steps 20 and 40): (2,1) 0.200, (2,2) 0.193, (1,2) 0.183, (1,1) 0.167: the top half goes on, and no
    # other is within MARGIN (0.01); at 40 % (steps 40 and 80) the best alone, (2,1), trains to its end
    what, (kept, steps) = replay(points, (0.2, 0.4))
    assert what == "kept" and kept == (2.0, 1.0) and steps == 20 + 100 + 40 + 80
    # a rung past where a stopped point's curve was recorded: said to be unknown, not guessed
    assert replay(points, (0.3, 0.4))[0] == "unknown"  # at 30 % (1,2) would be judged at step 60 (stopped at 40)


def test_extension_replay_asks_the_rule_only_where_a_training_did(tmp_path):
    replay = load_bench("extension_replay")

    def model(name, steps, history, extended=(), approx=588):
        d = tmp_path / name
        d.mkdir()
        budget = {"describe": f"4 epochs, ~{approx} steps", **({"extended_steps": list(extended)} if extended else {})}
        d.joinpath("nerkit.json").write_text(json.dumps({"steps": steps, "budget": budget, "history": [
            {"step": s, "dev_f1": f} for s, f in history]}))
        return d

    plateau = model("plateau", 588, [(147, 0.0974), (294, 0.4803), (441, 0.5668), (588, 0.5663)])
    [(name, f1s)] = replay.model_decisions(plateau)
    assert name.endswith("at step 588") and replay.differs(f1s)  # the new rule extends where the old one stopped
    twice = model("twice", 1176, [(147, .05), (294, .32), (441, .51), (588, .58), (735, .60), (882, .66),
                                  (1029, .61), (1176, .64)], extended=(294, 294))
    asked = replay.model_decisions(twice)
    assert [len(f1s) for _, f1s in asked] == [4, 6, 8] and not any(replay.differs(f) for _, f in asked)
    assert replay.model_decisions(model("early", 400, [(147, .5), (294, .6), (400, .55)])) == []  # never asked
    # recorded plans: a run stopped early before its plan is never asked, one stopped inside an extension is asked
    # at its plan's end only (older records without the plan cannot tell these apart)
    planned = model("planned", 400, [(147, .5), (294, .6), (400, .55)])
    meta = json.loads(planned.joinpath("nerkit.json").read_text())
    meta["budget"]["planned_steps"] = 588
    planned.joinpath("nerkit.json").write_text(json.dumps(meta))
    assert replay.model_decisions(planned) == []
    cut = model("cut", 735, [(147, .05), (294, .32), (441, .51), (588, .58), (735, .55)], extended=(294,))
    meta = json.loads(cut.joinpath("nerkit.json").read_text())
    meta["budget"]["planned_steps"] = 588
    cut.joinpath("nerkit.json").write_text(json.dumps(meta))
    assert [(name.rsplit(" ", 1)[1], len(f1s)) for name, f1s in replay.model_decisions(cut)] == [("588", 4)]


def test_a_benchmark_whose_run_failed_does_not_exit_0(domains, tmp_path, monkeypatch, capsys):
    # no data where --data points: the one run fails; the report is still written, and the exit says so
    monkeypatch.setattr("sys.path", list(sys.path))  # main puts bench/ on it: not for the tests after this one
    monkeypatch.setattr("sys.argv", ["domains.py", "--data", str(tmp_path / "none"), "--datasets", "tsa-md",
                                     "--sizes", "100", "--systems", "once", "--work", str(tmp_path / "w"),
                                     "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exc:
        domains.main()
    assert "1 run(s) failed" in str(exc.value.code) and (tmp_path / "o" / "domains.md").exists()
    assert "FileNotFoundError" in capsys.readouterr().out


def test_extension_replay_reads_a_search_point_at_its_plan_and_each_extension_it_trained_through(tmp_path):
    replay = load_bench("extension_replay")
    assert replay.extension_ends(588, 588) == [588]
    assert replay.extension_ends(588, 1176) == [588, 882, 1176]
    assert replay.extension_ends(588, 1000) == [588, 882]  # early stopping inside the second extension
    assert replay.extension_ends(100, 1000) == [100, 150, 200, 250, 300]  # the cap: 3x the plan
    curve = [[147, .05], [294, .32], [441, .51], [588, .58], [735, .60], [882, .66], [1029, .61]]
    point = [1.0, 2.0, 0.66, 100.0, 0.5, None, 1029, 588, curve]  # extended once, stopped early in the second
    results = tmp_path / "domains_x.json"
    results.write_text(json.dumps({"rows": [{"dataset": "d", "size": "300", "nerkit": {"search": {"points": [point]}}}]}))
    got = replay.decisions_of(results)
    assert [(name.rsplit(" ", 1)[1], len(f1s)) for name, f1s in got] == [("588", 4), ("882", 6)]
