"""The machine a benchmark ran on, for its report: every bench script describes it the same way."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Callable, Mapping

# The instruction sets that change nerkit's numbers or speed on CPU (bf16 autocast, int8 kernels).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")


def machine() -> dict:
    """CPU model, usable cores, instruction sets, nerkit's bf16 policy here and library versions."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
                 platform.processor() or platform.machine())
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    info = {"cpu": model, "cores": cores, "isa": [f for f in ISA_FLAGS if f in flags],
            "python": platform.python_version()}
    for lib in ("torch", "transformers", "onnxruntime"):
        try:
            info[lib] = __import__(lib).__version__
        except ImportError:
            pass
    try:
        import torch

        if torch.cuda.is_available():  # training then runs on the GPU: name it, or a GPU time reads as a CPU time
            info["gpu"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001 - no torch, no GPU line
        pass
    try:
        from nerkit.engines import use_bf16

        info["bf16"] = bool(use_bf16("auto", "cpu"))
    except Exception:  # noqa: BLE001 - a report without the bf16 line is still a report
        pass
    return info


def describe(info: dict | None = None) -> str:
    """One line: "AMD EPYC, 2 cores (avx2, avx512_bf16), bf16 autocast on, torch 2.13.0"."""
    info = info or machine()
    bf16 = "" if "bf16" not in info else f", bf16 autocast {'on' if info['bf16'] else 'off'}"
    torch = f", torch {info['torch']}" if "torch" in info else ""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    return f"{info['cpu']}, {info['cores']} cores ({', '.join(info['isa']) or 'no AVX2'}){bf16}{torch}{gpu}"


def best_interleaved(runs: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Seconds of the fastest of ``rounds`` calls of each function, the calls taking turns (a, b, c, a, b, c, ...) so
    that every system meets the same machine: runs timed minutes apart wander by 20-30 % on a shared one."""
    best = {name: float("inf") for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best
