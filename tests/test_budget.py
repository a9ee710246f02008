"""The training budget rule (nerkit.budget) and transfer from an existing model (nerkit.transfer)."""
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nerkit.budget import REFERENCE_TOKENS, plan_budget
from nerkit.errors import NerkitError
from nerkit.train import TrainConfig, fit
from nerkit.transfer import parse_label_map, source_labels
from test_train import small_corpus


def test_reference_size_keeps_the_conll_defaults():
    b = plan_budget(14041, 256_000)
    assert (b.batch_tokens, b.epochs, b.lr, b.evals_per_epoch, b.early_stopping, b.warmup) == (2048, 2.0, 3e-4, 1.0, 2, 0.1)


def test_small_data_gets_more_epochs_smaller_batches_and_enough_steps():
    sizes = [(100, 1_800), (300, 6_000), (1_000, 20_000), (3_000, 90_000), (14_000, REFERENCE_TOKENS), (100_000, 2_000_000)]
    plans = [plan_budget(n, t) for n, t in sizes]
    epochs = [p.epochs for p in plans]
    assert epochs == sorted(epochs, reverse=True) and epochs[0] > 10 * epochs[-1] / 2
    assert [p.batch_tokens for p in plans] == sorted(p.batch_tokens for p in plans)
    for p in plans:
        assert p.steps_per_epoch() * p.epochs >= 150, p.describe()  # never the 14 steps that gave an empty model
        assert 2 <= p.epochs * p.evals_per_epoch <= 14  # about ten evaluation points whatever the length
        assert p.early_stopping >= 2
    assert plans[-1].epochs == 2.0 and plans[-1].batch_tokens == 2048


def test_given_values_are_kept_and_the_log_says_what_was_derived():
    b = plan_budget(666, 11_000, epochs=12, lr=1e-4)
    assert b.epochs == 12 and b.lr == 1e-4 and "epochs" not in b.chosen and "batch tokens" in b.chosen
    line = b.describe()
    assert "666 sentences" in line and "11,000 tokens" in line and "12 epochs" in line and "derived: batch tokens" in line


def test_fit_logs_and_records_the_budget(tiny_model, tmp_path, capsys):
    data = small_corpus(tmp_path, n_train=8)
    out = tmp_path / "m"
    fit(data["train"], dev=data["dev"], output=out,
        config=TrainConfig(model=str(tiny_model), max_steps=3, progress=True))
    err = capsys.readouterr().err
    import re

    assert re.search(r"training budget: \d sentences, [\d,]+ tokens: \d+ epochs of 256-token batches", err), err
    assert "; --max-steps 3: training stops there" in err  # not only the derived "~N steps"
    meta = json.loads((out / "nerkit.json").read_text())
    assert meta["train_args"]["batch_tokens"] == 256 and meta["train_args"]["epochs"] > 2
    assert "batch tokens" in meta["budget"]["chosen"]


def test_the_default_searches_only_small_data_with_derived_settings():
    assert plan_budget(300, 6_000).searches() and plan_budget(1000, 20_000).searches()
    assert not plan_budget(1001, 20_000).searches()  # larger data: the rule is close to the best
    assert not plan_budget(14041, 256_000).searches()
    assert not plan_budget(300, 6_000, lr=1e-4).searches()  # the user chose: kept
    assert not plan_budget(300, 6_000, epochs=5).searches()


def test_parse_label_map():
    assert parse_label_map("PER=PESSOA, ORG=ORGANIZACAO") == {"PER": "PESSOA", "ORG": "ORGANIZACAO"}
    assert parse_label_map(None) == {}
    for bad in ("PER", "PER=", "=X", "PER=A,PER=B", "P ER=X"):
        with pytest.raises(NerkitError):
            parse_label_map(bad)


def _source_model(tmp_path, tiny_model):
    """A trained-looking source NER model: the tiny model (labels O, B/I-PER, B/I-LOC) with a recognisable head."""
    state = load_file(str(tiny_model / "model.safetensors"))
    return tiny_model, state["classifier.weight"], state["classifier.bias"]


def _labels_of(path):
    cfg = json.loads((path / "config.json").read_text())
    return [cfg["id2label"][str(i)] for i in range(len(cfg["id2label"]))]


def test_transfer_reuses_rows_by_name_and_starts_others_fresh(tiny_model, tmp_path, capsys):
    src, w, b = _source_model(tmp_path, tiny_model)
    assert source_labels(str(src)) == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    data = small_corpus(tmp_path, n_train=10)  # types of the embedded corpus: PER, ORG, LOC, DATE, ...
    out = tmp_path / "t"
    res = fit(data["train"], output=out, config=TrainConfig(model=str(src), max_steps=1, lr=1e-12, progress=True))
    assert "classifier rows reused for 5 of" in capsys.readouterr().err
    new = load_file(str(out / "model.safetensors"))
    labels = _labels_of(out)
    assert len(labels) > 5  # sizes differ: the loaded head was resized
    src_labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    for t in src_labels:  # lr 1e-12: rows are still what was copied
        assert torch.allclose(new["classifier.weight"][labels.index(t)], w[src_labels.index(t)], atol=1e-6), t
    fresh = [i for i, t in enumerate(labels) if t not in src_labels]
    assert res["meta"]["transfer"]["fresh"] == [labels[i] for i in fresh]
    assert new["classifier.weight"][fresh].abs().max() < 0.2  # initializer scale, not the x20 source rows


