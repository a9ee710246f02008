"""Inference engines: what runs the network on a padded batch (PyTorch or ONNX Runtime), with one thread policy
and one bf16 policy for both.

An engine is anything with ``name``, ``batch_tokens`` (padded tokens per forward pass it runs best with) and
``logits(batch) -> np.ndarray``; ``decode.WindowTagger`` drives it. ``resolve_backend`` is the one rule that picks
what runs a model directory (the exported int8 graph, else fp32, else PyTorch) and ``load_engine`` builds it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from nerkit.errors import NerkitError
from nerkit.modeldir import (INT8_FILE, ONNX_FILE, ModelDir, ModelMeta, check_torch_weights, first_line,
                             load_token_classifier, open_model_dir)

log = logging.getLogger("nerkit.engines")
BACKENDS = ("auto", "onnx-int8", "onnx", "torch")
DEFAULT_BATCH_TOKENS = 512
# ONNX Runtime's SkipLayerNormalization CPU kernel took 4x the time of the Add + LayerNormalization it replaces
# (12-14% of an int8 forward pass of MiniLM-L6 on AVX2; onnxruntime 1.32), so that fusion stays off.
UNFUSED = ["SkipLayerNormFusion"]


class Engine(Protocol):
    """What ``decode.WindowTagger`` needs from a model runner."""

    name: str
    batch_tokens: int

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """(batch x sequence x labels) scores for a padded batch of input_ids/attention_mask/token_type_ids."""
        ...


# ---------------------------------------------------------------- thread and bf16 policy


def available_cores() -> int:
    """CPU cores this process may use: NERKIT_THREADS if set, else the affinity mask capped by a cgroup CPU quota."""
    env = os.environ.get("NERKIT_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    try:  # a cgroup v2 CPU quota (docker --cpus) caps what the affinity mask allows
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return n


def set_torch_threads(threads: int | None = None) -> None:
    """Give torch ``threads`` threads where given, else ``available_cores()`` (its default may count the host's
    cores) unless OMP_NUM_THREADS is set."""
    import torch

    if not threads and os.environ.get("OMP_NUM_THREADS"):
        return  # the user chose
    n = threads or available_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


# glibc's malloc gives a freed block over its mmap threshold back to the kernel and trims its heaps' free tops, so
# every training step faulted the pages of its activations and gradients in anew (WNUT-17 300, 2-core AMD EPYC Zen
# 4: one training 7.6-8.1M page faults and 19 s of system time in 91-96 s). Blocks up to 256 MiB (32 MiB where glibc
# refuses more) now come from the heap and up to 1 GiB of freed memory stays there for the next step: 0.4M faults,
# 80-86 s, the same steps and scores (docs/training.md).
MMAP_THRESHOLDS = (256 << 20, 32 << 20)
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Have the C library's malloc keep freed memory for reuse instead of returning it to the kernel (glibc only;
    elsewhere its defaults stay); True if it took the settings. Process-wide, for processes that train."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no mallopt (macOS, musl: no-op; Windows): left as it is
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mmap = any(mallopt(m_mmap_threshold, size) == 1 for size in MMAP_THRESHOLDS)
    return mmap and mallopt(m_trim_threshold, TRIM_THRESHOLD) == 1


def cpu_has_bf16() -> bool:
    """True if this CPU has AVX512-BF16 or AMX (fast bf16 matmuls in oneDNN)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# Training under bf16 autocast stays on by default on CPUs with native bf16 units: with nerkit's defaults and seed,
# bf16-trained 93.45 dev / 88.61 test F1 vs fp32-trained 93.45 / 88.55 (bench/results/conll2003.json).
CPU_BF16_TRAINING = True
# Inference runs in fp32 on CPUs: under bf16 autocast a text's answer depended on what it was batched with (the
# bf16 kernels round differently for other batch shapes): 1 of 192 texts changed entities and 100 changed scores
# alone vs in a batch of 64 (issue 21); the tiny test model on an AVX512-BF16 CPU, 8 of 192 scores in bf16 and 0 in
# fp32. bf16 had cost 0.01 F1 (bench/bf16.py): only speed is lost, and the exported ONNX graphs are the fast path.
CPU_BF16_INFERENCE = False


def use_bf16(setting: str | bool, device, inference: bool = False) -> bool:
    """Whether to autocast to bf16. "on"/"off" as given (bf16 answers can depend on the batch). "auto": on GPUs
    with bf16; on CPUs with native bf16 units (without them autocast ran 7x slower than fp32 on an AVX2 CPU) for
    training only (fp32 inference gives a text the same answer whatever it is batched with). NERKIT_BF16=off turns
    auto off everywhere; NERKIT_BF16=on makes any CPU count as one with native bf16 units. True/False as on/off."""
    if isinstance(setting, bool):
        return setting
    if setting == "on":
        return True
    if setting == "off":
        return False
    if setting != "auto":
        raise NerkitError(f"bf16 must be auto, on or off, not {setting!r}")
    env = os.environ.get("NERKIT_BF16", "").strip().lower()
    if env in ("0", "off", "no", "false"):
        return False
    forced = env in ("1", "on", "yes", "true")
    if getattr(device, "type", str(device).split(":")[0]) == "cuda":
        import torch

        return forced or torch.cuda.is_bf16_supported()
    return (forced or cpu_has_bf16()) and (CPU_BF16_INFERENCE if inference else CPU_BF16_TRAINING)


# ---------------------------------------------------------------- engines


