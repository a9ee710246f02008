import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

from nerkit.demo import corpus_path
from nerkit.errors import NerkitError
from nerkit.predict import Tagger
from nerkit.train import TrainConfig, fit


def small_corpus(tmp_path, n_train=30):
    """The first sentences of the embedded corpus (train/dev), as files."""
    out = {}
    for split, n in (("train", n_train), ("dev", 10)):
        blocks = corpus_path(split).read_text().split("\n\n")
        keep = [b for b in blocks if b.strip()][:n]
        p = tmp_path / f"{split}.conll"
        p.write_text("\n\n".join(keep) + "\n")
        out[split] = p
    return out


def test_fit_writes_a_model_dir_the_hf_pipeline_loads(tiny_model, tmp_path):
    from transformers import pipeline

    data = small_corpus(tmp_path)
    out = tmp_path / "model"
    res = fit(data["train"], dev=data["dev"], test=data["dev"], output=out,
              config=TrainConfig(model=str(tiny_model), max_steps=6, batch_tokens=512, progress=False))
    for f in ("config.json", "model.safetensors", "tokenizer.json", "nerkit.json", "README.md"):
        assert (out / f).is_file(), f
    assert not list(out.glob("*.bin"))
    meta = json.loads((out / "nerkit.json").read_text())
    assert meta["tag_scheme"] == "IOB2" and meta["train_args"]["max_steps"] == 6
    assert meta["data"]["train"]["sha256_16"] and "test" in meta["metrics"]
    cfg = json.loads((out / "config.json").read_text())
    from nerkit.data import load

    types = {t[2:] for f in (data["train"], data["dev"]) for d in load(f) for s in d.sentences for t in s.tags if t != "O"}
    assert len(types) >= 3 and set(cfg["label2id"]) == {"O"} | {f"{p}-{t}" for p in "BI" for t in types}
    assert "| micro avg" in (out / "README.md").read_text().replace("**micro avg**", "micro avg")
    # transformers' own pipeline reads the directory (nerkit's pipeline, which fills the casing ids): nerkit's entities
    text = "The composer Bach was born in Eisenach."
    nlp = pipeline("token-classification", model=str(out), trust_remote_code=True)
    want = Tagger.load(out, backend="torch", bf16="off")(text)
    assert [(e["start"], e["end"], e["entity_group"]) for e in nlp(text)] == [(e.start, e.end, e.label) for e in want]
    assert {e["entity_group"] for e in nlp(text)} <= {t[2:] for t in cfg["label2id"]}
    # nerkit reloads it and scores the test data exactly as training did
    from nerkit.data import load
    from nerkit.evaluation import evaluate

    assert res["metrics"]["test"]["support"] > 0
    assert res.output == out and res.metrics is res["metrics"] and res["output"] == str(out)  # typed, and as before
    assert res.meta.steps == 6 and res["meta"]["steps"] == 6 and res.history == res.meta.history
    assert evaluate(Tagger.load(out, backend="torch"), load(data["dev"]))["f1"] == res["metrics"]["test"]["f1"]


def test_training_is_deterministic_with_seed(tiny_model, tmp_path):
    data = small_corpus(tmp_path, n_train=12)
    outs = []
    for k in range(2):
        fit(data["train"], output=tmp_path / f"m{k}",
            config=TrainConfig(model=str(tiny_model), max_steps=3, batch_tokens=256, seed=7, progress=False))
        outs.append(load_file(str(tmp_path / f"m{k}" / "model.safetensors")))
    assert outs[0].keys() == outs[1].keys()
    assert all((outs[0][k] == outs[1][k]).all() for k in outs[0])


def test_class_weights_weigh_rare_tags_up():
    from nerkit.train import _class_weights

    tag_ids = [[0, 0, 0, 0, 0, 0, 1, 2], [0, 0, 0, -100, 1]]  # O common, B rarer, I rarest; -100 ignored
    assert _class_weights("none", tag_ids, 3) is None
    w = _class_weights("balanced", tag_ids, 3)
    assert w[0] < w[1] < w[2] and float(w.mean()) == pytest.approx(1.0)
    s = _class_weights("sqrt", tag_ids, 3)
    assert w[0] < s[0] and s[2] < w[2]  # sqrt: the same order, flatter
    with pytest.raises(NerkitError, match="class-weights"):
        _class_weights("rare", tag_ids, 3)


