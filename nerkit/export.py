"""Fast inference: export a nerkit model directory to ONNX (fp32 + int8) for ONNX Runtime (``engines.OnnxEngine``).

``export(MODEL_DIR, OUT)`` writes ``model.onnx`` (fp32, BERT fusions applied where ONNX Runtime's
transformer optimizer recognises the graph) and ``model.int8.onnx`` (int8 weight matrices, per channel;
activations quantized with constant scales calibrated on training-like text) next to a copy of the model's
config, tokenizer, label map and nerkit.json, so OUT is itself a model directory: ``Tagger.load(OUT)`` picks int8, else fp32 ONNX, else PyTorch. It also writes
``nerkit.tokenizer.json``, the backend tokenizer transformers builds for the model (kept only if it encodes probe
words exactly as transformers does), so that the ONNX path imports neither transformers nor torch: ``nerkit
predict`` on an exported model starts in 0.8 s instead of 6 s, and a server's peak RSS is about 190 MB, not 400.

The runtime was chosen by measurement on the 2-core AMD EPYC (AVX2, no AVX-512/VNNI/BF16) this project runs
on, with the default MiniLM-L6 model on CoNLL-2003 test sentences (engine only, same batches): ONNX Runtime
int8 with fused BERT operators was fastest (about 1.4x its fp32 graph and 2x PyTorch fp32); unfused graphs
were 5-15% slower; OpenVINO 2026.4 fp32 fell between ONNX Runtime fp32 and int8 with large batches and was
slower than both with small ones. Static int8 (OpenVINO with NNCF, and ONNX Runtime QDQ, both calibrated on
CoNLL train) and ONNX Runtime's 8-bit block-quantized MatMulNBits were batch-invariant and closer to fp32 (argmax
agreement 99.6%, 99.6% and 99.9% vs 99.4%) but 2x, 2x and 2-2.5x slower than the dynamic int8 graph. PyTorch
bf16 autocast was 7x slower than fp32 (no native bf16 on this CPU). On AVX-512 VNNI/AMX cores (a Xeon pinned to 2
cores) the int8 graph ran 2.4x its fp32 graph (bench/results/inference_vnni.md). Small batches (~512 tokens) beat
large ones (8192) by up to 2.5x.

Activation scales (issue 9): dynamic quantization takes one activation scale per batch, so 146 of 3,701 served
texts got other entities than a direct call. The int8 graph keeps the dynamic graph's integer kernels
(MatMulInteger, QAttention) but each DynamicQuantizeLinear becomes a QuantizeLinear with a constant scale and zero
point, the range its input took on calibration text (``fix_activation_scales``): a token is quantized the same
way whatever shares its batch, and the graph ran faster than the dynamic one, not slower as the QDQ graph did
(figures in bench/results/int8_static.md).
"""
# size: the whole export path (trace, fuse, quantize, calibrate, check, move into place) with the measurements that chose it.
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from nerkit.engines import DEFAULT_BATCH_TOKENS, OnnxEngine
from nerkit.errors import NerkitError
from nerkit.hf_pipeline import PIPELINE_FILES
from nerkit.spans import SPAN_FILE
from nerkit.modeldir import (INT8_FILE, META_FILE, ONNX_FILE, WORD_TOKENIZER_FILE, ModelDir, ModelMeta,
                             check_output, load_token_classifier, open_model_dir, probe_writable, read_meta,
                             write_meta)

log = logging.getLogger("nerkit.export")

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
# Files that make a directory loadable by ``Tagger.load`` / ``AutoTokenizer`` besides the ONNX graphs.
COPY_FILES = ("config.json", META_FILE, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "vocab.txt", "added_tokens.json", "merges.txt", "vocab.json", "sentencepiece.bpe.model",
              "spiece.model", "tokenizer.model", "README.md", SPAN_FILE, *PIPELINE_FILES)
WEIGHT_FILES = ("model.safetensors",)
# Calibration of the int8 activation scales: sentences and multi-sentence passages of the calibration data.
CALIBRATION_SENTENCES = 1000
CALIBRATION_PASSAGES = 100



