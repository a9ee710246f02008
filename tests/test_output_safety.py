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
    (empty / "model.int8.onnx").write_bytes(b"stale")  # an old export: nerkit's, and stale once retrained
    fit(data["train"], output=empty, config=cfg)
    assert (empty / "nerkit.json").is_file() and not (empty / "model.int8.onnx").exists()


def test_retraining_into_a_model_directory_keeps_the_users_own_files(tiny_model, tmp_path):
    # `train --output runs/m` again once deleted my_notes.md from runs/m, exit 0.
    data = small_corpus(tmp_path, n_train=6)
    cfg = TrainConfig(model=str(tiny_model), max_steps=1, batch_tokens=256, progress=False)
    out = tmp_path / "m"
    fit(data["train"], output=out, config=cfg)
    (out / "my_notes.md").write_text("what I tried")
    (out / "plots").mkdir()
    (out / "plots" / "f1.png").write_bytes(b"png")
    (out / "model.safetensors").write_bytes(b"old weights")
    fit(data["train"], output=out, config=cfg)
    assert (out / "my_notes.md").read_text() == "what I tried" and (out / "plots" / "f1.png").read_bytes() == b"png"
    assert (out / "model.safetensors").read_bytes() != b"old weights" and (out / "nerkit.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".m")) == []  # nothing left aside


def _export_cli(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "nerkit.cli", "export", *map(str, args), "--no-quantize"],
                       capture_output=True, text=True, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return r.returncode, r.stderr


def test_export_output_follows_the_train_output_rule(tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    user = tmp_path / "user"
    user.mkdir()
    (user / "README.md").write_text("my project")
    (user / "config.json").write_text('{"mine": true}')
    for output, cwd in ((user, None), (".", user)):  # `--output .` replaced the user's README.md and config.json
        code, err = _export_cli(tiny_model, "--output", output, cwd=cwd)
        assert code == 2 and ("not a nerkit model" in err or "working directory" in err), err
        assert "Traceback" not in err
        assert (user / "README.md").read_text() == "my project" and sorted(p.name for p in user.iterdir()) == [
            "README.md", "config.json"]
    f = tmp_path / "afile"
    f.write_text("keep")
    assert _export_cli(tiny_model, "--output", f)[0] == 2 and f.read_text() == "keep"
    fresh = tmp_path / "fresh"
    assert _export_cli(tiny_model, "--output", fresh)[0] == 0 and (fresh / "model.onnx").is_file()
    from nerkit.files import umask

    mode = 0o666 & ~umask()  # the source weights are 0600 (transformers): the copy follows the umask
    assert {p.name: p.stat().st_mode & 0o777 for p in fresh.iterdir() if p.stat().st_mode & 0o777 != mode} == {}
    code, err = _export_cli(tiny_model, "--output", fresh)  # what export wrote, it may write again
    assert code == 0, err


def test_unwritable_export_output_is_one_clear_error(tiny_model, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    import nerkit.export as ex
    from nerkit.cli import main

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ex.shutil, "copyfile", full)
    assert main(["export", str(tiny_model), "--output", str(tmp_path / "out"), "--no-quantize"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "out" in err and "Traceback" not in err


def _unwritable_dir(tmp_path):
    """A directory that cannot be written although its permission bits may say so (root on sysfs)."""
    if os.geteuid() == 0:
        if not os.path.isdir("/sys/kernel") or os.access("/sys/kernel", os.W_OK) is False:
            pytest.skip("no sysfs")
        return "/sys/kernel"
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d


def test_an_unwritable_output_is_found_before_training(tiny_model, tmp_path, monkeypatch):
    import nerkit.train as train_mod

    data = small_corpus(tmp_path, n_train=6)
    monkeypatch.setattr(train_mod.align, "length_grouped_batches",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("training started")))
    target = os.path.join(_unwritable_dir(tmp_path), "nerkit-out")
    with pytest.raises(NerkitError, match="cannot write"):
        fit(data["train"], output=target, config=TrainConfig(model=str(tiny_model), max_steps=1, progress=False))
    assert not os.path.exists(target)


def test_a_failed_final_save_keeps_the_trained_model(tiny_model, tmp_path, monkeypatch, capsys):
    import nerkit.train as train_mod
    from nerkit.cli import main
    from nerkit.predict import Tagger

    data = small_corpus(tmp_path, n_train=6)
    out = tmp_path / "out"
    real = train_mod.save_model_dir

    def disk_full(model, tokenizer, meta, output):
        if os.path.abspath(output) == str(out):
            raise OSError(28, "No space left on device")
        return real(model, tokenizer, meta, output)

    monkeypatch.setattr(train_mod, "save_model_dir", disk_full)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    code = main(["train", "--train", str(data["train"]), "--model", str(tiny_model), "--max-steps", "2",
                 "--output", str(out)])
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if ln.startswith("nerkit: error:")]
    assert code == 2 and len(line) == 1 and "No space left on device" in line[0] and "Traceback" not in err
    rescued = [p / "model" for p in (tmp_path / "tmp").iterdir()]
    assert len(rescued) == 1 and str(rescued[0]) in line[0]
    assert Tagger.load(rescued[0], backend="torch")(["John lives in Paris"]) is not None
    assert not out.exists()


def test_a_checkpoint_that_cannot_be_written_does_not_end_the_training(tiny_model, tmp_path, monkeypatch):
    import nerkit.train as train_mod

    data = small_corpus(tmp_path, n_train=12)

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_mod.checkpoint, "save", full)
    out = tmp_path / "out"
    res = fit(data["train"], dev=data["dev"], output=out, config=TrainConfig(
        model=str(tiny_model), max_steps=4, batch_tokens=256, eval_every_steps=1, progress=False))
    assert res.output == out and (out / "model.safetensors").is_file() and len(res.history) == 4