def test_class_weights_and_sentence_level_options_train(tiny_model, tmp_path):
    data = small_corpus(tmp_path, n_train=8)
    params = {}
    for kind in ("none", "balanced"):
        res = fit(data["train"], dev=data["dev"], output=None,
                  config=TrainConfig(model=str(tiny_model), max_steps=2, batch_tokens=256, class_weights=kind,
                                     context=0, label_all_subwords=True, progress=False))
        assert res["meta"]["windows"]["sentence_level"] is True
        assert res["meta"]["train_args"]["class_weights"] == kind
        params[kind] = res["model"].classifier.weight.detach().clone()
    # Same seed, same batches: only the weighted loss differs, so the trained classifier must differ.
    assert not np.allclose(params["none"].numpy(), params["balanced"].numpy())


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "nerkit.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("content,needle", [
    ("John B-PER\nsmith\n", ":2: line has 1 column"),
    ("John PERSON\n", ":1: tag 'PERSON'"),
    ("", "no sentences"),
])
def test_cli_reports_bad_files_without_traceback(tmp_path, content, needle):
    p = tmp_path / "bad.conll"
    p.write_text(content)
    for verb in (["stats", str(p)], ["train", "--train", str(p), "--output", str(tmp_path / "o")]):
        r = run_cli(*verb)
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and str(p) in r.stderr
        assert "Traceback" not in r.stderr


def test_cli_reports_undecodable_bytes_and_counts_overlaps(tmp_path):
    p = tmp_path / "bad.conll"
    p.write_bytes(b"John B-PER\n\xff\xfe O\n")
    r = run_cli("stats", str(p))
    assert r.returncode == 2 and ":2:" in r.stderr and "Traceback" not in r.stderr
    j = tmp_path / "bad.jsonl"
    j.write_text(json.dumps({"text": "New York City", "entities": [
        {"start": 0, "end": 8, "label": "LOC"}, {"start": 4, "end": 13, "label": "LOC"}]}) + "\n")
    r = run_cli("stats", str(j))  # overlapping entities are read (nested data), and counted
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert [line.split()[-3:] for line in r.stdout.splitlines() if line.startswith("crossing")] == [["1", "(partly", "overlapping)"]]


def test_cli_predict_and_evaluate(tiny_model, tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("John Smith visited Paris.\n\n  Mary  Jones   \n")
    r = run_cli("predict", str(tiny_model), "--input", str(texts), "--backend", "torch")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["text"] for x in lines] == ["John Smith visited Paris.", "  Mary  Jones   "]
    for x in lines:
        assert all(x["text"][e["start"]:e["end"]] == e["text"] for e in x["entities"])
    data = small_corpus(tmp_path, n_train=5)
    r = run_cli("evaluate", str(tiny_model), str(data["dev"]), "--json", "--backend", "torch")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["support"] == sum(v["support"] for v in rep["per_type"].values()) > 0


def test_the_tiny_test_model_reads_words_not_unknowns(tiny_model):
    """Every unit test trains on the tiny model: its tokenizer must know its words (it once read all as [UNK])."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    ids = tok(["john", "smith", "lives", "in", "paris"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and len(set(ids)) == 5


def test_cli_train_prints_score_tables_or_json(tiny_model, tmp_path, capsys):
    from nerkit.cli import main

    data = small_corpus(tmp_path, n_train=6)
    args = ["train", "--train", str(data["train"]), "--dev", str(data["dev"]), "--test", str(data["dev"]),
            "--model", str(tiny_model), "--max-steps", "2", "--batch-tokens", "256"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    # the tables `nerkit evaluate` prints, one per scored set and named by its file, not a page of JSON
    assert f"dev ({data['dev']}):" in out and f"test ({data['dev']}):" in out and "{" not in out
    assert sum(line.startswith("micro avg") for line in out.splitlines()) == 2
    assert main([*args, "--output", str(tmp_path / "b"), "--json"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out[out.index("{"):])
    assert set(metrics) == {"dev", "test"} and metrics["dev"]["support"] > 0


def test_cli_predict_refuses_a_file_given_as_text(tiny_model, tmp_path, capsys):
    from nerkit.cli import main

    texts = tmp_path / "in.jsonl"
    texts.write_text('{"text": "John Smith visited Paris."}\n', encoding="utf-8")
    assert main(["predict", str(tiny_model), str(texts)]) == 2
    err = capsys.readouterr().err
    assert f"is the file {texts}: tag the texts in it with --input {texts}" in err and "Traceback" not in err
    assert main(["predict", str(tiny_model), "--input", str(texts), "--backend", "torch"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "John Smith visited Paris."