def _logits_module(model):
    """The HF token classifier as a module with three int64 inputs and one logits output, for ONNX."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    return LogitsOnly(model).eval()


def _dummy_inputs(config, batch: int = 2, seq: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = int(getattr(config, "vocab_size", 100))
    types = max(1, int(getattr(config, "type_vocab_size", 1) or 1))
    ids = rng.integers(min(5, vocab - 1), vocab, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[-1, seq // 2:] = 0  # one padded row, so the traced mask path handles padding
    tt = rng.integers(0, types, size=(batch, seq), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}


def _load_model(model_dir: Path):
    """The fp32 token classifier with eager attention: plain matrix operations that trace into ONNX cleanly."""
    return load_token_classifier(model_dir, attn_implementation="eager")[0].float().eval()


def _torch_export(model, onnx_path: Path) -> None:
    import warnings

    import torch

    wrapped = _logits_module(model)
    dummy = _dummy_inputs(model.config)
    args = tuple(torch.from_numpy(dummy[k]) for k in INPUTS)
    axes = {k: {0: "batch", 1: "sequence"} for k in (*INPUTS, "logits")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter: the dynamo exporter needs onnxscript and gains nothing for BERT.
        torch.onnx.export(wrapped, args, str(onnx_path), dynamo=False, input_names=list(INPUTS),
                          output_names=["logits"], dynamic_axes=axes, opset_version=OPSET,
                          do_constant_folding=True)


def _fuse(onnx_path: Path, fused_path: Path, config) -> bool:
    """ONNX Runtime's BERT fusions (EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu)."""
    if getattr(config, "model_type", "") not in ("bert", "roberta", "xlm-roberta", "electra", "camembert"):
        return False
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError:
        return False
    from onnxruntime.transformers.fusion_options import FusionOptions

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False  # see engines.UNFUSED: Add + LayerNormalization is faster on the CPU
    opt = optimize_model(str(onnx_path), model_type="bert", num_heads=int(config.num_attention_heads),
                         hidden_size=int(config.hidden_size), opt_level=0, optimization_options=options)
    if not opt.get_fused_operator_statistics().get("Attention"):
        return False  # the attention pattern was not recognised: nothing gained
    opt.save_model_to_file(str(fused_path))
    return True


