"""ONNX export and the ONNX Runtime engine, on a tiny randomly initialised BERT (seconds on CPU)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from nerkit import align  # noqa: E402
from nerkit.cli import main  # noqa: E402
from nerkit.errors import NerkitError  # noqa: E402
from nerkit.engines import OnnxEngine, TorchEngine, load_engine, resolve_backend  # noqa: E402
from nerkit.export import export  # noqa: E402
from nerkit.modeldir import INT8_FILE, ONNX_FILE, WORD_TOKENIZER_FILE, open_model_dir  # noqa: E402
from nerkit.predict import Tagger  # noqa: E402


TEXTS = [
    "John Smith lives in Paris and visited New York City today.",
    "Mary Jones met John in London; they went to Berlin.",
    "the",
    "",
    "Paris " * 80,  # longer than the tiny model's window: split into overlapping windows
    "He said: «Mary» visited 北京 and Zürich 😀 with John-Paul.",
]


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "model"
    info = export(model_dir, out)
    return out, info


def _batch(tagger, texts):
    docs = [tagger._text_doc(t, i) for i, t in enumerate(texts)]
    enc = align.encode_documents(docs, tagger.tokenizer, None)
    wins = align.make_windows(enc, tagger.max_tokens, tagger.target_tokens)
    tok = tagger.tokenizer
    feats = [align.window_feature(enc[w.doc], w, tok.cls_token_id, tok.sep_token_id, True) for w in wins]
    return align.collate(feats, tok.pad_token_id)


def test_export_writes_a_loadable_model_dir(exported, model_dir):
    out, info = exported
    for name in ("config.json", "nerkit.json", "tokenizer.json", "vocab.txt", ONNX_FILE, INT8_FILE, "model.safetensors"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "nerkit.json").read_text())
    assert meta["onnx"]["files"] == [ONNX_FILE, INT8_FILE, WORD_TOKENIZER_FILE]
    assert meta["base_model"] == "tiny-random-bert"  # the source model's metadata is kept
    assert info["checks"]["onnx_max_abs_diff"] < 1e-3
    assert not (model_dir / ONNX_FILE).exists()  # the source directory is left alone


def test_onnx_logits_match_torch(exported, model_dir):
    out, _ = exported
    torch_tagger = Tagger.load(model_dir, backend="torch", bf16="off")  # fp32 against fp32, on any CPU
    assert torch_tagger.engine.bf16 is False
    batch = _batch(torch_tagger, TEXTS)
    assert batch["input_ids"].shape[0] > len(TEXTS)  # the long text made several windows
    assert batch["token_type_ids"].max() >= 1  # casing types reach the graph
    ref = torch_tagger.engine.logits(batch)
    got = OnnxEngine(out / ONNX_FILE).logits(batch)
    mask = batch["attention_mask"].astype(bool)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got[mask], ref[mask], atol=1e-4, rtol=1e-4)


def test_int8_tags_mostly_equal(exported, model_dir):
    out, info = exported
    torch_tagger = Tagger.load(model_dir, backend="torch", bf16="off")
    batch = _batch(torch_tagger, TEXTS)
    mask = batch["attention_mask"].astype(bool)
    ref = torch_tagger.engine.logits(batch).argmax(-1)[mask]
    got = OnnxEngine(out / INT8_FILE, "onnx-int8").logits(batch).argmax(-1)[mask]
    assert (ref == got).mean() >= 0.85
    assert info["checks"]["int8_argmax_agreement"] >= 0.85


def test_tagger_load_picks_the_fastest_available_backend(exported, model_dir):
    out, _ = exported
    assert Tagger.load(out).engine.name == "onnx-int8"
    assert Tagger.load(out, backend="onnx").engine.name == "onnx"
    assert Tagger.load(out, backend="onnx-int8").engine.name == "onnx-int8"
    assert isinstance(Tagger.load(out, backend="torch").engine, TorchEngine)
    assert isinstance(Tagger.load(model_dir).engine, TorchEngine)  # not exported: PyTorch fallback
    assert resolve_backend(open_model_dir(model_dir), "auto") == "torch"
    with pytest.raises(NerkitError, match="not available"):
        Tagger.load(model_dir, backend="onnx")
    with pytest.raises(NerkitError, match="unknown backend"):
        load_engine(out, "tensorrt")


def test_onnx_entities_equal_torch_entities(exported, model_dir):
    out, _ = exported
    ref = Tagger.load(model_dir, backend="torch")(TEXTS)
    got = Tagger.load(out, backend="onnx")(TEXTS)
    assert [[(e.start, e.end, e.label) for e in es] for es in got] == [[(e.start, e.end, e.label) for e in es] for es in ref]
    assert sum(map(len, got)) > 0, "the tiny model should predict some entities"
    for text, es in zip(TEXTS, got):
        for e in es:
            assert text[e.start:e.end] == e.text  # offsets stay exact through windows and batching
            assert 0.0 <= e.score <= 1.0


def test_cli_export_without_int8_and_stale_graphs(model_dir, tmp_path, capsys):
    import shutil

    out = tmp_path / "fp32"
    shutil.copytree(model_dir, out)  # an earlier export of this model, with its int8 graph
    meta = json.loads((out / "nerkit.json").read_text())
    (out / "nerkit.json").write_text(json.dumps({**meta, "onnx": {"files": [ONNX_FILE, INT8_FILE]}}))
    (out / INT8_FILE).write_bytes(b"stale")
    assert main(["export", str(model_dir), "--output", str(out), "--no-quantize", "--no-weights"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["files"] == [ONNX_FILE, WORD_TOKENIZER_FILE]
    assert not (out / INT8_FILE).exists() and not (out / "model.safetensors").exists()
    assert Tagger.load(out).engine.name == "onnx"
    assert main(["predict", str(out), "John Smith lives in Paris."]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["text"] == "John Smith lives in Paris."


def test_export_rejects_a_non_model_dir(tmp_path):
    with pytest.raises(NerkitError, match="not a model directory"):
        export(tmp_path, tmp_path / "out")
    assert main(["export", str(tmp_path)]) == 2


def test_export_keeps_the_plain_graph_when_fusion_fails(model_dir, tmp_path, monkeypatch):
    import nerkit.export as ex

    def broken(*a, **k):
        raise RuntimeError("pattern not supported")

    monkeypatch.setattr(ex, "_fuse", broken)
    info = export(model_dir, tmp_path / "out", quantize=False, copy_weights=False)
    assert info["fused"] is False and info["checks"]["onnx_max_abs_diff"] < 1e-3
    assert Tagger.load(tmp_path / "out").engine.name == "onnx"


def test_engine_settings(exported, monkeypatch):
    out, _ = exported
    monkeypatch.setenv("NERKIT_BATCH_TOKENS", "300")
    monkeypatch.setenv("NERKIT_THREADS", "1")
    tagger = Tagger.load(out)
    assert tagger.batch_tokens == 300  # Tagger batches as the engine prefers
    assert tagger.engine.session.get_session_options().intra_op_num_threads == 1
    monkeypatch.delenv("NERKIT_THREADS")
    assert Tagger.load(out, threads=1).engine.session.get_session_options().intra_op_num_threads == 1  # an argument
    assert "NERKIT_THREADS" not in os.environ


def test_onnx_path_loads_neither_torch_nor_transformers(exported):
    out, _ = exported
    code = ("import sys, json; from nerkit.predict import Tagger; t = Tagger.load(sys.argv[1]); "
            "ents = [[(e.start, e.end, e.label) for e in es] for es in t(json.loads(sys.argv[2]))]; "
            "print(json.dumps([t.engine.name, 'torch' in sys.modules, 'transformers' in sys.modules, ents]))")
    res = subprocess.run([sys.executable, "-c", code, str(out), json.dumps(TEXTS)], capture_output=True, text=True,
                         check=True)
    name, torch_loaded, transformers_loaded, ents = json.loads(res.stdout.strip().splitlines()[-1])
    assert (name, torch_loaded, transformers_loaded) == ("onnx-int8", False, False)
    direct = Tagger.load(out, backend="onnx-int8")  # same graph; tokenizer through the same file
    assert ents == [[list(x) for x in [(e.start, e.end, e.label) for e in es]] for es in direct(TEXTS)]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(st.text(min_size=1, max_size=12).filter(lambda w: w.strip() == w and w), min_size=1,
                         max_size=6), min_size=1, max_size=4))
def test_saved_tokenizer_encodes_like_transformers(exported, words):
    from transformers import AutoTokenizer

    out, _ = exported
    spec = json.loads((out / "nerkit.json").read_text())["onnx"]["word_tokenizer"]
    mine = align.WordTokenizer.from_file(out / spec["file"], spec)
    ref = AutoTokenizer.from_pretrained(out)
    want = ref(words, is_split_into_words=True, add_special_tokens=False)
    got = mine(words)
    for k in range(len(words)):
        assert got["input_ids"][k] == list(want["input_ids"][k])
        assert got.word_ids(k) == list(want.word_ids(k))


def test_tagger_without_saved_tokenizer_falls_back_to_transformers(exported, tmp_path):
    import shutil

    out, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / WORD_TOKENIZER_FILE).unlink()  # e.g. exported by an older nerkit
    old = Tagger.load(copy, backend="onnx")
    new = Tagger.load(out, backend="onnx")
    assert type(old.tokenizer).__name__ != "WordTokenizer" and isinstance(new.tokenizer, align.WordTokenizer)
    assert old(TEXTS) == new(TEXTS)


# Texts of very different lengths and contents: a padded batch of these must not change any one text's answer.
OTHERS = ["x", "BERLIN PARIS LONDON " * 30, "the the the the", "Zürich 😀 北京 «Mary»!!! ???" * 5,
          "John Smith " * 70, "a, b; c: d - e ( f ) 1 2 3 4 5 6 7 8 9 0"]


def test_int8_logits_do_not_depend_on_the_batch(exported):
    """The int8 graph quantizes activations with fixed (calibrated) scales: a text's logits are the same alone
    and padded into a batch with other texts (dynamic int8 used one scale per batch: issue 9)."""
    out, info = exported
    assert info["quantization"]["activations"] == "static"
    tagger = Tagger.load(out, backend="onnx-int8")
    engine = tagger.engine
    for text in TEXTS[:2] + TEXTS[5:]:
        alone = _batch(tagger, [text])
        n = int(alone["attention_mask"][0].sum())
        together = _batch(tagger, OTHERS[:3] + [text] + OTHERS[3:])
        rows = [i for i in range(len(together["input_ids"]))
                if int(together["attention_mask"][i].sum()) == n
                and (together["input_ids"][i, :n] == alone["input_ids"][0, :n]).all()]
        assert rows, "the text's window is in the batch"
        assert together["input_ids"].shape[1] > n  # padded: the batch holds longer texts
        a = engine.logits(alone)[0, :n]
        b = engine.logits(together)[rows[0], :n]
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_auto_backend_gives_a_text_the_same_entities_whatever_it_is_batched_with(exported):
    out, _ = exported
    tagger = Tagger.load(out)  # the default backend: int8 on an exported model
    assert tagger.engine.name == "onnx-int8"
    for text in TEXTS:
        alone = tagger.predict([text])[0]
        for k in range(0, len(OTHERS) + 1, 3):
            batched = tagger.predict(OTHERS[:k] + [text] + OTHERS[k:])[k]
            assert batched == alone, (text, k)


def test_auto_backend_skips_an_int8_graph_with_batch_dependent_scales(exported, tmp_path, caplog):
    """An int8 graph exported before activation scales were fixed gives answers that depend on the batch: the
    default backend runs the fp32 graph instead (and says so); asking for onnx-int8 still runs it."""

    out, _ = exported
    old = _as_old_dynamic_int8(out, tmp_path / "old")
    with caplog.at_level("WARNING"):
        assert Tagger.load(old).engine.name == "onnx"
    assert "nerkit export" in caplog.text
    assert Tagger.load(old, backend="onnx-int8").engine.name == "onnx-int8"


def _as_old_dynamic_int8(exported_dir, old):
    """A copy of an exported directory whose nerkit.json says its int8 graph was quantized per batch (older nerkit)."""
    import shutil

    shutil.copytree(exported_dir, old)
    meta = json.loads((old / "nerkit.json").read_text())
    meta["onnx"]["quantization"] = {"type": "dynamic", "weight_type": "int8", "per_channel": True,
                                    "reduce_range": True}
    (old / "nerkit.json").write_text(json.dumps(meta))
    return old


def test_an_old_dynamic_int8_directory_gets_the_same_backend_from_predict_serve_and_tag_corpus(exported, tmp_path):
    """One backend rule for every command: ``tag-corpus`` once chose by file names alone and ran the older,
    batch-dependent int8 graph that ``predict`` and ``serve`` refuse for the same directory (issue 20)."""

    from fastapi.testclient import TestClient

    from nerkit.serve import create_app
    from nerkit.tagcorpus import MANIFEST_FILE, tag_corpus

    out, _ = exported
    old = _as_old_dynamic_int8(out, tmp_path / "old")
    assert main(["predict", str(old), "John Smith lives in Paris."]) == 0
    predicted = Tagger.load(old).engine.name
    with TestClient(create_app(old)) as client:
        served = client.get("/v1/health").json()["backend"]
    (tmp_path / "in.txt").write_text("John Smith lives in Paris.\n", encoding="utf-8")
    res = tag_corpus(old, [tmp_path / "in.txt"], tmp_path / "tagged")
    tagged = json.loads((tmp_path / "tagged" / MANIFEST_FILE).read_text())["job"]["backend"]
    assert predicted == served == tagged == "onnx"
    assert res.rows == 1


def test_loading_reads_the_model_metadata_once(exported, monkeypatch):
    """One owner opens a model directory: config.json and nerkit.json are each read once (they were read twice,
    by predict and by engines, and the labels taken from two places)."""
    from pathlib import Path

    out, _ = exported
    reads = []
    read_text = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (reads.append(self.name), read_text(self, *a, **k))[1])
    tagger = Tagger.load(out, backend="onnx")
    assert (reads.count("config.json"), reads.count("nerkit.json")) == (1, 1), reads
    assert tagger.labels == [json.loads(read_text(out / "config.json"))["id2label"][str(i)]
                             for i in range(len(tagger.labels))]
