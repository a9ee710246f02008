"""Bad input and damaged files get one clear message and exit 2, never a traceback or silent data loss (issue 9)."""
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from nerkit.cli import main
from nerkit.data import read_conll, tokenize
from nerkit.errors import DataError, NerkitError
from nerkit.train import TrainConfig, fit
from test_train import small_corpus


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _error_line(err: str) -> str:
    """The one "nerkit: error:" line of stderr (libraries may print progress bars there too); no traceback."""
    lines = [ln for ln in err.splitlines() if ln.startswith("nerkit: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _unlabelled(tmp_path):
    p = tmp_path / "unlabelled.jsonl"
    p.write_text('{"text": "John Smith lives in Paris."}\n{"text": "Mary went to London."}\n')
    return p


# ---------------------------------------------------------------- model directories


def test_model_dir_without_tokenizer_files_is_refused(tiny_model, capsys):
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (tiny_model / name).unlink(missing_ok=True)
    code, out, err = _run(capsys, "predict", tiny_model, "John Smith lives in Paris.", "--backend", "torch")
    assert code == 2 and "tokenizer" in err and out == ""


@pytest.mark.parametrize("damage", ["pickle-only", "num-labels", "nerkit-json", "truncated-safetensors",
                                    "empty-config", "config-not-json"])
def test_damaged_model_dir_is_one_clear_error(tiny_model, capsys, damage):
    import torch
    from safetensors.torch import load_file

    st = tiny_model / "model.safetensors"
    if damage == "pickle-only":
        torch.save(load_file(st), tiny_model / "pytorch_model.bin")
        st.unlink()
    elif damage == "num-labels":
        cfg = json.loads((tiny_model / "config.json").read_text())
        cfg["id2label"] = {"0": "O", "1": "B-PER", "2": "I-PER"}
        cfg["label2id"] = {v: int(k) for k, v in cfg["id2label"].items()}
        (tiny_model / "config.json").write_text(json.dumps(cfg))
    elif damage == "nerkit-json":
        (tiny_model / "nerkit.json").write_text('{"windows": ')
    elif damage == "truncated-safetensors":
        st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    elif damage == "empty-config":
        (tiny_model / "config.json").write_text("")
    elif damage == "config-not-json":
        (tiny_model / "config.json").write_text("[1, 2")
    code, out, err = _run(capsys, "predict", tiny_model, "John Smith lives in Paris.", "--backend", "torch")
    assert code == 2, err
    msg = _error_line(err)
    assert str(tiny_model) in msg
    if damage == "pickle-only":
        assert "safetensors" in msg


def test_truncated_onnx_is_one_clear_error(tiny_model, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from nerkit.export import export

    d = tmp_path / "onnx"
    export(tiny_model, d)
    for f in d.glob("*.onnx"):
        f.write_bytes(f.read_bytes()[:1000])
    code, _, err = _run(capsys, "predict", d, "John Smith lives in Paris.")
    assert code == 2 and ".onnx" in _error_line(err)


def test_unwritable_predict_output_is_one_clear_error(tiny_model, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, _, err = _run(capsys, "predict", tiny_model, "Paris", "--output", blocker / "out.jsonl", "--backend", "torch")
    assert code == 2 and "out.jsonl" in err
    assert blocker.read_text() == "x"


def test_predict_output_is_probed_before_the_model_loads(tiny_model, tmp_path, capsys, monkeypatch):
    import nerkit.predict

    if os.geteuid() != 0 or not os.path.isdir("/sys/kernel"):
        pytest.skip("needs root, whose permission bits say yes where writing fails (sysfs)")
    monkeypatch.setattr(nerkit.predict.Tagger, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    code, _, err = _run(capsys, "predict", tiny_model, "Paris", "--output", "/sys/kernel/nerkit-out.jsonl")
    assert code == 2 and "nerkit-out.jsonl: cannot write" in _error_line(err)


# ---------------------------------------------------------------- labelled data checked before training


def test_unlabelled_dev_or_test_is_refused_before_training(tiny_model, tmp_path, capsys, monkeypatch):
    import nerkit.train as train_mod

    data = small_corpus(tmp_path, n_train=6)
    unl = _unlabelled(tmp_path)

    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(train_mod.align, "length_grouped_batches", no_training)
    for flag in ("--dev", "--test"):
        code, _, err = _run(capsys, "train", "--train", data["train"], flag, unl, "--model", tiny_model,
                            "--max-steps", 2, "--output", tmp_path / "out")
        assert code == 2 and "unlabelled.jsonl" in err and "label" in err
        assert not (tmp_path / "out").exists()


def test_evaluate_on_unlabelled_data_is_a_clear_error(tiny_model, tmp_path, capsys):
    code, _, err = _run(capsys, "evaluate", tiny_model, _unlabelled(tmp_path), "--backend", "torch")
    assert code == 2 and "unlabelled.jsonl" in err and "label" in err


@pytest.mark.parametrize("args", [["--max-steps", "-5"], ["--max-steps", "0"], ["--epochs", "-1"], ["--epochs", "0"],
                                  ["--lr", "-0.1"], ["--lr", "0"], ["--batch-tokens", "0"], ["--batch-size", "-2"],
                                  ["--lr", "inf"], ["--epochs", "inf"], ["--evals-per-epoch", "0"],
                                  ["--evals-per-epoch", "-1"], ["--eval-every-steps", "0"]])
def test_nonpositive_training_numbers_are_refused_before_training(tiny_model, tmp_path, capsys, args):
    data = small_corpus(tmp_path, n_train=6)
    try:
        code = main(["train", "--train", str(data["train"]), "--model", str(tiny_model), "--output",
                     str(tmp_path / "out"), *args])
    except SystemExit as exc:  # refused by the argument parser
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "positive" in err and args[0] in err
    assert not (tmp_path / "out").exists()


def test_train_config_rejects_nonpositive_numbers_from_python(tmp_path):
    from nerkit.train import TrainConfig, fit

    for bad in ({"max_steps": -5}, {"epochs": 0}, {"lr": -1.0}, {"batch_tokens": 0}, {"lr": float("inf")},
                {"epochs": float("inf")}, {"evals_per_epoch": 0}, {"evals_per_epoch": -1.0}):
        with pytest.raises(NerkitError, match="positive"):
            fit([], config=TrainConfig(**bad))


def test_a_diverged_run_stops_with_an_error_and_saves_nothing(tiny_model, tmp_path, capsys, monkeypatch):
    # --lr 1e20 (as --lr 100 does on MiniLM) makes every weight NaN within a few steps; that run used to exit 0.
    data = small_corpus(tmp_path, n_train=6)
    out = tmp_path / "out"
    code, _, err = _run(capsys, "train", "--train", data["train"], "--model", tiny_model, "--max-steps", 30,
                        "--lr", "1e20", "--batch-tokens", 256, "--output", out)
    assert code == 2 and "diverged" in _error_line(err) and "--lr" in err
    assert not out.exists()
    from nerkit.train import TrainingDiverged

    from nerkit.checkpoint import checkpoint_root

    seen = []
    import nerkit.train as train_mod

    real_save = train_mod.checkpoint.save
    monkeypatch.setattr(train_mod.checkpoint, "save", lambda *a, **k: seen.append(a[2]) or real_save(*a, **k))
    with pytest.raises(TrainingDiverged):  # also with a dev set, when evaluations come before step 10
        fit(data["train"], dev=data["dev"], output=out, config=TrainConfig(
            model=str(tiny_model), max_steps=8, lr=1e20, batch_tokens=256, eval_every_steps=1, progress=False))
    assert seen and not out.exists() and not checkpoint_root(out).exists()  # its checkpoints would diverge again


def test_dev_data_without_entities_is_refused_before_training(tiny_model, tmp_path, capsys, monkeypatch):
    import nerkit.train as train_mod

    data = small_corpus(tmp_path, n_train=6)
    dev = tmp_path / "dev_o.conll"
    dev.write_text("John O\nlives O\n\nParis O\n.\tO\n")

    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(train_mod.align, "length_grouped_batches", no_training)
    code, _, err = _run(capsys, "train", "--train", data["train"], "--dev", dev, "--model", tiny_model,
                        "--max-steps", 2, "--output", tmp_path / "out")
    line = _error_line(err)
    assert code == 2 and "dev_o.conll" in line and "no entities" in line and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- predict input and output


def test_predict_output_is_written_atomically(tiny_model, tmp_path, capsys, monkeypatch):
    from nerkit.predict import Tagger

    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")

    def fail(self, texts):
        raise NerkitError("interrupted")

    monkeypatch.setattr(Tagger, "predict", fail)
    code, _, _ = _run(capsys, "predict", tiny_model, "Paris", "--output", out, "--backend", "torch")
    assert code == 2 and out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "tiny"]  # no temporary file left
    monkeypatch.undo()
    code, _, _ = _run(capsys, "predict", tiny_model, "Paris", "Berlin", "--output", out, "--backend", "torch")
    assert code == 0 and [json.loads(x)["text"] for x in out.read_text().splitlines()] == ["Paris", "Berlin"]


def test_predict_input_splits_lines_on_newline_only(tiny_model, tmp_path, capsys):
    from nerkit.predict import read_texts

    txt = tmp_path / "in.txt"
    txt.write_bytes("one\u2028still one\u2029and\x0cone\x85more\r\ntwo\n\nthree".encode())
    assert read_texts(txt) == ["one\u2028still one\u2029and\x0cone\x85more", "two", "three"]
    jl = tmp_path / "in.jsonl"
    jl.write_bytes('{"text": "a\u2028b"}\r\n{"text": "c"}\n'.encode())
    assert read_texts(jl) == ["a\u2028b", "c"]
    code, out, _ = _run(capsys, "predict", tiny_model, "--input", txt, "--backend", "torch")
    assert code == 0 and [json.loads(x)["text"] for x in out.rstrip("\n").split("\n")] == read_texts(txt)


def test_predict_empty_input_file_is_an_error_not_stdin(tiny_model, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("should not be read\n"))
    code, out, err = _run(capsys, "predict", tiny_model, "--input", empty, "--backend", "torch")
    assert code == 2 and "empty.txt" in err and "no texts" in err and out == ""


# ---------------------------------------------------------------- CoNLL columns


def test_conll_no_break_space_stays_inside_the_token(tmp_path):
    p = tmp_path / "nbsp.conll"
    p.write_text("New\u00a0York NNP B-NP B-LOC\nis VBZ B-VP O\n\n", encoding="utf-8")
    s = read_conll(p)[0].sentences[0]
    assert s.words == ["New\u00a0York", "is"] and s.tags == ["B-LOC", "O"]
    t = tmp_path / "nbsp.tsv"
    t.write_text("New\u00a0York\tB-LOC\nis\tO\n", encoding="utf-8")
    assert read_conll(t)[0].sentences[0].words == ["New\u00a0York", "is"]


def test_conll_tag_with_a_space_is_rejected(tmp_path):
    p = tmp_path / "mix.conll"
    p.write_text("EU NNP\tB-NP B-ORG\nrejects VBZ\tB-VP O\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"mix.conll:1: .*tag"):
        read_conll(p)


# ---------------------------------------------------------------- invisible characters


@pytest.mark.parametrize("ch", ["\u00ad", "\u200b", "\u200c", "\u200d", "\ufeff", "\x00"])
def test_invisible_characters_do_not_split_words(ch):
    text = f"{ch}Ber{ch}lin is big{ch}"
    words, offsets = tokenize(text)
    if ch in "\u200c\u200d":
        # ZWNJ/ZWJ are grapheme extenders: they stay with the character before them (never cut a cluster).
        assert words == [f"{ch}Ber{ch}lin", "is", f"big{ch}"]
    else:
        assert words == [f"Ber{ch}lin", "is", "big"]
    assert [text[a:b] for a, b in offsets] == words


def test_invisible_characters_tag_like_the_plain_word_with_exact_offsets(tiny_model):
    from nerkit.predict import Tagger

    tagger = Tagger.load(tiny_model, backend="torch")
    plain = "John Smith visited Berlin and Paris"
    for ch in ("\u00ad", "\u200b", "\ufeff", "\x00"):
        text = f"{ch}Jo{ch}hn Smith visited Ber{ch}lin and Pa{ch}ris{ch}"
        a, b = tagger([plain, text])
        assert [e.label for e in a] == [e.label for e in b]
        assert all(text[e.start:e.end] == e.text and e.text.replace(ch, "") == x.text for e, x in zip(b, a))


# ---------------------------------------------------------------- annotation tools


def test_validate_warns_of_crossing_jsonl_spans_which_train_reads(tmp_path, capsys):
    schema = tmp_path / "schema.yaml"
    schema.write_text("types:\n  LOC:\n    description: places\n    examples: [Paris]\n")
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"text": "New York City", "entities": [
        {"start": 0, "end": 8, "label": "LOC"}, {"start": 4, "end": 13, "label": "LOC"}]}) + "\n")
    # nerkit trains on crossing spans (a nested model's layers), so they are a warning, and --strict makes it fail
    code, out, err = _run(capsys, "validate", schema, data)
    assert code == 0 and "warning: span 'New York' (LOC) crosses 'York City' (LOC)" in out and "0 errors, 1 warnings" in out
    code, out, err = _run(capsys, "validate", schema, data, "--strict")
    assert code == 2 and "0 errors and 1 warnings" in err


def test_doccano_utf16_fix_is_all_or_nothing_per_record(tmp_path):
    from nerkit import formats

    text = "😀 Paris and 😀 Rome"  # characters: Paris [2, 7), Rome [14, 18); UTF-16: Paris [3, 8), Rome [16, 20)
    p = tmp_path / "d.jsonl"
    # UTF-16 offsets for both spans; the first is also a valid character range ("aris "), the second is not
    p.write_text(json.dumps({"text": text, "label": [[3, 8, "LOC"], [16, 20, "LOC"]]}) + "\n")
    rec = formats.read(p, "doccano", formats.ChangeLog())[0]
    assert [text[s.start:s.end] for s in rec.spans] == ["Paris", "Rome"]


# ---------------------------------------------------------------- output plumbing


def test_stats_into_a_closed_pipe_has_no_traceback(tmp_path):
    data = small_corpus(tmp_path, n_train=30)
    p = subprocess.Popen([sys.executable, "-m", "nerkit.cli", "stats", str(data["train"]), str(data["dev"])] * 1,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    p.stdout.close()  # like `| head` exiting before nerkit writes
    err = p.stderr.read().decode()
    p.wait()
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_outputs_follow_the_umask_and_carry_no_absolute_paths(tiny_model, tmp_path, capsys):
    data = small_corpus(tmp_path, n_train=6)
    old = os.umask(0o022)
    try:
        out = tmp_path / "model"
        code, _, err = _run(capsys, "train", "--train", data["train"], "--dev", data["dev"], "--model", tiny_model,
                            "--max-steps", 1, "--output", out)
        assert code == 0, err
        assert out.stat().st_mode & 0o777 == 0o755
        assert (out / "nerkit.json").stat().st_mode & 0o777 == 0o644
        assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.stat().st_mode & 0o777 != 0o644} == {}
        pred = tmp_path / "pred.jsonl"
        assert _run(capsys, "predict", out, "Paris", "--output", pred, "--backend", "torch")[0] == 0
        assert pred.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
    for name in ("nerkit.json", "README.md", "config.json"):
        text = (out / name).read_text()
        assert str(tmp_path) not in text and "/work/" not in text, name
    meta = json.loads((out / "nerkit.json").read_text())
    assert meta["data"]["train"]["path"] == "train.conll" and meta["data"]["train"]["sha256_16"]
    assert meta["base_model"] == "tiny" and meta["train_args"]["model"] == "tiny"
    shutil.rmtree(out)


# ---------------------------------------------------------------- text that is not Unicode, output onto input

SURROGATE_JSONL = '{"text": "John lives in Paris \\ud800", "entities": [{"start": 0, "end": 4, "label": "PER"}]}\n'


@pytest.mark.parametrize("verb", ["predict", "evaluate", "preannotate", "convert", "convert-doccano",
                                  "convert-labelstudio", "stats", "tag-corpus"])
def test_a_lone_surrogate_is_one_clear_error_naming_file_and_line(tiny_model, tmp_path, capsys, verb):
    # A JSON "\ud800" escape decodes to a lone surrogate: the tokenizer, Arrow and the UTF-8 writers crashed on it.
    f = tmp_path / "in.jsonl"
    f.write_text('{"text": "fine", "entities": []}\n' + SURROGATE_JSONL)
    args = {"predict": ["predict", tiny_model, "--input", f], "evaluate": ["evaluate", tiny_model, f],
            "preannotate": ["preannotate", tiny_model, f, "--output", tmp_path / "tasks.json"],
            "convert": ["convert", f, tmp_path / "out.conll"], "stats": ["stats", f],
            "tag-corpus": ["tag-corpus", tiny_model, f, "--output", tmp_path / "tc", "--quiet"]}
    if verb == "convert-doccano":
        f.write_text('{"text": "fine", "label": []}\n{"text": "a \\udfff b", "label": [[0, 1, "PER"]]}\n')
        args[verb] = ["convert", f, tmp_path / "out.conll", "--from", "doccano"]
    if verb == "convert-labelstudio":
        f = tmp_path / "export.json"
        f.write_text('[{"id": 47, "data": {"text": "fine"}, "annotations": []},\n'
                     ' {"id": 48, "data": {"text": "John \\ud800"}, "annotations": [{"id": 1, "result": []}]}]\n')
        args[verb] = ["convert", f, tmp_path / "out.conll"]
    code, _, err = _run(capsys, *args[verb])
    line = _error_line(err)
    assert code == 2 and f"{f.name}:2" in line and "\\ud" in line and "surrogate" in line, line


def test_command_line_bytes_that_are_not_utf8_are_one_clear_error(tiny_model, tmp_path):
    # Python hands undecodable argv bytes on as lone surrogates; predict crashed in the tokenizer, convert in the writer.
    data = small_corpus(tmp_path, n_train=3)
    weird = os.fsencode(tmp_path) + b"/caf\xe9.conll"
    with open(weird, "wb") as fh:
        fh.write(data["train"].read_bytes())
    for args in ([b"predict", os.fsencode(tiny_model), b"John \xff lives"],
                 [b"convert", weird, os.fsencode(tmp_path) + b"/out.jsonl"]):
        r = subprocess.run([sys.executable, "-m", "nerkit.cli", *args], capture_output=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1", "LC_ALL": "C.UTF-8"})
        err = r.stderr.decode("utf-8", "replace")
        assert r.returncode == 2 and "Traceback" not in err and "not UTF-8" in err and "\\udc" in err, err


def test_output_onto_the_input_is_refused(tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = small_corpus(tmp_path, n_train=3)
    before = data["train"].read_bytes()
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "John lives in Paris", "id": 7}\n')
    for args in (["convert", data["train"], data["train"]], ["convert", data["train"], "./train.conll"],
                 ["predict", tiny_model, "--input", texts, "--output", texts],
                 ["preannotate", tiny_model, texts, "--output", texts, "--to", "nerkit"],
                 ["suggest", tiny_model, texts, "--output", "texts.jsonl"]):
        code, _, err = _run(capsys, *args)
        assert code == 2 and "is the input" in _error_line(err), args
    assert data["train"].read_bytes() == before and texts.read_text() == '{"text": "John lives in Paris", "id": 7}\n'


def test_predict_carries_the_input_records_fields_through(tiny_model, tmp_path, capsys):
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"id": 7, "text": "John lives in Paris", "meta": {"source": "web"}, "entities": []}\n'
                     '{"text": "Mary went to London", "lang": "en"}\n')
    out = tmp_path / "pred.jsonl"
    assert _run(capsys, "predict", tiny_model, "--input", texts, "--output", out, "--backend", "torch")[0] == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [list(r) for r in recs] == [["id", "text", "meta", "entities"], ["text", "lang", "entities"]]
    assert recs[0]["id"] == 7 and recs[0]["meta"] == {"source": "web"} and recs[1]["lang"] == "en"
    assert all(isinstance(r["entities"], list) for r in recs)


def test_label_map_onto_a_type_the_model_has_is_refused(tiny_model, tmp_path):
    # PER=LOC onto a model with LOC: one of the two types' classifier rows was dropped without a word.
    data = small_corpus(tmp_path, n_train=4)
    with pytest.raises(NerkitError, match="PER.*would all become LOC"):
        fit(data["train"], config=TrainConfig(model=str(tiny_model), max_steps=1, progress=False, label_map="PER=LOC"))


def test_a_model_directory_without_nerkit_json_says_it_runs_without_the_casing_signal(tiny_model, caplog):
    from nerkit.predict import Tagger

    Tagger.load(tiny_model, backend="torch")
    assert "casing signal" not in caplog.text
    (tiny_model / "nerkit.json").unlink()
    with caplog.at_level("WARNING"):
        tagger = Tagger.load(tiny_model, backend="torch")
    assert not tagger.case_signal and "no nerkit.json" in caplog.text and "WITHOUT the casing signal" in caplog.text
