"""`nerkit train --search`: four trainings around the derived budget, the dev-best kept and saved."""
import json
from types import SimpleNamespace

import pytest

from nerkit.cli import main
from nerkit.errors import NerkitError
from nerkit.search import search
from nerkit.train import Datasets, TrainConfig, budget_for, fit
from nerkit.types import Document, Sentence
from test_train import small_corpus


def _docs(words, tags):
    return [Document("d", [Sentence(list(words), list(tags))])]


def test_search_trains_four_points_and_saves_the_dev_best(tiny_model, tmp_path, capsys):
    from nerkit.evaluation import evaluate
    from nerkit.formats import load
    from nerkit.predict import Tagger

    data = small_corpus(tmp_path, n_train=12)
    out = tmp_path / "m"
    rc = main(["train", "--train", str(data["train"]), "--dev", str(data["dev"]), "--output", str(out),
               "--model", str(tiny_model), "--max-steps", "4", "--search"])
    assert rc == 0
    assert "<- kept" in capsys.readouterr().err
    meta = json.loads((out / "nerkit.json").read_text())
    found = meta["search"]
    base = budget_for(str(data["train"]), config=TrainConfig(model=str(tiny_model), max_steps=4))
    assert [(p["lr_x"], p["epochs_x"]) for p in found["points"]] == [(1.0, 1.0), (2.0, 1.0), (1.0, 2.0), (2.0, 2.0)]
    assert [p["lr"] for p in found["points"]] == pytest.approx([base["lr"] * x for x in (1, 2, 1, 2)])
    kept = found["kept"]
    assert kept["dev_f1"] == max(p["dev_f1"] for p in found["points"]) and found["chosen_on"] == "dev"
    assert meta["train_args"]["lr"] == pytest.approx(kept["lr"]) and meta["train_args"]["epochs"] == kept["epochs"]
    # The directory holds the kept model itself: it scores the kept point's dev F1.
    assert evaluate(Tagger.load(out, backend="torch"), load(str(data["dev"])))["f1"] == pytest.approx(kept["dev_f1"])


def test_search_keeps_the_best_dev_and_the_earlier_of_ties(monkeypatch, tmp_path):
    import nerkit.search as search_mod

    scores = {(1.0, 1.0): 0.50, (2.0, 1.0): 0.61, (1.0, 2.0): 0.61, (2.0, 2.0): 0.40}
    base = {"lr": 1e-4, "epochs": 10.0}
    monkeypatch.setattr(search_mod, "budget_for", lambda *a, **k: base)
    data = Datasets(_docs(["Ann", "Lee"], ["B-PER", "I-PER"]), _docs(["Bo"], ["B-PER"]), [], ["O", "B-PER", "I-PER"])

    def fake_fit(train, dev, test, output, config, scheme, annotators=None):
        assert train is data and dev is None and test is None  # every point trains on the data read once
        assert output is None  # points are never written; only the kept one is saved
        assert annotators == ["ann"]  # recorded in each point's nerkit.json
        key = (round(config.lr / base["lr"], 6), config.epochs / base["epochs"])
        return SimpleNamespace(metrics={"dev": {"f1": scores[key]}}, meta=SimpleNamespace(extra={}), main=True)

    monkeypatch.setattr(search_mod, "fit", fake_fit)
    res = search_mod.search(data, config=TrainConfig(model="m", progress=False), annotators=["ann"])
    assert (res.best.lr_x, res.best.epochs_x, res.best.dev_f1) == (2.0, 1.0, 0.61)
    assert len(res.points) == 4 and res.result.meta.extra["search"]["kept"]["lr_x"] == 2.0


def test_search_needs_a_dev_set_and_refuses_a_foreign_output_before_training(tmp_path):
    with pytest.raises(NerkitError, match="--dev"):
        search("t.conll", None, config=TrainConfig(model="m"))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(NerkitError, match="not a nerkit model"):
        search("t.conll", "d.conll", output=foreign, config=TrainConfig(model="m"))
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_the_default_searches_small_data_with_a_dev_set_only(tiny_model, tmp_path, monkeypatch):
    import nerkit.budget
    from nerkit.search import decide

    data = small_corpus(tmp_path, n_train=12)
    cfg = TrainConfig(model=str(tiny_model))
    yes = decide(str(data["train"]), str(data["dev"]), cfg)
    n = yes.budget["sentences"]
    assert yes.search and f"{n} sentences" in yes.reason and "--no-search" in yes.reason and 5 < n <= 12
    no_dev = decide(str(data["train"]), None, cfg)
    assert not no_dev.search and "no --dev" in no_dev.reason
    for chosen in ({"lr": 1e-4}, {"epochs": 3.0}, {"max_steps": 5}):  # the user chose the budget: trained as given
        assert decide(str(data["train"]), str(data["dev"]), TrainConfig(model=str(tiny_model), **chosen)) == \
            search_mod_decision(False, "")
    assert "--resume" in decide(str(data["train"]), str(data["dev"]), TrainConfig(model=str(tiny_model), resume=True)).reason
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not decide(str(data["train"]), str(data["dev"]), cfg).search
    with pytest.raises(NerkitError, match="one process"):
        search(str(data["train"]), str(data["dev"]), config=cfg)
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setattr(nerkit.budget, "SEARCH_SENTENCES", n - 1)  # larger than the limit: trained once, quietly
    big = decide(str(data["train"]), str(data["dev"]), cfg)
    assert not big.search and big.reason == ""


def search_mod_decision(search, reason):
    from nerkit.search import Decision

    return Decision(search, reason)