def test_transfer_with_label_map_and_same_size_head(tiny_model, tmp_path):
    src, w, b = _source_model(tmp_path, tiny_model)
    # Data with exactly 5 labels (O, B/I-PERSON, B/I-CITY): same head size, other names.
    text = "john B-PERSON\nsmith I-PERSON\nvisited O\nparis B-CITY\n\nmary B-PERSON\nwent O\nto O\nberlin B-CITY\n"
    train = tmp_path / "train.conll"
    train.write_text(text)
    out = tmp_path / "t"
    res = fit(train, output=out, config=TrainConfig(model=str(src), max_steps=1, lr=1e-12, progress=False,
                                                     label_map="PER=PERSON,LOC=CITY"))
    labels = _labels_of(out)
    new = load_file(str(out / "model.safetensors"))
    src_labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    for t, s in (("B-PERSON", "B-PER"), ("I-PERSON", "I-PER"), ("B-CITY", "B-LOC"), ("I-CITY", "I-LOC"), ("O", "O")):
        assert torch.allclose(new["classifier.weight"][labels.index(t)], w[src_labels.index(s)], atol=1e-6), t
    assert res["meta"]["transfer"]["reused"]["B-CITY"] == "B-LOC"
    # Without the map, the same-size head must not be kept in index order: PERSON/CITY rows start fresh.
    out2 = tmp_path / "t2"
    res2 = fit(train, output=out2, config=TrainConfig(model=str(src), max_steps=1, lr=1e-12, progress=False))
    assert set(res2["meta"]["transfer"]["fresh"]) == {"B-PERSON", "I-PERSON", "B-CITY", "I-CITY"}
    new2 = load_file(str(out2 / "model.safetensors"))
    assert not torch.allclose(new2["classifier.weight"][_labels_of(out2).index("B-CITY")], w[3], atol=1e-3)


def test_label_map_errors_name_the_problem(tiny_model, tmp_path):
    data = small_corpus(tmp_path, n_train=4)
    with pytest.raises(NerkitError, match="does not have"):
        fit(data["train"], config=TrainConfig(model=str(tiny_model), max_steps=1, progress=False, label_map="GPE=LOC"))


def test_budget_for_is_the_budget_fit_uses(tiny_model, tmp_path):
    from nerkit.budget import Budget
    from nerkit.train import budget_for

    data = small_corpus(tmp_path, n_train=8)
    res = fit(data["train"], config=TrainConfig(model=str(tiny_model), max_steps=1, progress=False))
    b = budget_for(data["train"], model=str(tiny_model))
    b["chosen"] = tuple(b["chosen"])
    assert Budget(**b).describe() == res["meta"]["budget"]["describe"]


def test_training_goes_on_only_while_dev_f1_still_climbs_steeply_or_just_did():
    from nerkit.budget import EXTEND_CAP, extension

    h = lambda *f1: [{"dev_f1": x} for x in f1]  # noqa: E731
    assert extension(h(0.013, 0.109), planned=100, steps=100) == 50  # tos-clauses' plan: 1.3 -> 10.9
    assert extension(h(0.9049, 0.9340), planned=264, steps=264) == 0  # CoNLL-2003 full: its tuned plan is kept
    assert extension(h(0.076, 0.239, 0.50, 0.543), planned=296, steps=588) == 148  # tos-clauses, 4.3 points up
    assert extension(h(0.5, 0.6, 0.58, 0.55), planned=100, steps=100) == 0  # the best three back: levelled off
    assert extension(h(0.0974, 0.4803, 0.5668, 0.5663), planned=588, steps=588) == 294  # tos-clauses seed 44
    assert extension(h(0.0974, 0.4803, 0.5668, 0.5663, 0.5993, 0.6341), planned=588, steps=882) == 294  # again
    assert extension(h(0.48, 0.5668, 0.5663, 0.5993, 0.6341, 0.5891, 0.60), planned=588, steps=1176) == 0
    assert extension(h(0.5, 0.6, 0.55), planned=100, steps=100) == 50  # three: the climb, then a dip
    assert extension(h(0.6, 0.5), planned=100, steps=100) == 0  # two: the last one must be the best
    assert extension(h(0.7046, 0.7047, 0.7046), planned=441, steps=441) == 0  # CoNLL-2003 100's flat end
    assert extension(h(0.6),  planned=100, steps=100) == 0  # one evaluation: no curve to read
    assert extension(h(0.0, 0.0), planned=100, steps=100) == 0
    assert extension(h(0.1, 0.3), planned=100, steps=int(100 * (1 + EXTEND_CAP))) == 0  # the cap reached
    assert extension(h(0.1, 0.3), planned=100, steps=280) == 20  # up to the cap


