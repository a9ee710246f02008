"""Resume after a kill: a run killed with SIGKILL and resumed ends with exactly the weights of one never killed."""
import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from nerkit.demo import corpus_path
from nerkit.errors import NerkitError
from nerkit.checkpoint import checkpoint_root
from nerkit.loop import LoopState, epoch_batches, eval_due, train_while_improving
from nerkit.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parent.parent

# Runs fit and SIGKILLs its own process right after optimizer step ``kill_at`` (checkpoints are written at
# evaluation points, so the kill lands between two of them and the steps since the last one are lost).
KILLED_RUN = """
import json, os, signal, sys
import nerkit.train as T
train, dev, out, kill_at, cfg = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
inner = T.train_while_improving
def killed(*a, **k):
    for p in inner(*a, **k):
        yield p
        if p.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
T.train_while_improving = killed
T.fit(train, dev=dev, output=out, config=T.TrainConfig(**cfg))
"""


def _corpus(tmp_path, n_train=60, n_dev=15):
    out = {}
    for split, n in (("train", n_train), ("dev", n_dev)):
        blocks = [b for b in corpus_path(split).read_text().split("\n\n") if b.strip()][:n]
        out[split] = tmp_path / f"{split}.conll"
        out[split].write_text("\n\n".join(blocks) + "\n")
    return out


def _run(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
                          **kw)


def test_a_killed_run_resumes_to_the_same_weights(tiny_model, tmp_path):
    data = _corpus(tmp_path)
    # n batches an epoch, evaluated (and checkpointed) twice an epoch: six evaluations.
    cfg = dict(model=str(tiny_model), epochs=3.0, batch_tokens=256, seed=5, evals_per_epoch=2, early_stopping=0)
    ref = fit(data["train"], dev=data["dev"], output=tmp_path / "ref", config=TrainConfig(progress=False, **cfg))
    n = ref.meta.steps // 3  # batches per epoch
    evals = [h["step"] for h in ref.history]
    assert ref.meta.steps == 3 * n and n >= 4 and len(evals) == 6 and evals[1] == n and evals[-1] == 3 * n
    kill_at, resume_at = evals[2] + 1, evals[2]
    assert not checkpoint_root(tmp_path / "ref").exists()  # removed once the model is saved

    out = tmp_path / "model"
    cli = ["-m", "nerkit.cli", "train", "--train", str(data["train"]), "--dev", str(data["dev"]),
           "--output", str(out), "--model", str(tiny_model), "--epochs", "3", "--batch-tokens", "256",
           "--seed", "5", "--evals-per-epoch", "2", "--early-stopping", "0", "--resume"]
    # Killed one step after the third checkpoint, in the middle of the second epoch (its batches are drawn again
    # from the saved data-order state and the ones done skipped); the steps after it are trained again.
    r = _run(["-c", KILLED_RUN, str(data["train"]), str(data["dev"]), str(out), str(kill_at),
              json.dumps(dict(cfg, progress=False))])
    assert r.returncode == -9, r.stderr[-2000:]
    assert not out.exists() and (checkpoint_root(out) / "latest").read_text().strip() == f"step-{resume_at:08d}"
    with pytest.raises(NerkitError, match="other settings"):
        fit(data["train"], dev=data["dev"], output=out, config=TrainConfig(progress=False, resume=True,
                                                                           **dict(cfg, lr=1e-3)))

    r = _run(cli)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stdout + r.stderr and f"at step {resume_at}" in r.stdout + r.stderr
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    meta = json.loads((out / "nerkit.json").read_text())
    assert [(h["step"], h["dev_f1"]) for h in meta["history"]] == [(h["step"], h["dev_f1"]) for h in ref.history]
    assert meta["best_step"] == ref.meta.best_step and meta["metrics"]["dev"]["f1"] == ref.metrics["dev"]["f1"]
    assert not checkpoint_root(out).exists()


def test_a_folder_in_the_checkpoint_place_that_nerkit_did_not_write_is_refused(tiny_model, tmp_path):
    data = _corpus(tmp_path, n_train=4, n_dev=2)
    mine = checkpoint_root(tmp_path / "model")
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(NerkitError, match="not a nerkit checkpoint"):
        fit(data["train"], output=tmp_path / "model", config=TrainConfig(model=str(tiny_model), max_steps=1,
                                                                           progress=False))
    assert (mine / "notes.txt").read_text() == "mine"