def test_nerkit_train_searches_by_default_on_small_data_and_no_search_trains_once(tiny_model, tmp_path, monkeypatch,
                                                                                  capsys):
    import nerkit.search as search_mod
    import nerkit.train as train_mod

    data = small_corpus(tmp_path, n_train=12)
    calls = []
    real_fit = train_mod.fit

    def short_fit(train, dev=None, test=None, output=None, config=None, scheme=None, annotators=None):
        calls.append((config.lr, config.epochs))
        # a few steps per point keeps the test fast; the lr and epochs the search chose are kept in calls
        return real_fit(train, dev, test, output, __import__("dataclasses").replace(config, max_steps=2), scheme,
                        annotators=annotators)

    monkeypatch.setattr(search_mod, "fit", short_fit)
    monkeypatch.setattr(train_mod, "fit", short_fit)
    args = ["train", "--train", str(data["train"]), "--dev", str(data["dev"]), "--model", str(tiny_model)]
    assert main(args + ["--output", str(tmp_path / "a"), "--test", str(data["dev"])]) == 0
    err = capsys.readouterr().err
    assert "trying the derived learning rate and epochs at x1 and x2" in err and "<- kept" in err
    base = budget_for(str(data["train"]), config=TrainConfig(model=str(tiny_model)))
    assert calls == [(pytest.approx(base["lr"] * a), base["epochs"] * b) for b in (1, 2) for a in (1, 2)]
    meta = json.loads((tmp_path / "a" / "nerkit.json").read_text())
    assert len(meta["search"]["points"]) == 4 and meta["search"]["chosen_on"] == "dev"
    # each point's test F1 is recorded beside its dev F1 (for comparison; the kept one is the dev-best)
    assert all(0 <= p["test_f1"] <= 1 for p in meta["search"]["points"])
    assert meta["search"]["kept"]["test_f1"] == meta["metrics"]["test"]["f1"]
    calls.clear()
    assert main(args + ["--output", str(tmp_path / "b"), "--no-search"]) == 0
    assert len(calls) == 1 and "search" not in json.loads((tmp_path / "b" / "nerkit.json").read_text())
    assert "<- kept" not in capsys.readouterr().err


def test_nerkit_train_reads_and_tokenizes_each_file_once(tiny_model, tmp_path, monkeypatch, capsys):
    """The decision, the budget, the four search points and the kept model's record share one read of each file
    (before: the training file was read 9 times, dev and test 8 times each, and the training data tokenized 5)."""
    import collections
    import dataclasses
    from pathlib import Path

    import nerkit.align as align
    import nerkit.files as files
    import nerkit.formats as formats
    import nerkit.search as search_mod
    import nerkit.train as train_mod

    data = small_corpus(tmp_path, n_train=12)
    test = tmp_path / "test.conll"
    test.write_bytes(data["dev"].read_bytes())
    parsed, read, tokenized = collections.Counter(), collections.Counter(), []
    real_load, real_read, real_encode, real_fit = formats.load, files.read_bytes, align.encode_documents, train_mod.fit

    def load(path, *a, **k):
        parsed[Path(path).name] += 1
        return real_load(path, *a, **k)

    def read_bytes(path):
        read[Path(path).name] += 1
        return real_read(path)

    first = real_load(str(data["train"]))[0].sentences[0].words

    def encode(docs, *a, **k):
        if docs and docs[0].sentences and docs[0].sentences[0].words == first:  # the training data
            tokenized.append(len(docs))
        return real_encode(docs, *a, **k)

    def short_fit(train, dev=None, test=None, output=None, config=None, scheme=None, annotators=None):
        return real_fit(train, dev, test, output, dataclasses.replace(config, max_steps=2), scheme, annotators)

    monkeypatch.setattr(formats, "load", load)
    monkeypatch.setattr(files, "read_bytes", read_bytes)
    monkeypatch.setattr(align, "encode_documents", encode)
    monkeypatch.setattr(search_mod, "fit", short_fit)
    out = tmp_path / "m"
    assert main(["train", "--train", str(data["train"]), "--dev", str(data["dev"]), "--test", str(test),
                 "--output", str(out), "--model", str(tiny_model)]) == 0
    assert "trying the derived learning rate" in capsys.readouterr().err  # the default decided to search
    meta = json.loads((out / "nerkit.json").read_text())
    assert len(meta["search"]["points"]) == 4
    assert parsed == {"train.conll": 1, "dev.conll": 1, "test.conll": 1}
    assert read == {"train.conll": 2, "dev.conll": 2, "test.conll": 2}  # parsed once, hashed once for nerkit.json
    assert len(tokenized) == 1
    from nerkit.files import fingerprint

    assert meta["data"]["test"] == {"documents": 1, "sentences": 8, "path": "test.conll",
                                    "sha256_16": fingerprint(test)}


def test_a_search_point_trains_the_model_a_direct_fit_of_its_settings_trains(tiny_model, tmp_path):
    """Bit for bit: sharing the read and tokenized data across points changes nothing in what each learns."""
    import dataclasses

    import torch

    data = small_corpus(tmp_path, n_train=12)
    cfg = TrainConfig(model=str(tiny_model), max_steps=3, progress=False)
    found = search(str(data["train"]), str(data["dev"]), str(data["dev"]), config=cfg, lr_x=(1.0, 2.0),
                   epochs_x=(2.0,))
    direct = fit(str(data["train"]), str(data["dev"]), str(data["dev"]),
                 config=dataclasses.replace(cfg, lr=found.best.lr, epochs=found.best.epochs))
    got, want = found.result.model.state_dict(), direct.model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert found.result.metrics == direct.metrics
    assert found.result.meta.data == direct.meta.data  # the same files named, with the same fingerprints
