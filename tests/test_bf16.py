"""bf16 autocast: one policy, forced off anywhere (NERKIT_BF16=off, --bf16 off), run for real where the CPU has it.

CI may run on AVX2 CPUs (no bf16) or on AVX512-BF16/AMX ones; every test here passes on both, and the bf16 path
is exercised wherever the hardware has it (skipped elsewhere, with the reason).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nerkit.engines import cpu_has_bf16, use_bf16  # noqa: E402
from nerkit.errors import NerkitError  # noqa: E402
from nerkit.predict import Tagger  # noqa: E402

CPU = torch.device("cpu")
TEXTS = ["John Smith lives in Paris and visited New York City today.", "Mary Jones met John in London."]


def test_explicit_settings_win_and_the_env_forces_off(monkeypatch):
    monkeypatch.delenv("NERKIT_BF16", raising=False)
    assert use_bf16("on", CPU) is True and use_bf16("off", CPU) is False
    monkeypatch.setenv("NERKIT_BF16", "off")
    assert use_bf16("auto", CPU) is False
    monkeypatch.setenv("NERKIT_BF16", "on")
    assert use_bf16("auto", CPU) is True
    with pytest.raises(NerkitError):
        use_bf16("maybe", CPU)


def test_inference_is_fp32_unless_asked(monkeypatch, tiny_model):
    # bf16 autocast at inference cost 0.01 F1 (README "bf16") but made answers depend on the batch (issue 21), so
    # auto runs inference in fp32 on every CPU; bf16="on" still runs it under autocast.
    monkeypatch.delenv("NERKIT_BF16", raising=False)
    assert Tagger.load(tiny_model, backend="torch").engine.bf16 is False
    assert Tagger.load(tiny_model, backend="torch", bf16="on").engine.bf16 is True
    monkeypatch.setenv("NERKIT_BF16", "off")
    assert Tagger.load(tiny_model, backend="torch").engine.bf16 is False


def test_env_off_turns_training_bf16_off(monkeypatch, tiny_model, tmp_path):
    from nerkit.train import TrainConfig, fit
    from test_train import small_corpus

    monkeypatch.setenv("NERKIT_BF16", "off")
    data = small_corpus(tmp_path, n_train=4)
    res = fit(data["train"], config=TrainConfig(model=str(tiny_model), max_steps=1, batch_tokens=256, progress=False))
    assert res["meta"]["bf16"] is False


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no AVX512-BF16/AMX: the bf16 path runs on such CPUs only")
def test_bf16_path_runs_and_stays_close_to_fp32(tiny_model):
    fp32 = Tagger.load(tiny_model, backend="torch", bf16="off")
    bf16 = Tagger.load(tiny_model, backend="torch", bf16="on")
    assert bf16.engine.bf16 is True
    from test_export import _batch

    batch = _batch(fp32, TEXTS)
    a, b = fp32.engine.logits(batch), bf16.engine.logits(batch)
    mask = batch["attention_mask"].astype(bool)
    assert not np.array_equal(a[mask], b[mask])  # autocast really ran in bf16
    assert np.abs(a[mask] - b[mask]).max() < 0.05 * np.abs(a[mask]).max()
    assert (a.argmax(-1)[mask] == b.argmax(-1)[mask]).mean() >= 0.9
    assert len(bf16(TEXTS)) == 2


@pytest.mark.parametrize("env", ["on", "off"])
def test_dev_is_evaluated_at_training_precision_and_recorded_as_inference_runs(monkeypatch, tiny_model, tmp_path, env):
    # Training's dev evaluations only compare checkpoints, so they run at the training's precision (bf16 halved their
    # cost on an AVX512-BF16 CPU); the dev score a model directory records is the inference policy's (fp32 on every
    # CPU), so where the two differ dev is scored once more at the end, and where they agree the loop's report is kept.
    from nerkit.engines import TorchEngine
    from nerkit.evaluation import evaluate
    from nerkit.formats import as_documents
    from nerkit.train import TrainConfig, _summary, fit
    from test_train import small_corpus

    monkeypatch.setenv("NERKIT_BF16", env)
    calls: list[tuple[str, bool]] = []
    phase = ["loop"]
    logits = TorchEngine.logits

    def spy(self, batch):
        calls.append((phase[0], self.bf16))
        return logits(self, batch)

    monkeypatch.setattr(TorchEngine, "logits", spy)
    import nerkit.train as train_mod

    finish = train_mod.Training.finish

    def finishing(self, *a, **k):
        phase[0] = "finish"
        return finish(self, *a, **k)

    monkeypatch.setattr(train_mod.Training, "finish", finishing)
    data = small_corpus(tmp_path, n_train=6)
    out = tmp_path / "model"
    res = fit(data["train"], dev=data["dev"], output=out, config=TrainConfig(
        model=str(tiny_model), max_steps=4, eval_every_steps=2, batch_tokens=256, progress=False))
    loop = {bf16 for p, bf16 in calls if p == "loop"}
    final = [bf16 for p, bf16 in calls if p == "finish"]
    assert loop == {env == "on"}  # the training's precision (NERKIT_BF16 forces it either way on any CPU)
    if env == "on":
        assert final and not any(final)  # dev scored again, in fp32
    else:
        assert final == []  # the loop's fp32 report of the kept weights is the recorded one: no second pass
    monkeypatch.setattr(TorchEngine, "logits", logits)
    again = evaluate(Tagger.load(out, backend="torch"), as_documents(data["dev"]))  # as a user scores it
    assert res.metrics["dev"] == _summary(again)