class TorchEngine:
    """Runs a token-classification model with PyTorch (bf16 autocast where asked; see ``use_bf16``)."""

    name = "torch"

    def __init__(self, model, bf16: bool = False, threads: int | None = None):
        import torch

        set_torch_threads(threads)
        self.torch = torch
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.bf16 = bf16
        # Padded tokens per forward pass. On 2 AVX2 cores 1,024-token batches ran 1.6x faster than 8,192-token
        # ones (activations stay in cache); GPUs want large batches.
        self.batch_tokens = 1024 if self.device.type == "cpu" else 8192

    def set_bf16(self, on: bool) -> bool:
        """Autocast to bf16 from now on, or not; True if that changed (what it gave before came at the other
        precision)."""
        changed, self.bf16 = self.bf16 != on, on
        return changed

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        inputs = {k: torch.from_numpy(batch[k]).to(self.device) for k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(**inputs).logits
        return out.float().cpu().numpy()


def _batch_tokens() -> int:
    env = os.environ.get("NERKIT_BATCH_TOKENS", "")
    return int(env) if env.isdigit() and int(env) > 0 else DEFAULT_BATCH_TOKENS


class OnnxEngine:
    """Runs an exported token-classification graph with ONNX Runtime on the CPU.

    ``batch_tokens`` is the padded batch size in tokens: small batches keep the activations in the CPU caches,
    and were measured fastest (see bench/inference.py).
    """

    def __init__(self, path: str | os.PathLike, name: str = "onnx", threads: int | None = None,
                 batch_tokens: int | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or available_cores()
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.path = Path(path)
        self.name = name
        self.batch_tokens = batch_tokens or _batch_tokens()
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=UNFUSED)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: np.ascontiguousarray(batch[k], dtype=np.int64) for k in self.input_names}
        return self.session.run(None, feed)[0]

    def __repr__(self) -> str:
        return f"OnnxEngine({self.name}, {self.path})"


# The file each backend runs (the model fingerprint of ``tag-corpus`` hashes it).
BACKEND_FILES = {"onnx-int8": INT8_FILE, "onnx": ONNX_FILE, "torch": "model.safetensors"}


def _fixed_scales(meta: ModelMeta) -> bool:
    """Whether a model directory's int8 graph quantizes activations with constant scales (``nerkit export``
    since issue 9): then a text's logits do not depend on the other texts of its batch."""
    quant = (meta.onnx or {}).get("quantization") or {}
    return isinstance(quant, dict) and quant.get("activations") == "static"


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(model: ModelDir, backend: str = "auto") -> str:
    """The backend that runs ``model``: onnx-int8, onnx or torch. The one rule ``predict``, ``serve`` and
    ``tag-corpus`` share: "auto" takes the int8 graph (only one with fixed activation scales), else the fp32
    graph (where ONNX Runtime is installed), else PyTorch; a named ONNX backend must have its graph."""
    if backend not in BACKENDS:
        raise NerkitError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return "torch"
    for name in (["onnx-int8", "onnx"] if backend == "auto" else [backend]):
        if not model.has(BACKEND_FILES[name]):
            continue
        if backend == "auto" and name == "onnx-int8" and not _fixed_scales(model.meta):
            log.warning("%s: the int8 graph quantizes activations with one scale per batch (exported by an older "
                        "nerkit), so answers could depend on what a text is batched with; running the fp32 graph. "
                        "Run `nerkit export` again for the faster int8 graph.", model.path)
            continue
        if backend == "auto" and not _has_onnxruntime():
            return "torch"
        return name
    if backend == "auto":
        return "torch"
    raise NerkitError(f"{model.path}: backend {backend!r} is not available for this model (run `nerkit export`)")


def load_engine(model: ModelDir | str | os.PathLike, backend: str = "auto", *, threads: int | None = None,
                device: str | None = None, bf16: str | bool = "auto") -> Engine:
    """The engine that runs a model directory with the backend ``resolve_backend`` picks. ``threads``: CPU threads
    for it (default: ``available_cores()``); ``device`` and ``bf16`` apply to PyTorch (see ``use_bf16``)."""
    if not isinstance(model, ModelDir):
        model = open_model_dir(model)
    name = resolve_backend(model, backend)
    if name == "torch":
        return _torch_engine(model, threads, device, bf16)
    path = model.path / BACKEND_FILES[name]
    if not _has_onnxruntime():
        raise NerkitError("onnxruntime is not installed (pip install 'nerkit[serve]')")
    try:
        return OnnxEngine(path, name, threads=threads)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors (truncated or corrupt graph) have no base
        raise NerkitError(f"{path}: cannot load the ONNX graph ({first_line(exc)}); export the model "
                          "again (nerkit export)") from None


def _torch_engine(model: ModelDir, threads: int | None, device: str | None, bf16: str | bool) -> TorchEngine:
    """A ``TorchEngine`` on the directory's safetensors weights, refused where they do not match config.json."""
    check_torch_weights(model.path)
    set_torch_threads(threads)
    try:
        net, info = load_token_classifier(model.path)
    except Exception as exc:  # noqa: BLE001 - torch, safetensors and transformers each raise their own
        raise NerkitError(f"{model.path}: cannot load the model ({first_line(exc)})") from None
    bad = [k for kind in ("missing_keys", "mismatched_keys") for k in info.get(kind) or ()]
    if bad:  # transformers would run with freshly initialised weights there: silent nonsense
        raise NerkitError(f"{model.path}: the weights do not match config.json ({len(bad)} tensors missing or "
                          f"of another shape, e.g. {bad[0]})")
    if device:
        net.to(device)
    return TorchEngine(net, bf16=use_bf16(bf16, net.device, inference=True), threads=threads)