def test_the_loop_resumed_from_any_checkpoint_replays_the_same_batches_and_decisions():
    lengths = [int(x) for x in np.random.default_rng(1).integers(5, 60, size=50)]
    f1s = [0.1, 0.3, 0.2, 0.25, 0.3, 0.2, 0.1, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1] * 3

    def run(state, seen):
        scores = iter(f1s[len(state.history):])  # the scores a model at this point would get

        def update(batch):
            seen.append(list(batch))
            return batch, 0.0

        def due(bi, n, step, epoch):
            return eval_due(bi, n, step, epoch, evals_per_epoch=3)

        for p in train_while_improving(state, np.random.default_rng(7), lambda r: epoch_batches(lengths, 300, r),
                                       update, lambda: {"f1": next(scores)}, 60, due, patience=5):
            yield p, len(seen)

    state, seen, saved = LoopState(), [], []
    for p, n in run(state, seen):
        if p.checkpoint:  # what a checkpoint keeps: the loop state through JSON, and how far training got
            saved.append((LoopState(**json.loads(json.dumps(asdict(state)))), n))
    assert state.stopped and 5 < len(saved) and len(seen) < 60  # early stopping, at several epochs' points
    for snap, n in saved:
        again = []
        for _ in run(snap, again):
            pass
        assert again == seen[n:]
        assert snap.history == state.history and (snap.step, snap.best_step) == (state.step, state.best_step)


def test_checkpoints_follow_the_umask(tiny_model, tmp_path, monkeypatch):
    # safetensors and mkdtemp wrote them 0600/0700 while the rest of nerkit's output follows the umask.
    import nerkit.train as train_mod

    data = _corpus(tmp_path, n_train=20, n_dev=5)
    monkeypatch.setattr(train_mod.checkpoint, "remove", lambda root: None)  # keep it to look at
    old = os.umask(0o022)
    try:
        fit(data["train"], dev=data["dev"], output=tmp_path / "m", config=TrainConfig(
            model=str(tiny_model), max_steps=4, batch_tokens=256, eval_every_steps=2, progress=False))
    finally:
        os.umask(old)
    root = checkpoint_root(tmp_path / "m")
    modes = {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}
    assert any(k.endswith("model.safetensors") for k in modes)
    assert {k: m for k, m in modes.items() if m != (0o755 if (root / k).is_dir() else 0o644)} == {}


def test_a_run_resumed_after_it_trained_on_past_its_plan_extends_as_one_never_killed(tiny_model, tmp_path,
                                                                                     monkeypatch):
    # A resumed run had taken its schedule's extensions for its plan: its next extension came out larger, its cap
    # further, and nerkit.json recorded neither the extensions before the kill nor the plan.
    import nerkit.train as train_mod

    rows = [{"text": f"alice met bob in town {i} .", "entities": [{"start": 0, "end": 5, "label": "PER"}]}
            for i in range(12)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    real, calls = train_mod._score_dev, []

    def climbing(tagger, model, dev):  # dev F1 that climbs at every evaluation: extended to the cap
        rep = dict(real(tagger, model, dev))
        rep["f1"] = 0.1 + 0.02 * len(calls)
        calls.append(rep["f1"])
        return rep

    monkeypatch.setattr(train_mod, "_score_dev", climbing)
    cfg = TrainConfig(model=str(tiny_model), context=0, batch_tokens=40, progress=False)
    ref = fit(data, dev=data, output=tmp_path / "ref", config=cfg)
    planned, extended = ref.meta.budget["planned_steps"], ref.meta.budget["extended_steps"]
    assert len(extended) >= 2 and ref.meta.steps == planned + sum(extended)
    evals = [h["step"] for h in ref.meta.history]
    first = next(s for s in evals if s > planned)  # the first checkpoint inside the first extension
    inner = train_mod.train_while_improving

    def killed(*a, **k):
        for p in inner(*a, **k):
            yield p
            if p.step == first + 1:
                raise KeyboardInterrupt

    calls.clear()
    monkeypatch.setattr(train_mod, "train_while_improving", killed)
    out = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        fit(data, dev=data, output=out, config=cfg)
    monkeypatch.setattr(train_mod, "train_while_improving", inner)
    del calls[evals.index(first) + 1:]  # the evaluations the checkpoint holds; the resumed run scores the rest
    res = fit(data, dev=data, output=out, config=dataclasses.replace(cfg, resume=True))
    assert res.meta.budget["planned_steps"] == planned and res.meta.budget["extended_steps"] == extended
    assert res.meta.steps == ref.meta.steps and [h["step"] for h in res.meta.history] == evals
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