def quantize_model(fp32_path: Path, int8_path: Path, per_channel: bool = True, reduce_range: bool = True) -> None:
    """Int8 quantization of the weight matrices, activations quantized on the fly (one scale per batch; see
    ``fix_activation_scales`` for the batch-invariant graph ``export`` writes).

    Per-channel weight scales are needed for accuracy (CoNLL-2003 test F1 of the default MiniLM model:
    fp32 86.24; per-channel 86.11, with reduce_range 86.16; per-tensor 85.45, with reduce_range 83.13).
    7-bit weights (``reduce_range``) avoid int16 saturation in the u8s8 kernels of CPUs without VNNI
    (AVX2 only, like the AMD EPYC this was measured on) at no measurable cost in F1.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantizer logs every tensor, and advice, on the root logger
    try:
        quantize_dynamic(str(fp32_path), str(int8_path), per_channel=per_channel, reduce_range=reduce_range,
                         weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"],
                         # fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)


def calibration_texts(source: str | os.PathLike | None = None, sentences: int = CALIBRATION_SENTENCES,
                      passages: int = CALIBRATION_PASSAGES) -> list[str]:
    """Texts whose activations fix the int8 graph's scales: single sentences and multi-sentence passages
    (full-length windows), spread evenly over ``source`` (CoNLL or JSONL, like training data), by default
    the small corpus shipped with nerkit."""
    from importlib import resources

    from nerkit.data import load

    docs = load(source if source is not None else Path(str(resources.files("nerkit") / "corpus" / "train.conll")))
    sents = [s.surface()[0] for d in docs for s in d.sentences if s.words]
    if not sents:
        raise NerkitError(f"{source}: no text to calibrate the int8 graph on")
    step = max(1.0, len(sents) / sentences)
    texts = [sents[int(i * step)] for i in range(min(sentences, len(sents)))]
    doc_texts = [[s.surface()[0] for s in d.sentences if s.words] for d in docs]
    doc_texts = [d for d in doc_texts if len(d) > 1]
    for i in range(min(passages, len(doc_texts))):
        d = doc_texts[int(i * len(doc_texts) / min(passages, len(doc_texts)))]
        texts.append(" ".join(d[:12]))
    return texts


def _calibration_batches(src: Path, meta: ModelMeta, texts: Sequence[str]):
    """The padded batches ``Tagger`` runs for ``texts`` (same windows, casing ids and batch sizes)."""
    from transformers import AutoTokenizer

    from nerkit import align
    from nerkit.predict import Tagger

    tagger = Tagger(None, AutoTokenizer.from_pretrained(src), ["O"], meta)
    tok = tagger.tokenizer
    docs = [tagger._text_doc(t, i) for i, t in enumerate(texts)]
    enc = align.encode_documents(docs, tok, None)
    windows = align.make_windows(enc, tagger.max_tokens, tagger.target_tokens, tagger.sentence_level)
    feats = [align.window_feature(enc[w.doc], w, tok.cls_token_id, tok.sep_token_id, tagger.case_signal)
             for w in windows]
    lengths = [len(f.input_ids) for f in feats]
    for batch in align.length_grouped_batches(lengths, DEFAULT_BATCH_TOKENS, None):
        yield align.collate([feats[i] for i in batch], tok.pad_token_id)


def activation_ranges(int8_path: Path, batches) -> dict[str, tuple[float, float]]:
    """(min, max) of every tensor a DynamicQuantizeLinear node quantizes, over the real (unpadded) tokens."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(int8_path))
    names = [n.input[0] for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the named tensors
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in sess.get_inputs()]
    lo = dict.fromkeys(names, 0.0)
    hi = dict.fromkeys(names, 0.0)
    for b in batches:
        valid = b["attention_mask"].astype(bool)
        outs = sess.run(names, {k: np.ascontiguousarray(b[k], dtype=np.int64) for k in inputs})
        for name, x in zip(names, outs):
            x = x[valid] if x.shape[:2] == valid.shape else x
            lo[name] = min(lo[name], float(x.min()))
            hi[name] = max(hi[name], float(x.max()))
    return {n: (lo[n], hi[n]) for n in names}


