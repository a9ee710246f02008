"""nerkit never deletes, moves or overwrites what it did not write (issue: `--output runs` deleted a user's folder)."""
import os
import subprocess
import sys

import pytest

from nerkit.errors import NerkitError
from nerkit.modeldir import check_output
from nerkit.train import TrainConfig, fit
from test_train import small_corpus


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nerkit.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_existing_user_directory_is_refused_before_training_and_kept(tiny_model, tmp_path):
    data = small_corpus(tmp_path, n_train=6)
    user = tmp_path / "runs"
    (user / "notes").mkdir(parents=True)
    (user / "notes" / "thesis.txt").write_text("years of work")
    r = _cli("train", "--train", data["train"], "--model", tiny_model, "--max-steps", "2", "--output", user)
    assert r.returncode == 2 and "not a nerkit model" in r.stderr and "Traceback" not in r.stderr
    assert (user / "notes" / "thesis.txt").read_text() == "years of work"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".runs")]  # nothing moved aside


def test_existing_file_is_refused_and_not_renamed(tiny_model, tmp_path):
    data = small_corpus(tmp_path, n_train=6)
    f = tmp_path / "somefile"
    f.write_text("keep me")
    r = _cli("train", "--train", data["train"], "--model", tiny_model, "--max-steps", "2", "--output", f)
    assert r.returncode == 2 and "not a directory" in r.stderr
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["somefile", "train.conll", "dev.conll", "tiny"])


def test_working_directory_is_refused_before_training(tiny_model, tmp_path):
    data = small_corpus(tmp_path, n_train=6)
    r = _cli("train", "--train", data["train"], "--model", tiny_model, "--max-steps", "2", "--output", ".",
             cwd=tmp_path)
    assert r.returncode == 2 and "working directory" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(NerkitError):
        check_output(os.getcwd())


def test_nerkit_model_directory_and_empty_directory_are_replaced(tiny_model, tmp_path):
    data = small_corpus(tmp_path, n_train=6)
    cfg = TrainConfig(model=str(tiny_model), max_steps=1, batch_tokens=256, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    fit(data["train"], output=empty, config=cfg)
    assert (empty / "nerkit.json").is_file()
    (empty / "stale.txt").write_text("x")  # a nerkit model directory is replaced whole on retraining
    fit(data["train"], output=empty, config=cfg)
    assert (empty / "nerkit.json").is_file() and not (empty / "stale.txt").exists()
