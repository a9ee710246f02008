"""Shared fixtures: where the shared NER data lives, and tiny random models."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def data_root() -> Path | None:
    """The shared data folder: $NERKIT_DATA, else ../shared/data beside the repository."""
    for cand in (os.environ.get("NERKIT_DATA"), ROOT.parent / "shared" / "data"):
        if cand and (Path(cand) / "conll2003" / "train.txt").is_file():
            return Path(cand)
    return None


@pytest.fixture
def conll_dir() -> Path:
    root = data_root()
    if root is None:
        pytest.skip("CoNLL-2003 not found (set NERKIT_DATA)")
    return root / "conll2003"


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    from tiny import make_tiny_model

    return make_tiny_model(tmp_path / "tiny")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """One tiny model directory per test module (tests that only read it share it)."""
    from tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tagger(model_dir):
    """A PyTorch Tagger on the module's tiny model."""
    from nerkit.predict import Tagger

    return Tagger.load(model_dir, backend="torch")


def load_bench(name: str):
    """A script of bench/ as a module (bench/ is not a package): its pure parts are tested without running it. Its
    siblings ``machine`` and ``jobs`` are loaded as the script's ``import machine`` finds them (bench/ is not put on
    sys.path, where its script names would shadow packages such as dask's ``distributed``)."""
    import importlib.util

    def load(module: str, stem: str):
        spec = importlib.util.spec_from_file_location(module, Path(__file__).resolve().parent.parent / "bench" / f"{stem}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    for sibling in ("machine", "jobs"):
        if sibling not in sys.modules:
            sys.modules[sibling] = load(sibling, sibling)
    return load(f"bench_{name}", name)