def fix_activation_scales(int8_path: Path, out_path: Path, ranges: dict[str, tuple[float, float]]) -> int:
    """Replace each DynamicQuantizeLinear by a QuantizeLinear with the constant uint8 scale and zero point of
    its calibrated range; returns how many were replaced.

    Dynamic quantization takes one activation scale per batch, from the batch's own minimum and maximum, so a
    text's entities could change with the texts it was batched with (146 of 3,701 served texts in the load
    test). With constant scales the same integer kernels run (MatMulInteger, QAttention) and every token is
    quantized the same way whatever shares its batch.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(int8_path))
    nodes, n = [], 0
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        x = node.input[0]
        q, scale_name, zp_name = node.output
        lo, hi = ranges[x]
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # as DynamicQuantizeLinear: the range holds 0 exactly
        scale = np.float32((hi - lo) / 255.0) if hi > lo else np.float32(1.0)
        zp = np.uint8(np.clip(np.round(-lo / scale), 0, 255))
        model.graph.initializer.extend([numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name),
                                        numpy_helper.from_array(np.array(zp, dtype=np.uint8), zp_name)])
        nodes.append(onnx.helper.make_node("QuantizeLinear", [x, scale_name, zp_name], [q],
                                           name=(node.name or x) + "_fixed_scale"))
        n += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(out_path))
    return n


def _reference_logits(model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()


# Words that exercise normalisation, splitting and unknown pieces; the saved tokenizer must encode them exactly
# as transformers does, or it is not saved.
PROBE_WORDS = [["John", "Smith", "lives", "in", "Paris", ",", "France", "."],
               ["ZÜRICH", "Zoë", "Dvořák", "naïve", "Straße", "ﬁne", "İstanbul", "ǅemal"],
               ["北京", "東京都", "서울", "Москва", "القاهرة", "Αθήνα", "मुंबई"],
               ["🙂", "he\u200bsaid", "\u00ad", "a\tb", "e\u0301", "x" * 80, "$1,234.56", "U.S.-based", "don't"],
               ["iPhone", "eBay", "McDonald's", "O'Neil", "@user", "#tag", "https://example.com/a?b=c"]]


def _save_word_tokenizer(src: Path, out_file: Path) -> dict | None:
    """Save the backend tokenizer of ``src`` for torch-free inference; None where it would not encode the same."""
    try:
        from tokenizers import Tokenizer
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(src)
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None:
            return None
        special = {f"{n}_token_id": getattr(tok, f"{n}_token_id", None) for n in ("cls", "sep", "pad", "unk")}
        if any(special[f"{n}_token_id"] is None for n in ("cls", "sep", "pad")):
            return None
        from nerkit.align import WordTokenizer

        mine = WordTokenizer(Tokenizer.from_str(backend.to_str()), **special)
        want = tok(PROBE_WORDS, is_split_into_words=True, add_special_tokens=False)
        got = mine(PROBE_WORDS)
        for k in range(len(PROBE_WORDS)):
            if list(want["input_ids"][k]) != got["input_ids"][k] or list(want.word_ids(k)) != got.word_ids(k):
                log.warning("the saved tokenizer would not encode like transformers; ONNX inference will load it")
                return None
        out_file.write_text(mine.backend.to_str(), encoding="utf-8")
        return {"file": out_file.name, **special}
    except Exception as exc:  # noqa: BLE001 - an optimisation: without it, inference loads transformers' tokenizer
        log.warning("could not save a torch-free tokenizer (%s)", exc)
        return None


def export(model_dir: str | os.PathLike, output: str | os.PathLike | None = None, quantize: bool = True,
           *, fuse: bool = True, copy_weights: bool = True,
           per_channel: bool = True, reduce_range: bool = True, atol: float = 1e-3,
           calibration: str | os.PathLike | Sequence[str] | None = None) -> dict:
    """Export ``model_dir`` to ONNX in ``output`` (default: in place); returns what was written and checked.

    ``calibration``: texts, or a CoNLL/JSONL file like the training data, on which the int8 graph's activation
    scales are fixed (default: the small corpus shipped with nerkit). ``output``, when another directory, follows
    ``train``'s rule: a new or empty directory, or a model directory nerkit wrote (never a user's folder)."""
    source = open_model_dir(model_dir)  # config, labels and tokenizer files checked; nerkit.json read once
    src = source.path
    if not any((src / w).is_file() for w in WEIGHT_FILES):
        raise NerkitError(f"{src}: no model.safetensors to export")
    out = Path(output) if output is not None else src
    if out.resolve() != src.resolve():
        check_output(out)  # `--output .` once replaced the user's README.md and config.json
    else:
        probe_writable(out, str(out))  # before minutes of tracing and calibration, not after
    try:
        return _export(source, out, quantize, fuse=fuse, copy_weights=copy_weights, per_channel=per_channel,
                       reduce_range=reduce_range, atol=atol, calibration=calibration)
    except OSError as exc:  # the disk filled up, the folder went away or read-only
        raise NerkitError(f"{out}: cannot write the exported model ({exc.strerror or exc})") from None


def _export(source: ModelDir, out: Path, quantize: bool, *, fuse: bool, copy_weights: bool, per_channel: bool,
            reduce_range: bool, atol: float, calibration) -> dict:
    # One straight sequence (trace, check, fuse, check, quantize, calibrate, check, move into place) reads best as one function.
    src = source.path
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = _load_model(src)  # loaded once: traced for ONNX, then the reference the graphs are checked against
    config = model.config
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        tmp = Path(tmp)
        raw = tmp / "raw.onnx"
        _torch_export(model, raw)
        # Check the graphs against PyTorch on inputs of another shape than the traced one, with padding.
        probe = _dummy_inputs(config, batch=3, seq=23, seed=1)
        ref = _reference_logits(model, probe)
        valid = probe["attention_mask"].astype(bool)
        tol = atol * max(1.0, float(np.abs(ref).max()))

        def max_diff(path: Path) -> float:
            return float(np.abs(ref - OnnxEngine(path, "onnx", threads=1).logits(probe))[valid].max())

        checks = {"onnx_max_abs_diff": max_diff(raw)}
        if not checks["onnx_max_abs_diff"] <= tol:
            raise NerkitError(f"ONNX export of {src} does not match PyTorch (max |logit diff| "
                              f"{checks['onnx_max_abs_diff']:.3g})")
        graph, fused = raw, False
        if fuse:
            try:
                fused = _fuse(raw, tmp / "fused.onnx", config)
            except Exception as exc:  # noqa: BLE001 - fusion is an optimisation; the plain graph still works
                log.warning("BERT operator fusion failed (%s); keeping the plain graph", exc)
            if fused:
                checks["fused_max_abs_diff"] = max_diff(tmp / "fused.onnx")
                if checks["fused_max_abs_diff"] <= tol:
                    graph = tmp / "fused.onnx"
                else:
                    log.warning("fused graph differs from PyTorch (%.3g); keeping the plain graph",
                                checks["fused_max_abs_diff"])
                    fused = False
        os.replace(graph, tmp / ONNX_FILE)
        raw = tmp / ONNX_FILE
        files = [ONNX_FILE]
        if quantize:
            q = tmp / INT8_FILE
            quantize_model(raw, tmp / "dynamic.onnx", per_channel=per_channel, reduce_range=reduce_range)
            texts = (list(calibration) if calibration is not None and not isinstance(calibration, (str, os.PathLike))
                     else calibration_texts(calibration))
            ranges = activation_ranges(tmp / "dynamic.onnx", _calibration_batches(src, source.meta, texts))
            fix_activation_scales(tmp / "dynamic.onnx", q, ranges)
            calibrated = {"source": "texts" if calibration is not None and not isinstance(calibration, (str, os.PathLike))
                          else Path(calibration).name if calibration is not None else "nerkit corpus (train)",
                          "texts": len(texts)}
            got8 = OnnxEngine(q, "onnx-int8").logits(probe)
            checks["int8_argmax_agreement"] = float((got8.argmax(-1) == ref.argmax(-1))[valid].mean())
            files.append(INT8_FILE)
        word_tok = _save_word_tokenizer(src, tmp / WORD_TOKENIZER_FILE)
        if word_tok is not None:
            files.append(WORD_TOKENIZER_FILE)
        for f in files:
            os.replace(tmp / f, out / f)
    if not quantize and (out / INT8_FILE).is_file():
        (out / INT8_FILE).unlink()  # a stale int8 graph would be picked before the new fp32 one
    if word_tok is None and (out / WORD_TOKENIZER_FILE).is_file():
        (out / WORD_TOKENIZER_FILE).unlink()
    if out.resolve() != src.resolve():
        for name in COPY_FILES + (WEIGHT_FILES if copy_weights else ()):
            if (src / name).is_file():  # copyfile: a new file follows the umask (copy2 kept the weights' 0600)
                shutil.copyfile(src / name, out / name)
        for name in () if copy_weights else WEIGHT_FILES:
            if (out / name).is_file():  # another model's weights (a nerkit directory exported into again)
                (out / name).unlink()
    info = {"files": files, "opset": OPSET, "fused": fused,
            "quantization": ({"type": "int8", "weight_type": "int8", "per_channel": per_channel,
                              "reduce_range": reduce_range, "activations": "static",
                              "calibration": calibrated} if quantize else None),
            "word_tokenizer": word_tok, "checks": checks, "seconds": round(time.perf_counter() - t0, 1)}
    meta = read_meta(out)
    meta.onnx = info
    write_meta(out, meta)
    return info
