"""Opening a Hugging Face checkpoint: nerkit's own messages instead of transformers' load report."""
from __future__ import annotations

import json

import pytest

from tests.tiny import LABELS, make_tiny_model


def _encoder_only(tmp_path, drop: str | None = None):
    """A tiny BERT encoder with its pooler and no token-classification head (what a base model on the hub is);
    ``drop``: a tensor left out of its checkpoint."""
    from safetensors.torch import load_file, save_file
    from transformers import BertModel, BertTokenizerFast

    tiny = make_tiny_model(tmp_path / "tiny")
    out = tmp_path / "encoder"
    BertModel.from_pretrained(tiny).save_pretrained(out, safe_serialization=True)
    BertTokenizerFast.from_pretrained(tiny).save_pretrained(out)
    if drop:
        weights = load_file(out / "model.safetensors")
        del weights[drop]
        save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out


def test_base_encoder_loads_without_transformers_report(tmp_path, capfd):
    from transformers import AutoTokenizer

    from nerkit.train import TrainConfig, load_model

    base = _encoder_only(tmp_path)
    capfd.readouterr()
    model, _, _ = load_model(TrainConfig(model=str(base)), LABELS, AutoTokenizer.from_pretrained(base))
    err = capfd.readouterr().err
    assert model.classifier.out_features == len(LABELS)
    assert "LOAD REPORT" not in err and "MISSING" not in err and "Loading weights" not in err
    assert "encoder weights" not in err  # the new head and the dropped pooler are expected


def test_missing_encoder_weights_are_named(tmp_path, capfd):
    from transformers import AutoTokenizer

    from nerkit.train import TrainConfig, load_model

    base = _encoder_only(tmp_path, drop="encoder.layer.1.output.dense.weight")
    capfd.readouterr()
    load_model(TrainConfig(model=str(base)), LABELS, AutoTokenizer.from_pretrained(base))
    err = capfd.readouterr().err
    assert "1 encoder weights" in err and "bert.encoder.layer.1.output.dense.weight" in err
    assert "LOAD REPORT" not in err


def test_model_dir_loads_quietly_and_refuses_missing_weights(tmp_path, capfd):
    from safetensors.torch import load_file, save_file

    from nerkit.errors import NerkitError
    from nerkit.predict import Tagger

    d = make_tiny_model(tmp_path / "m")
    capfd.readouterr()
    tagger = Tagger.load(d, backend="torch")
    assert tagger.predict(["john smith lives in paris"])[0] is not None
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "LOAD REPORT" not in err
    weights = load_file(d / "model.safetensors")
    del weights["classifier.bias"]
    save_file(weights, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(NerkitError, match="do not match config.json"):
        Tagger.load(d, backend="torch")
    assert json.loads((d / "nerkit.json").read_text())["labels"] == LABELS  # nothing rewritten
