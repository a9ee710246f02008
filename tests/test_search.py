"""`nerkit train --search`: four trainings around the derived budget, the dev-best kept and saved."""
import json
from types import SimpleNamespace

import pytest

from nerkit.cli import main
from nerkit.errors import NerkitError
from nerkit.search import search
from nerkit.train import TrainConfig, budget_for
from test_train import small_corpus


def test_search_trains_four_points_and_saves_the_dev_best(tiny_model, tmp_path, capsys):
    from nerkit.evaluate import evaluate
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
    assert evaluate(Tagger.load(out, backend="torch"), str(data["dev"]))["f1"] == pytest.approx(kept["dev_f1"])


def test_search_keeps_the_best_dev_and_the_earlier_of_ties(monkeypatch, tmp_path):
    import nerkit.search as search_mod

    scores = {(1.0, 1.0): 0.50, (2.0, 1.0): 0.61, (1.0, 2.0): 0.61, (2.0, 2.0): 0.40}
    base = {"lr": 1e-4, "epochs": 10.0}
    monkeypatch.setattr(search_mod, "budget_for", lambda *a, **k: base)

    def fake_fit(train, dev, test, output, config, scheme, annotators=None):
        assert output is None  # points are never written; only the kept one is saved
        assert annotators == ["ann"]  # every point reads the same annotator's data
        key = (round(config.lr / base["lr"], 6), config.epochs / base["epochs"])
        return SimpleNamespace(metrics={"dev": {"f1": scores[key]}}, meta=SimpleNamespace(extra={}), main=True)

    monkeypatch.setattr(search_mod, "fit", fake_fit)
    res = search_mod.search("train.conll", "dev.conll", config=TrainConfig(model="m", progress=False),
                            annotators=["ann"])
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
