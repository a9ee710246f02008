"""bench/jobs.py, what bench/nested.py and bench/distill.py share: the cache of finished runs and the loop that
runs the rest, which reports every failure and makes the benchmark exit non-zero."""
from __future__ import annotations

import json
import sys

import pytest
from conftest import load_bench


def test_the_loop_caches_what_finished_and_counts_what_failed(tmp_path, capsys):
    jobs = load_bench("jobs")
    key = lambda job: jobs.key(job, ("seed",))  # noqa: E731
    cache, done = tmp_path / "runs.jsonl", {}
    todo = [{"ds": "ade", "system": "flat", "seed": 1}, {"ds": "ade", "system": "nested", "seed": 1}]
    results = {"flat": {"f1": 0.5}, "nested": {"error": "Traceback ...\nRuntimeError: boom"}}
    failed = jobs.run_all(todo, cache, lambda job: {**job, **results[job["system"]]}, done, key,
                          lambda res: f"F1 {res['f1']}")
    out = capsys.readouterr().out
    assert failed == 1 and "[1/2] ade flat: F1 0.5" in out and "[2/2] ade nested: FAILED" in out and "boom" in out
    assert [json.loads(line)["system"] for line in cache.read_text().splitlines()] == ["flat", "nested"]
    assert list(done) == [key(todo[0])] and list(jobs.load_runs(cache, key)) == [key(todo[0])]  # failures run again
    assert key({**todo[0], "seed": 2}) != key(todo[0]) and key({**todo[0], "other": 3}) == key(todo[0])


def test_a_nested_benchmark_with_a_failed_run_exits_non_zero(tmp_path, monkeypatch):
    nested = load_bench("nested")
    data = tmp_path / "data" / "ade"
    data.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (data / f"{split}.jsonl").write_text("")
    monkeypatch.setattr("sys.path", list(sys.path))  # main puts bench/ on it: not for the tests after this one
    monkeypatch.setattr(nested, "execute", lambda job, args: {**job, "error": "RuntimeError: boom", "wall_s": 0.0})
    with pytest.raises(SystemExit) as exc:
        nested.main(["--data", str(tmp_path / "data"), "--datasets", "ade", "--systems", "flat,nested",
                     "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")])
    assert "2 run(s) failed" in str(exc.value.code) and (tmp_path / "o" / "nested.md").is_file()
