"""The plain transformers pipeline either gives nerkit's answers (trust_remote_code=True) or refuses (issue 9).

nerkit models read word casing from token_type_ids; the stock pipeline passes zeros there and silently lost
~26 F1 on CoNLL-2003. Model directories with the casing signal therefore name a small pipeline of their own.
"""
import json

import pytest

pytest.importorskip("transformers")

from nerkit.hf_pipeline import PIPELINE_FILE, add_hf_pipeline  # noqa: E402
from nerkit.predict import Tagger  # noqa: E402

TEXTS = [
    "John Smith lives in Paris and visited New York City today.",
    "Mary Jones met John in London; they went to Berlin.",
    "the",
    "He said: «Mary» visited 北京 and Zürich 😀 with John-Paul O'Neil in the U.S.",
    "JOHN SMITH and mary jones went to PARIS",
    "Ber\u00adlin and Pa\u200bris",
]


@pytest.fixture
def piped(tiny_model):
    add_hf_pipeline(tiny_model)
    return tiny_model


def test_plain_pipeline_refuses_and_names_trust_remote_code(piped):
    from transformers import pipeline

    cfg = json.loads((piped / "config.json").read_text())
    assert cfg["custom_pipelines"]["token-classification"]["impl"].startswith(PIPELINE_FILE.removesuffix(".py"))
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("token-classification", model=str(piped))


def test_pipeline_with_trust_remote_code_gives_taggers_entities(piped):
    from transformers import pipeline

    nlp = pipeline("token-classification", model=str(piped), trust_remote_code=True)
    tagger = Tagger.load(piped, backend="torch", bf16="off")
    want = [[(e.start, e.end, e.label, e.text) for e in ents] for ents in tagger(TEXTS)]
    got = [[(e["start"], e["end"], e["entity_group"], e["word"]) for e in ents] for ents in nlp(TEXTS)]
    assert sum(map(len, want)) > 5  # the random tiny model does tag things
    assert got == want
    one = nlp(TEXTS[0])
    assert [(e["start"], e["end"]) for e in one] == [w[:2] for w in want[0]]
    assert all(0 < e["score"] <= 1 for e in one)


def test_pipeline_tags_long_texts_in_full(piped):
    from transformers import pipeline

    import logging

    nlp = pipeline("token-classification", model=str(piped), trust_remote_code=True)
    text = "John Smith visited Paris. " * 60  # far beyond the tiny model's 64-token window
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)
    nlp.tokenizer.model_max_length = 64
    nlp.tokenizer.deprecation_warnings.clear()
    try:
        ents = nlp(text)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert not [m for m in said if "indexing errors" in m]  # windowed: transformers' warning does not apply
    assert ents and max(e["end"] for e in ents) > len(text) - 30
    assert all(text[e["start"]:e["end"]] == e["word"] for e in ents)


def test_saved_pipeline_splits_words_and_casing_like_nerkit(piped):
    import importlib.util

    from nerkit import align
    from nerkit.data import tokenize

    spec = importlib.util.spec_from_file_location("nerkit_words_copy", piped / "nerkit_words.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for text in TEXTS + ["e.g. U.S.A.-based don't 3.5 ö\u0308 👍🏽 \x00x"]:
        assert mod.tokenize(text) == tokenize(text)
        assert [mod.case_type(w) for w in tokenize(text)[0]] == [align.case_type(w) for w in tokenize(text)[0]]


def test_models_without_casing_signal_stay_plain(tmp_path):
    from tiny import make_tiny_model

    d = make_tiny_model(tmp_path / "plain", type_vocab_size=2)
    add_hf_pipeline(d)
    assert "custom_pipelines" not in json.loads((d / "config.json").read_text())
    assert not (d / PIPELINE_FILE).exists()


def test_trained_models_carry_the_pipeline_and_case_signal_off_stays_plain(tiny_model, tmp_path, capsys):
    from nerkit.cli import main
    from test_train import small_corpus

    data = small_corpus(tmp_path, n_train=6)
    on, off = tmp_path / "on", tmp_path / "off"
    assert main(["train", "--train", str(data["train"]), "--model", str(tiny_model), "--max-steps", "1",
                 "--output", str(on)]) == 0
    assert main(["train", "--train", str(data["train"]), "--model", str(tiny_model), "--max-steps", "1",
                 "--case-signal", "off", "--output", str(off)]) == 0
    assert (on / PIPELINE_FILE).is_file() and "custom_pipelines" in json.loads((on / "config.json").read_text())
    assert not (off / PIPELINE_FILE).exists() and "custom_pipelines" not in json.loads((off / "config.json").read_text())
    assert json.loads((off / "nerkit.json").read_text())["case_signal"] is False


def test_exported_directory_keeps_the_pipeline(piped, tmp_path):
    pytest.importorskip("onnxruntime")
    from transformers import pipeline

    from nerkit.export import export

    out = tmp_path / "fast"
    export(piped, out, quantize=False)
    assert (out / PIPELINE_FILE).is_file() and (out / "nerkit_words.py").is_file()
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("token-classification", model=str(out))
    assert pipeline("token-classification", model=str(out), trust_remote_code=True)("John lives in Paris") is not None