def test_the_log_names_the_climb_the_rule_read():
    from nerkit.budget import extending

    # tos-clauses seed 45 at its plan's end: the best of the last two against the best before them
    assert extending([{"dev_f1": x} for x in (0.0592, 0.1823, 0.4657, 0.5675)], 294, 0.5) == (
        "dev F1 still climbing (best of the last two evaluations 56.75, 18.23 before): 294 more steps, the learning "
        "rate restarting at 0.5x")
    assert extending([{"dev_f1": x} for x in (0.013, 0.109)], 50, 0.5).startswith(
        "dev F1 still climbing (best of the last evaluation 10.90, 1.30 before): 50 more steps")


def test_linear_schedule_extends_with_a_restart():
    from nerkit.loop import LinearSchedule

    s = LinearSchedule(10, 100)
    old = [max(0.0, (100 - k) / 90) if k >= 10 else (k + 1) / 10 for k in range(120)]
    assert [s(k) for k in range(120)] == old  # as before until extended
    assert s.extend(50, 0.5) == 150
    assert s(99) == old[99] and s(100) == 0.5 and s(125) == 0.25 and s(150) == 0.0


def test_sparse_data_draws_its_empty_windows_anew_each_epoch():
    from nerkit.loop import epoch_subset

    has = np.array([True] * 10 + [False] * 40)
    a, b = epoch_subset(has, np.random.default_rng(1)), epoch_subset(has, np.random.default_rng(2))
    assert set(range(10)) <= set(a) and len(a) == 20 and len(set(a)) == 20  # every entity window, as many others
    assert set(a) != set(b)  # another draw of the empty windows
    assert epoch_subset(np.array([True] * 10 + [False] * 10), np.random.default_rng(1)) is None  # not sparse
    assert epoch_subset(np.zeros(5, dtype=bool), np.random.default_rng(1)) is None  # nothing to favour


def _features(train, model):
    from nerkit.train import build_features, load_datasets, load_tokenizer

    data = load_datasets(train)
    tok = load_tokenizer(str(model))
    cfg = TrainConfig(model=str(model), context=0).resolved()
    return build_features(data.encoded_train(tok), tok, cfg, data.labels, True, 512).features


def test_fit_on_sparse_data_says_so_and_keeps_the_planned_steps(tiny_model, tmp_path, capsys):
    import json as _json

    rows = [{"text": f"alice met bob in town {i} .", "entities": [{"start": 0, "end": 5, "label": "PER"}]}
            for i in range(4)] + [{"text": f"nothing happened on day {i} at all .", "entities": []} for i in range(16)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "m"
    res = fit(train, dev=train, output=out,
              config=TrainConfig(model=str(tiny_model), context=0, epochs=2, batch_tokens=40, progress=True,
                                 early_stopping=5))
    assert "sparse data: 16 of 20 training windows hold no entity" in capsys.readouterr().err
    from nerkit.loop import epoch_batches

    full = len(epoch_batches([len(f.input_ids) for f in _features(train, tiny_model)], 40, np.random.default_rng(0)))
    # the plan is the whole data's two epochs (not two of the 8-window draws), evaluated once per whole-data epoch
    assert full >= 4 and res.meta.steps == 2 * full
    assert [h["step"] for h in res.meta.history] == [full, 2 * full]


def test_fit_trains_on_past_a_plateau_that_follows_a_steep_climb(tiny_model, tmp_path, monkeypatch, capsys):
    import nerkit.train as train_mod

    rows = [{"text": f"alice met bob in town {i} .", "entities": [{"start": 0, "end": 5, "label": "PER"}]}
            for i in range(12)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    real, calls = train_mod._score_dev, []

    def scripted(f1s):
        def score(tagger, model, dev):
            rep = dict(real(tagger, model, dev))
            rep["f1"] = f1s(len(calls))
            calls.append(rep["f1"])
            return rep
        return score

    cfg = TrainConfig(model=str(tiny_model), context=0, batch_tokens=40, progress=False)
    # a dev F1 that creeps up: neither early stopping nor an extension; the plan's own evaluations
    monkeypatch.setattr(train_mod, "_score_dev", scripted(lambda i: 0.5 + 1e-4 * i))
    plain = fit(data, dev=data, config=cfg)
    n = len(calls)
    assert n >= 3 and "extended_steps" not in plain.meta.budget
    # a climb to the plan's last-but-one evaluation, held (a hair under) at its last, then lower
    calls.clear()
    steep = {n - 2: 0.6, n - 1: 0.599}
    monkeypatch.setattr(train_mod, "_score_dev", scripted(lambda i: steep.get(i, 0.1 + 0.01 * i if i < n else 0.3)))
    capsys.readouterr()
    res = fit(data, dev=data, config=cfg)
    assert res.meta.budget["extended_steps"] == [math.ceil(plain.meta.steps * 0.5)]
    assert res.meta.steps > plain.meta.steps and len(calls) > n
    assert res.meta.budget["planned_steps"] == plain.meta.budget["planned_steps"] == plain.meta.steps
    assert "dev F1 still climbing (best of the last two evaluations 60.00, " in capsys.readouterr().out
