"""Data-parallel training: 2 processes under torchrun (gloo, CPU) against one process, on a tiny model."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from nerkit.demo import corpus_path

ROOT = Path(__file__).resolve().parent.parent

# Trains through nerkit.train.fit and records, per process: the windows of every step, the gradients the
# optimizer saw at the first step (after the all-reduce and clipping), and what fit returned.
WORKER = """
import json, os, sys
import nerkit.train as T
from safetensors.torch import save_file
train, dev, out, record, cfg = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
rank = int(os.environ.get("RANK", "0"))
steps = []
inner_loop, inner_opt = T.train_while_improving, T.make_optimizer
def loop(*a, **k):
    for p in inner_loop(*a, **k):
        steps.append(p.batch)
        yield p
def make_optimizer(model, *a, **k):
    opt, sched = inner_opt(model, *a, **k)
    names = {p: n for n, p in model.named_parameters()}
    def first_grads(o, args, kwargs):
        if not steps:
            save_file({names[p]: p.grad.detach().clone() for g in o.param_groups for p in g["params"]},
                      f"{record}/grads-{rank}.safetensors")
    opt.register_step_pre_hook(first_grads)
    return opt, sched
T.train_while_improving, T.make_optimizer = loop, make_optimizer
r = T.fit(train, dev=dev, output=out, config=T.TrainConfig(**cfg))
json.dump({"steps": steps, "output": r.get("output"), "dev_f1": r.metrics.get("dev", {}).get("f1"),
           "threads": __import__("torch").get_num_threads()}, open(f"{record}/rank-{rank}.json", "w"))
"""


def _run(args, record, tmp_path, data, out):
    cfg = dict(model=str(tmp_path / "tiny"), epochs=4.0, lr=2e-3, batch_tokens=512, seed=3, bf16="off", progress=False,
               early_stopping=0)
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, *args, str(record / "worker.py"), str(data["train"]), str(data["dev"]),
                        str(out), str(record), json.dumps(cfg)], capture_output=True, text=True, timeout=600,
                       cwd=ROOT, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return {int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in record.glob("rank-*.json")}


def test_two_processes_share_the_work_and_match_one(tiny_model, tmp_path):
    pytest.importorskip("torch.distributed")
    data = {}
    for split, n in (("train", 80), ("dev", 20)):
        blocks = [b for b in corpus_path(split).read_text().split("\n\n") if b.strip()][:n]
        data[split] = tmp_path / f"{split}.conll"
        data[split].write_text("\n\n".join(blocks) + "\n")
    one, two = tmp_path / "one", tmp_path / "two"
    for d in (one, two):
        d.mkdir()
        (d / "rec").mkdir()
        (d / "rec" / "worker.py").write_text(WORKER)
    single = _run([], one / "rec", tmp_path, data, one / "model")
    ranks = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], two / "rec", tmp_path,
                 data, two / "model")

    assert sorted(ranks) == [0, 1] and all(r["threads"] == 1 for r in ranks.values())
    # Each step, every process trained on its own part of the same global batch: together, every window of
    # the epoch exactly once, as the single process did.
    steps0, steps1 = ranks[0]["steps"], ranks[1]["steps"]
    assert len(steps0) == len(steps1) == len(single[0]["steps"]) > 1
    n_windows = len({w for s in single[0]["steps"] for w in s})
    per_epoch = len(steps0) // 4
    epoch = [w for s in steps0[:per_epoch] + steps1[:per_epoch] for w in s]
    assert sorted(epoch) == list(range(n_windows))
    assert all(a and b and not set(a) & set(b) and abs(len(a) - len(b)) <= 1 for a, b in zip(steps0, steps1))
    assert sorted(steps0[0] + steps1[0]) == sorted(single[0]["steps"][0])

    # The first step's gradients (loss over the global batch's labelled tokens) equal one process's.
    g1 = load_file(str(one / "rec" / "grads-0.safetensors"))
    for rank in (0, 1):
        g2 = load_file(str(two / "rec" / f"grads-{rank}.safetensors"))
        assert g1.keys() == g2.keys()
        worst = max(float((g1[k] - g2[k]).abs().max()) for k in g1)
        assert worst < 1e-6, (rank, worst)

    # Only the main process saved, once, after training: one model directory and nothing else beside it.
    assert ranks[0]["output"] == str(two / "model") and ranks[1]["output"] is None
    assert sorted(p.name for p in two.iterdir()) == ["model", "rec"]
    assert (two / "model" / "model.safetensors").is_file()
    meta = json.loads((two / "model" / "nerkit.json").read_text())
    assert meta["processes"] == 2
    print("dev F1: 1 process", single[0]["dev_f1"], "2 processes", ranks[0]["dev_f1"])
    assert single[0]["dev_f1"] > 0.2 and abs(ranks[0]["dev_f1"] - single[0]["dev_f1"]) <= 0.05


@pytest.mark.parametrize("processes", [1, 2, 3, 8])
def test_every_global_batch_has_work_for_every_process(processes):
    import numpy as np

    from nerkit.align import length_grouped_batches
    from nerkit.loop import epoch_batches, rank_share

    # 126-token windows in a 256-token budget: 2 a batch; an odd count leaves a last batch of 1.
    lengths = [126] * 9 + [40, 12]
    batches = epoch_batches(lengths, 256, np.random.default_rng(3), processes)
    assert sorted(w for b in batches for w in b) == list(range(len(lengths)))
    assert all(len(b) >= processes for b in batches)
    if processes == 1:  # one process: exactly the batches it always had
        assert batches == length_grouped_batches(lengths, 256, np.random.default_rng(3))
    for b in batches:
        shares = [rank_share(b, r, processes) for r in range(processes)]
        assert sorted(w for s in shares for w in s) == sorted(b) and all(shares)


def test_threads_per_process_share_the_cores(monkeypatch):
    import torch

    from nerkit.engines import available_cores
    from nerkit.train import _set_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        _set_threads()
        assert torch.get_num_threads() == max(1, available_cores() // 2)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(before)
        _set_threads()  # the user's (or torchrun's) choice stands
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)
