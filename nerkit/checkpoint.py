"""Training checkpoints, so that a killed run resumes where it was: weights, optimizer, scheduler, RNG, loop state.

A checkpoint is a folder ``step-N`` under the run's checkpoint root, built under a temporary name and renamed
into place; the file ``latest`` (replaced atomically) names the current one, and older ones are then removed.
A kill at any moment leaves ``latest`` naming a complete checkpoint. Tensors are stored as safetensors (nothing
is unpickled), the rest as JSON.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nerkit.errors import NerkitError
from nerkit.files import atomic_write_text, follow_umask

MARKER = "nerkit-checkpoint"  # in every checkpoint root: nerkit removes only folders that hold it


def checkpoint_root(output: str | os.PathLike) -> Path:
    """Where a run that saves to ``output`` keeps its checkpoints: a hidden sibling folder, removed at the end."""
    out = Path(output)
    return out.resolve().parent / f".{out.name}.checkpoint"


def check_root(root: Path) -> None:
    """Refuse a checkpoint root that exists but is not nerkit's (never write into or remove a user's folder)."""
    if root.is_symlink() or (root.exists() and not (root / MARKER).is_file()):
        raise NerkitError(f"{root}: exists and is not a nerkit checkpoint; nerkit will not replace it")


def remove(root: Path) -> None:
    """Delete a checkpoint root nerkit wrote (the model is saved: it has served)."""
    if (root / MARKER).is_file() and not root.is_symlink():
        shutil.rmtree(root, ignore_errors=True)


def _flat_optimizer(opt) -> tuple[dict, dict]:
    """Optimizer state as (tensors, JSON): safetensors holds the moments, JSON the rest."""
    import torch

    sd = opt.state_dict()
    tensors, plain = {}, {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                plain[f"{pid}.{name}"] = v
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def _unflat_optimizer(tensors: dict, info: dict) -> dict:
    state: dict = {}
    for key, v in list(tensors.items()) + list(info["plain"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in info["param_groups"]]
    return {"state": state, "param_groups": groups}


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save(root: Path, key: str, step: int, model, opt, sched, loop: dict, best_state: dict | None,
         best_is_current: bool) -> Path:
    """Write one checkpoint (see the module docstring); ``key`` identifies the run (settings and data)."""
    import torch
    from safetensors.torch import save_file

    check_root(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).touch()
    name = f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        save_file(_cpu(model.state_dict()), str(tmp / "model.safetensors"))
        if best_state is not None and not best_is_current:
            save_file(_cpu(best_state), str(tmp / "best.safetensors"))
        opt_tensors, opt_info = _flat_optimizer(opt)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        save_file(rng, str(tmp / "rng.safetensors"))
        info = {"key": key, "loop": loop, "optimizer": opt_info, "scheduler": sched.state_dict(),
                "best": None if best_state is None else "model" if best_is_current else "best"}
        (tmp / "state.json").write_text(json.dumps(info, default=str), encoding="utf-8")
        follow_umask(tmp)  # mkdtemp and safetensors make 0o700/0o600; the rest of nerkit's output follows the umask
        if (root / name).exists():  # left by an earlier try of the same run that got this far
            shutil.rmtree(root / name)
        os.replace(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "latest", name + "\n")
    for old in root.iterdir():
        if old.name != name and old.name.startswith(("step-", ".step-")):
            shutil.rmtree(old, ignore_errors=True)
    return root / name


@dataclass
class Checkpoint:
    """A checkpoint read back."""

    weights: dict
    optimizer: dict
    scheduler: dict
    rng: dict
    loop: dict
    best_state: dict | None


def load(root: Path, key: str) -> Checkpoint | None:
    """The latest checkpoint under ``root``; None if there is none; refused if another run (settings, data) wrote it."""
    from safetensors.torch import load_file

    check_root(root)
    try:
        name = (root / "latest").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    d = root / name
    try:
        info = json.loads((d / "state.json").read_text(encoding="utf-8"))
        if info["key"] != key:
            raise NerkitError(f"{root}: the checkpoint was written with other settings, data or process count; "
                              "resume with the same ones, or delete it to start again")
        weights = load_file(str(d / "model.safetensors"))
        best = {"model": weights, None: None}.get(info["best"])
        if info["best"] == "best":
            best = load_file(str(d / "best.safetensors"))
        return Checkpoint(weights, _unflat_optimizer(load_file(str(d / "optimizer.safetensors")), info["optimizer"]),
                          info["scheduler"], load_file(str(d / "rng.safetensors")), info["loop"],
                          None if best is None else {k: v.clone() for k, v in best.items()})
    except (OSError, ValueError, KeyError) as exc:
        raise NerkitError(f"{d}: unreadable checkpoint ({exc}); delete {root} to start again") from None


def restore(ck: Checkpoint, model, opt, sched) -> None:
    """Put a checkpoint's weights, optimizer and scheduler state, and torch RNG state back."""
    import torch

    model.load_state_dict(ck.weights)
    opt.load_state_dict(ck.optimizer)
    sched.load_state_dict(ck.scheduler)
    torch.set_rng_state(ck.rng["torch"])
    if torch.cuda.is_available():
        cuda = [ck.rng[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in ck.rng]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)

