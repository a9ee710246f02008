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


class _FakeTraining:
    """A training whose dev curve is given: ``curve[k]`` at its k-th evaluation (every ``every`` steps of
    ``planned``; a shorter curve ends at its last); it counts the steps it trains."""

    def __init__(self, curve, planned, every, trained):
        from nerkit.loop import LoopState

        self.curve, self.planned, self.every, self.trained = curve, planned, every, trained
        self.run = SimpleNamespace(total_steps=planned, state=LoopState(), clock=None)

    def steps(self, log):
        state = self.run.state
        for step in range(1, self.planned + 1):
            if step > self.every * len(self.curve):  # a curve shorter than the plan: early stopping ended it
                return
            state.step = step
            self.trained.append(step)
            dev = None
            if step % self.every == 0 or step == self.planned:
                f1 = self.curve[min(len(self.curve), step // self.every) - 1]
                if f1 is None:  # the loss went NaN
                    from nerkit.train import TrainingDiverged

                    raise TrainingDiverged(f"diverged by step {step}")
                dev = {"f1": f1}
                state.history.append({"step": step, "dev_f1": f1})
                state.best_f1 = max(state.best_f1, f1)
            stopped = len(self.curve) < 10 and step == self.every * len(self.curve)
            yield SimpleNamespace(step=step, dev=dev, stopped=stopped)

    def finish(self, train_seconds):
        return SimpleNamespace(metrics={"dev": {"f1": self.run.state.best_f1}}, main=True,
                               meta=SimpleNamespace(extra={}, steps=self.run.state.step, total_seconds=0.0))


def _fake_search(monkeypatch, curves, planned=100, **kw):
    """``search`` over trainings with the given dev curves per (lr x, epochs x); the steps each trained."""
    import nerkit.search as search_mod

    base = {"lr": 1e-4, "epochs": 10.0}
    monkeypatch.setattr(search_mod, "budget_for", lambda *a, **k: base)
    data = Datasets(_docs(["Ann", "Lee"], ["B-PER", "I-PER"]), _docs(["Bo"], ["B-PER"]), [], ["O", "B-PER", "I-PER"])
    trained = {}

    def fake_start(train, cfg, output=None, annotators=None, talk=True, derived=()):
        assert train is data and output is None  # every point trains on the data read once; only the kept is saved
        key = (round(cfg.lr / base["lr"], 6), cfg.epochs / base["epochs"])
        assert annotators == ["ann"] and talk == (not trained)  # the first point says what one training would
        n = int(planned * key[1])
        return _FakeTraining(curves[key], n, n // 10, trained.setdefault(key, []))

    monkeypatch.setattr(search_mod, "start_training", fake_start)
    res = search_mod.search(data, config=TrainConfig(model="m", progress=False), annotators=["ann"], **kw)
    return res, {k: len(v) for k, v in trained.items()}


def test_points_behind_at_a_rung_stop_there_and_the_dev_best_of_those_completed_is_kept(monkeypatch):
    from nerkit.search import RUNGS

    assert RUNGS == (0.2, 0.4)  # the steps below: evaluations every 10 % of each point's own plan
    curves = {(1.0, 1.0): [0.30, 0.50, 0.55, 0.585, 0.60, 0.60, 0.61, 0.61, 0.61, 0.61],  # 2nd at 20 %: 0.50
              (2.0, 1.0): [0.20, 0.30, 0.35, 0.36, 0.36, 0.36, 0.36, 0.36, 0.36, 0.36],  # far behind at 20 %
              (1.0, 2.0): [0.40, 0.52, 0.57, 0.59, 0.62, 0.64, 0.65, 0.66, 0.66, 0.66],  # best at 20 %, still at 40 %
              (2.0, 2.0): [0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95]}  # would win: starts too slow
    res, trained = _fake_search(monkeypatch, curves)
    by = {(p.lr_x, p.epochs_x): p for p in res.points}
    # At 20 % (steps 20 and 40): the top half goes on; the other two are more than 1.0 behind and stop there.
    assert by[(2.0, 1.0)].stopped_at == 20 and by[(2.0, 2.0)].stopped_at == 40
    assert trained[(2.0, 1.0)] == 20 and trained[(2.0, 2.0)] == 40
    # At 40 % (steps 40 and 80), the last rung: x1 has 0.585, x1/epochs x2 0.59: the best alone goes on.
    assert by[(1.0, 1.0)].stopped_at == 40 and by[(1.0, 2.0)].stopped_at is None
    assert res.best is by[(1.0, 2.0)] and res.best.dev_f1 == 0.66  # the one trained to its end
    assert [p.dev_f1 for p in res.points] == [0.585, 0.30, 0.66, 0.20]  # stopped: their best so far
    assert sum(trained.values()) == 40 + 20 + 200 + 40 < 600  # four full runs: 600 steps
    record = res.result.meta.extra["search"]
    assert record["stopped"] == [{"lr_x": 1.0, "epochs_x": 1.0, "step": 40}, {"lr_x": 2.0, "epochs_x": 1.0, "step": 20},
                                 {"lr_x": 2.0, "epochs_x": 2.0, "step": 40}]
    assert record["kept"]["lr_x"] == 1.0 and record["kept"]["epochs_x"] == 2.0 and record["chosen_on"] == "dev"
    assert [p["steps"] for p in record["points"]] == [40, 20, 200, 40]
    assert record["points"][1]["curve"] == [[10, 0.20], [20, 0.30]] or record["points"][1]["curve"] == ((10, 0.2), (20, 0.3))
    assert "stopped at step 20" in res.table() and "<- kept" in res.table()


def test_a_clear_lead_at_the_second_rung_trains_alone_to_its_end(monkeypatch):
    flat = [0.1] * 10
    curves = {(1.0, 1.0): flat, (2.0, 1.0): [0.3, 0.4, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6],
              (1.0, 2.0): [0.2, 0.3, 0.4, 0.45, 0.45, 0.45, 0.45, 0.45, 0.45, 0.45], (2.0, 2.0): flat}
    res, trained = _fake_search(monkeypatch, curves)
    assert trained == {(1.0, 1.0): 20, (2.0, 1.0): 100, (1.0, 2.0): 80, (2.0, 2.0): 40}
    assert (res.best.lr_x, res.best.epochs_x) == (2.0, 1.0)
    assert [p.stopped_at for p in res.points] == [20, None, 80, 40]


def test_ties_keep_the_earlier_point(monkeypatch):
    curves = {(1.0, 1.0): [0.5] * 10, (2.0, 1.0): [0.5] * 10, (1.0, 2.0): [0.5] * 10, (2.0, 2.0): [0.2] * 10}
    res, trained = _fake_search(monkeypatch, curves)
    assert (res.best.lr_x, res.best.epochs_x) == (1.0, 1.0)  # ties: the earlier, cheaper point
    assert [p.stopped_at for p in res.points] == [None, None, None, 40] and trained[(2.0, 2.0)] == 40


def test_a_point_that_stopped_by_itself_still_counts_at_the_rungs(monkeypatch):
    # the first point's early stopping ends it at step 10 (dev 0.70): it is done, and the others race against it
    curves = {(1.0, 1.0): [0.70], (2.0, 1.0): [0.5] * 10, (1.0, 2.0): [0.6] * 10,
              (2.0, 2.0): [0.60, 0.66, 0.67, 0.68, 0.69, 0.75, 0.75, 0.75, 0.75, 0.75]}
    res, trained = _fake_search(monkeypatch, curves)
    assert trained == {(1.0, 1.0): 10, (2.0, 1.0): 20, (1.0, 2.0): 40, (2.0, 2.0): 80}
    assert [p.stopped_at for p in res.points] == [None, 20, 40, 80]
    assert (res.best.lr_x, res.best.epochs_x, res.best.dev_f1) == (1.0, 1.0, 0.70)


def test_side_by_side_the_last_point_left_gets_every_core_at_a_step_the_data_fixes(monkeypatch):
    import nerkit.search as search_mod

    calls, real_advance = [], search_mod._advance

    def advance(point, until, threads, *a):
        calls.append(((point.lr_x, point.epochs_x), threads, point.training.run.state.step))
        return real_advance(point, until, threads, *a)

    monkeypatch.setattr(search_mod, "_advance", advance)
    monkeypatch.setattr(search_mod, "cores_for", lambda cfg: (2, True))
    # x1 and x1/epochs x2 tie at 40 % (0.59): both go on past the last rung
    curves = {(1.0, 1.0): [0.30, 0.50, 0.55, 0.59, 0.60, 0.60, 0.61, 0.61, 0.61, 0.61],
              (2.0, 1.0): [0.1] * 10, (1.0, 2.0): [0.40, 0.52, 0.57, 0.59, 0.62, 0.64, 0.65, 0.66, 0.66, 0.66],
              (2.0, 2.0): [0.1] * 10}
    res, trained = _fake_search(monkeypatch, curves)
    assert trained == {(1.0, 1.0): 100, (2.0, 1.0): 20, (1.0, 2.0): 200, (2.0, 2.0): 40}
    rungs, rest = calls[:6], calls[6:]
    assert all(t == 1 for _, t, _ in rungs)  # 4 points, then 2: one core each
    # then rounds of 10 steps (10 % of the shorter plan), side by side, until x1 ends at step 100 ...
    assert [(p, t, s) for p, t, s in rest if p == (1.0, 1.0)] == [((1.0, 1.0), 1, s) for s in range(40, 100, 10)]
    assert [(p, t, s) for p, t, s in rest if t == 1 and p == (1.0, 2.0)] == [((1.0, 2.0), 1, s) for s in range(80, 140, 10)]
    # ... and the point left trains on alone with both cores, from the step where the other ended
    assert rest[-1] == ((1.0, 2.0), 2, 140) and (res.best.lr_x, res.best.epochs_x) == (1.0, 2.0)


def test_a_diverged_point_is_left_out_and_a_lone_leader_diverging_late_is_a_clear_error(monkeypatch):
    behind = [0.1] * 10
    curves = {(1.0, 1.0): [0.5] * 10, (2.0, 1.0): [None], (1.0, 2.0): behind, (2.0, 2.0): behind}
    res, trained = _fake_search(monkeypatch, curves)
    assert [(p.lr_x, p.epochs_x) for p in res.points] == [(1.0, 1.0), (1.0, 2.0), (2.0, 2.0)]  # (2, 1) diverged
    assert (res.best.lr_x, res.best.epochs_x) == (1.0, 1.0) and trained[(2.0, 1.0)] == 10
    curves[(1.0, 1.0)] = [0.5] * 5 + [None]  # leads at both rungs, then the loss goes NaN: nothing left to keep
    curves[(2.0, 1.0)] = behind
    with pytest.raises(NerkitError, match="after the others were stopped.*--no-search"):
        _fake_search(monkeypatch, curves)
    with pytest.raises(NerkitError, match="every training of the search diverged"):
        _fake_search(monkeypatch, {k: [None] for k in curves})


def test_survivors_keep_the_top_half_and_any_point_within_the_margin():
    from nerkit.search import survivors

    assert survivors([0.5, 0.6, 0.4, 0.3]) == [True, True, False, False]
    assert survivors([0.615, 0.62, 0.618, 0.3]) == [True, True, True, False]  # 0.5 behind: no evidence yet
    assert survivors([0.605, 0.62, 0.618, 0.3]) == [False, True, True, False]  # 1.5 behind
    assert survivors([0.5, 0.5, 0.5, 0.5], margin=0.0) == [True, True, True, True]
    assert survivors([0.5, 0.7, 0.5, 0.2], margin=0.0) == [True, True, False, False]  # ties: the earlier
    assert survivors([0.5, 0.3, 0.2], margin=0.0) == [True, True, False]  # three: two go on
    assert survivors([0.4]) == [True] and survivors([]) == []
    assert survivors([0.5, 0.7, 0.69], margin=0.0, last=True) == [False, True, False]
    assert survivors([0.7, 0.5, 0.7], margin=0.0, last=True) == [True, False, True]  # a tie goes on


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


def _short_start(real_start, calls=None, steps=2):
    """``start_training`` with a few steps per point (keeps tests fast; the lr and epochs the search chose go to
    ``calls``)."""
    import dataclasses

    def start(data, config, output=None, annotators=None, talk=True, derived=()):
        if calls is not None:
            calls.append((config.lr, config.epochs))
        return real_start(data, dataclasses.replace(config, max_steps=steps), output, annotators, talk, derived)

    return start


def test_nerkit_train_searches_by_default_on_small_data_and_no_search_trains_once(tiny_model, tmp_path, monkeypatch,
                                                                                  capsys):
    import dataclasses

    import nerkit.search as search_mod
    import nerkit.train as train_mod

    data = small_corpus(tmp_path, n_train=12)
    calls = []
    real_fit, real_start = train_mod.fit, search_mod.start_training

    def short_fit(train, dev=None, test=None, output=None, config=None, scheme=None, annotators=None):
        calls.append((config.lr, config.epochs))
        return real_fit(train, dev, test, output, dataclasses.replace(config, max_steps=2), scheme,
                        annotators=annotators)

    monkeypatch.setattr(search_mod, "start_training", _short_start(real_start, calls))
    monkeypatch.setattr(train_mod, "fit", short_fit)
    args = ["train", "--train", str(data["train"]), "--dev", str(data["dev"]), "--model", str(tiny_model)]
    assert main(args + ["--output", str(tmp_path / "a"), "--test", str(data["dev"])]) == 0
    err = capsys.readouterr().err
    assert "trying the derived learning rate and epochs at x1 and x2" in err and "<- kept" in err
    base = budget_for(str(data["train"]), config=TrainConfig(model=str(tiny_model)))
    assert calls == [(pytest.approx(base["lr"] * a), base["epochs"] * b) for b in (1, 2) for a in (1, 2)]
    meta = json.loads((tmp_path / "a" / "nerkit.json").read_text())
    assert len(meta["search"]["points"]) == 4 and meta["search"]["chosen_on"] == "dev"
    # each point trained to its end has its test F1 beside its dev F1 (for comparison; the kept one is the dev-best);
    # a point stopped at a rung has none
    for p in meta["search"]["points"]:
        assert (p["test_f1"] is None) == (p["stopped_at"] is not None)
        assert p["test_f1"] is None or 0 <= p["test_f1"] <= 1
    assert meta["search"]["kept"]["test_f1"] == meta["metrics"]["test"]["f1"]
    calls.clear()
    assert main(args + ["--output", str(tmp_path / "b"), "--no-search"]) == 0
    assert len(calls) == 1 and "search" not in json.loads((tmp_path / "b" / "nerkit.json").read_text())
    assert "<- kept" not in capsys.readouterr().err


def test_a_search_on_nested_data_says_once_why_it_trains_a_nested_model_and_keeps_one(tiny_model, tmp_path,
                                                                                      monkeypatch, capsys):
    from test_nested import nested_jsonl

    import nerkit.search as search_mod

    monkeypatch.setattr(search_mod, "start_training", _short_start(search_mod.start_training))
    train, dev = nested_jsonl(tmp_path / "train.jsonl", n=20), nested_jsonl(tmp_path / "dev.jsonl", n=5, seed=1)
    out = tmp_path / "m"
    assert main(["train", "--train", str(train), "--dev", str(dev), "--model", str(tiny_model), "--output",
                 str(out)]) == 0
    err = capsys.readouterr().err
    assert "trying the derived learning rate and epochs" in err and "<- kept" in err
    # what one training says of the data, said once by the search (its first point), not four times nor never
    assert err.count("nested entities: 20 of 60 training entities lie inside or overlap another") == 1, err
    assert err.count("training budget:") == 1, err
    meta = json.loads((out / "nerkit.json").read_text())
    assert meta["nested"]["layers"] == 2 and len(meta["search"]["points"]) == 4 and (out / "span_head.safetensors").exists()


def test_nerkit_train_reads_and_tokenizes_each_file_once(tiny_model, tmp_path, monkeypatch, capsys):
    """The decision, the budget, the four search points and the kept model's record share one read of each file
    (before: the training file was read 9 times, dev and test 8 times each, and the training data tokenized 5)."""
    import collections
    from pathlib import Path

    import nerkit.align as align
    import nerkit.files as files
    import nerkit.formats as formats
    import nerkit.search as search_mod

    data = small_corpus(tmp_path, n_train=12)
    test = tmp_path / "test.conll"
    test.write_bytes(data["dev"].read_bytes())
    parsed, read, tokenized = collections.Counter(), collections.Counter(), []
    real_load, real_read, real_encode = formats.load, files.read_bytes, align.encode_documents

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

    monkeypatch.setattr(formats, "load", load)
    monkeypatch.setattr(files, "read_bytes", read_bytes)
    monkeypatch.setattr(align, "encode_documents", encode)
    monkeypatch.setattr(search_mod, "start_training", _short_start(search_mod.start_training))
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


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread, as OMP_NUM_THREADS=1 gives: bit-for-bit comparisons between trainings need the same thread
    count (a 2-thread and a 1-thread run sum in another order), and CI runs without OMP_NUM_THREADS."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_search_point_trains_the_model_a_direct_fit_of_its_settings_trains(tiny_model, tmp_path, one_thread):
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


def _stopped_search(tiny_model, tmp_path, **kw):
    tmp_path.mkdir(exist_ok=True)
    data = small_corpus(tmp_path, n_train=12)
    cfg = TrainConfig(model=str(tiny_model), progress=False)
    # lr x1e-6: a point that learns nothing, its dev curve flat at the random model's score
    return search(str(data["train"]), str(data["dev"]), str(data["dev"]), config=cfg, lr_x=(1.0, 1e-6), **kw)


def test_the_last_rung_keeps_the_best_alone_and_the_first_keeps_points_within_the_margin():
    from nerkit.search import RUNGS, _Race

    class Point:
        def __init__(self, best):
            self.best, self.status, self.label, self.stopped_at = best, "running", f"at {best}", None

        def close(self, status):
            self.status = status

    race = _Race(1, False, progress=False)
    race.points = [Point(0.5), Point(0.62), Point(0.3), Point(0.615)]
    race.rung(RUNGS[0])  # the top half goes on
    assert [p.status for p in race.points] == ["stopped", "running", "stopped", "running"]
    race.rung(RUNGS[-1])  # 0.5 behind the best at the last rung: no evidence, but no reason to go on either
    assert [p.status for p in race.points] == ["stopped", "running", "stopped", "stopped"]
    race.points = [Point(0.5), Point(0.62), Point(0.615), Point(0.618)]
    race.rung(RUNGS[0])  # at the first rung any point within the margin goes on
    assert [p.status for p in race.points] == ["stopped", "running", "running", "running"]
    race.rung(RUNGS[-1])  # three left at the last rung: not the top half (two), the best alone
    assert [p.status for p in race.points] == ["stopped", "running", "stopped", "stopped"]


def test_a_point_whose_dev_curve_is_behind_stops_at_the_first_rung(tiny_model, tmp_path):
    from nerkit.search import RUNGS

    found = _stopped_search(tiny_model, tmp_path)
    by = {(p.lr_x, p.epochs_x): p for p in found.points}
    for b in (1.0, 2.0):
        frozen, learning = by[(1e-6, b)], by[(1.0, b)]
        assert frozen.stopped_at == frozen.steps == round(RUNGS[0] * frozen.planned_steps)  # the first evaluation there
        assert frozen.test_f1 is None and len(frozen.curve) == 2 and len({f for _, f in frozen.curve}) == 1
        assert learning.dev_f1 > frozen.dev_f1 + 0.05
    assert found.best.stopped_at is None and found.best.test_f1 is not None
    done = [p for p in found.points if p.stopped_at is None]
    assert found.best.dev_f1 == max(p.dev_f1 for p in done)  # the dev-best of those trained to their end
    assert sum(p.steps for p in found.points) < sum(p.planned_steps for p in found.points)
    record = found.result.meta.extra["search"]
    assert sorted((s["lr_x"], s["epochs_x"]) for s in record["stopped"]) >= [(1e-6, 1.0), (1e-6, 2.0)]
    assert {(s["lr_x"], s["epochs_x"]): s["step"] for s in record["stopped"]}[(1e-6, 2.0)] == by[(1e-6, 2.0)].stopped_at
    assert found.result.meta.steps == found.best.steps and found.result.metrics["dev"]["f1"] == found.best.dev_f1


def test_points_side_by_side_in_threads_stop_and_keep_as_one_at_a_time(tiny_model, tmp_path, monkeypatch, one_thread):
    """Two trainings at a time (one thread each) take the same decisions as one at a time, run after run."""
    import threading

    import nerkit.search as search_mod

    seen, real_advance = set(), search_mod._advance

    def advance(point, fraction, threads, *a):
        seen.add((threading.get_ident(), threads))
        return real_advance(point, fraction, threads, *a)

    monkeypatch.setattr(search_mod, "_advance", advance)
    one = _stopped_search(tiny_model, tmp_path / "one")
    assert seen == {(threading.get_ident(), 1)}  # OMP_NUM_THREADS=1: one at a time, here
    seen.clear()
    monkeypatch.setattr(search_mod, "cores_for", lambda cfg: (2, True))
    runs = [_stopped_search(tiny_model, tmp_path / f"two{i}") for i in range(2)]
    # worker threads with one torch thread each; a stage with one point left runs it here with both
    assert len({i for i, t in seen if t == 1 and i != threading.get_ident()}) >= 2
    for two in runs:
        assert [(p.stopped_at, p.curve) for p in two.points if p.stopped_at] == \
            [(p.stopped_at, p.curve) for p in one.points if p.stopped_at]
        assert (two.best.lr_x, two.best.epochs_x) == (one.best.lr_x, one.best.epochs_x)
    # the same data and seed: the same run, every point's steps and dev curve
    assert [(p.steps, p.stopped_at, p.curve) for p in runs[0].points] == \
        [(p.steps, p.stopped_at, p.curve) for p in runs[1].points]


def test_x2_epochs_points_wait_as_many_epochs_for_a_dev_gain_as_one_training(monkeypatch):
    import dataclasses

    import nerkit.search as search_mod
    from nerkit.budget import plan_budget
    from nerkit.search import _patience

    for sentences, tokens in ((100, 1_500), (300, 4_500), (300, 9_000), (1_000, 20_000)):
        base = dataclasses.asdict(plan_budget(sentences, tokens))
        span = base["early_stopping"] / base["evals_per_epoch"]  # epochs one training waits
        x2 = plan_budget(sentences, tokens, epochs=base["epochs"] * 2)
        assert x2.early_stopping / x2.evals_per_epoch > span  # derived for its own length it would wait longer
        p = _patience(base, base["epochs"] * 2)
        assert p / x2.evals_per_epoch >= span and (p == 2 or (p - 1) / x2.evals_per_epoch < span)
        assert _patience(base, base["epochs"]) is None  # the plan itself keeps its derived patience
    mine = dataclasses.asdict(plan_budget(300, 4_500, early_stopping=7))
    assert _patience(mine, mine["epochs"] * 2) is None  # a patience the user chose is kept
    # The search gives it to its x2-epochs points.
    base = dataclasses.asdict(plan_budget(300, 4_500))
    monkeypatch.setattr(search_mod, "budget_for", lambda *a, **k: base)
    seen = {}

    def fake_start(train, cfg, output=None, annotators=None, talk=True, derived=()):
        seen[(round(cfg.lr / base["lr"], 6), round(cfg.epochs / base["epochs"], 6))] = cfg.early_stopping
        return _FakeTraining([0.5] * 10, 20, 2, [])

    monkeypatch.setattr(search_mod, "start_training", fake_start)
    data = Datasets(_docs(["Ann", "Lee"], ["B-PER", "I-PER"]), _docs(["Bo"], ["B-PER"]), [], ["O", "B-PER", "I-PER"])
    search_mod.search(data, config=TrainConfig(model="m", progress=False))
    assert seen == {(1.0, 1.0): None, (2.0, 1.0): None, (1.0, 2.0): _patience(base, base["epochs"] * 2),
                    (2.0, 2.0): _patience(base, base["epochs"] * 2)}
    # --early-stopping given: every point keeps it.
    base.clear()
    base.update(dataclasses.asdict(plan_budget(300, 4_500, early_stopping=5)))
    seen.clear()
    search_mod.search(data, config=TrainConfig(model="m", progress=False, early_stopping=5))
    assert set(seen.values()) == {5} and len(seen) == 4


def test_a_search_point_trains_on_past_its_plan_while_dev_f1_climbs_as_one_training_does(tiny_model, tmp_path,
                                                                                          monkeypatch, one_thread):
    # The points' epochs are the rule's times x1 or x2, set by the search: taken as the user's, they were never
    # extended, on small data (where the default searches) alone.
    import nerkit.train as train_mod

    real, calls = train_mod._score_dev, []

    def climbing(tagger, model, dev):  # dev F1 that climbs at every evaluation
        rep = dict(real(tagger, model, dev))
        rep["f1"] = 0.1 + 0.02 * len(calls)
        calls.append(rep["f1"])
        return rep

    monkeypatch.setattr(train_mod, "_score_dev", climbing)
    data = small_corpus(tmp_path, n_train=12)
    found = search(str(data["train"]), str(data["dev"]), config=TrainConfig(model=str(tiny_model), progress=False),
                   lr_x=(1.0,), epochs_x=(1.0,))
    budget = found.result.meta.budget
    assert budget["extended_steps"] and found.best.steps == budget["planned_steps"] + sum(budget["extended_steps"])
    assert found.best.steps > found.best.planned_steps == budget["planned_steps"]
    assert "epochs" in budget["chosen"]  # derived (by the rule, times the search's multiple), not the user's
