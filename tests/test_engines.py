"""The one thread policy and the one bf16 policy that both engines and training use."""
import os
import platform

import pytest
import torch

from nerkit import engines
from nerkit.errors import NerkitError


def test_available_cores_honours_nerkit_threads(monkeypatch):
    monkeypatch.setenv("NERKIT_THREADS", "3")
    assert engines.available_cores() == 3
    monkeypatch.setenv("NERKIT_THREADS", "zero")  # not a number: ignored
    assert 1 <= engines.available_cores() <= len(os.sched_getaffinity(0))


def test_torch_threads_follow_the_policy_unless_omp_is_set(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("NERKIT_THREADS", "1")
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        engines.set_torch_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        monkeypatch.setenv("NERKIT_THREADS", "2")
        engines.set_torch_threads()
        assert torch.get_num_threads() == 1  # the user's OMP_NUM_THREADS wins: left alone
    finally:
        torch.set_num_threads(before)


def test_bf16_policy(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: True)
    monkeypatch.delenv("NERKIT_BF16", raising=False)
    assert engines.use_bf16("auto", cpu) is True
    assert engines.use_bf16("off", cpu) is False and engines.use_bf16(False, cpu) is False
    monkeypatch.setenv("NERKIT_BF16", "off")
    assert engines.use_bf16("auto", cpu) is False  # the environment turns auto off ...
    assert engines.use_bf16("on", cpu) is True  # ... but not an explicit choice
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: False)
    monkeypatch.delenv("NERKIT_BF16")
    assert engines.use_bf16("auto", "cpu") is False
    with pytest.raises(NerkitError, match="bf16"):
        engines.use_bf16("maybe", cpu)


def _mixed_texts(n: int = 192) -> list[str]:
    """``n`` texts of 1 to 60 words (so that they are padded in batches), some words capitalised."""
    import random

    rng = random.Random(0)
    words = ("john smith mary jones paris london berlin new york city lives works visited went met said today "
             "the a of in").split()
    return [" ".join(w.title() if rng.random() < 0.4 else w for w in rng.choices(words, k=rng.randint(1, 60)))
            for _ in range(n)]


def test_inference_auto_is_fp32_on_every_cpu(monkeypatch, tiny_model):
    """bf16 autocast made the torch backend's answers depend on the batch (issue 21), and ``serve`` runs it by
    default for an unexported model: "auto" is fp32 at inference whatever the CPU has (here: says it has bf16)."""
    from nerkit.predict import Tagger

    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: True)
    monkeypatch.delenv("NERKIT_BF16", raising=False)
    assert engines.use_bf16("auto", "cpu") is True  # training keeps bf16 on such CPUs
    assert engines.use_bf16("auto", "cpu", inference=True) is False
    assert Tagger.load(tiny_model, backend="torch").engine.bf16 is False
    monkeypatch.setenv("NERKIT_BF16", "on")
    assert Tagger.load(tiny_model).engine.bf16 is False  # the environment does not bring batch-dependence back
    assert Tagger.load(tiny_model, bf16="on").engine.bf16 is True  # only asking for it does


@pytest.mark.parametrize("policy", ["env", "cpu"])
def test_torch_answers_do_not_depend_on_the_batch(monkeypatch, tiny_model, policy):
    """The same texts alone and in batches of 64 get identical entities and scores from the torch backend as
    ``serve`` loads it, with the bf16 policy forced on: NERKIT_BF16=on (bf16 autocast runs on any CPU, emulated
    where it has no bf16 units), or a CPU that reports native bf16 units. Under bf16 autocast, on an AVX512-BF16
    CPU, 8 of these 192 texts changed scores."""
    from nerkit.predict import Tagger

    if policy == "env":
        monkeypatch.setenv("NERKIT_BF16", "on")
    else:
        monkeypatch.delenv("NERKIT_BF16", raising=False)
        monkeypatch.setattr(engines, "cpu_has_bf16", lambda: True)
    tagger = Tagger.load(tiny_model)  # not exported: the torch backend, as `nerkit serve` runs it
    assert tagger.engine.name == "torch"
    texts = _mixed_texts()
    alone = [tagger.predict([t])[0] for t in texts]
    together = [ents for i in range(0, len(texts), 64) for ents in tagger.predict(texts[i:i + 64])]
    assert sum(map(len, alone)) > 50, "the tiny model should find entities"
    assert [i for i, (a, b) in enumerate(zip(alone, together)) if a != b] == []  # Entity equality includes score


def _faults_reallocating(keep: bool) -> int:
    """Minor page faults of a fresh process allocating, touching and freeing a 40 MB tensor ten times (a training
    step's gradients and activations come and go the same way), after ``keep_freed_memory`` if ``keep``."""
    import subprocess
    import sys

    code = ("import resource, torch\n"
            "from nerkit.engines import keep_freed_memory\n"
            f"assert keep_freed_memory() if {keep} else True\n"
            "for _ in range(5):  # the heap settles: small allocations between the blocks find their places\n"
            "    torch.ones(10_000_000)\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(10):\n"
            "    torch.ones(10_000_000)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_kept_for_the_next_step_not_faulted_in_again():
    default, kept = _faults_reallocating(False), _faults_reallocating(True)
    # each 40 MB block mapped anew: 9,766 faults of 4 KiB pages each time here; at least 20 where transparent huge
    # pages are always on (2 MiB each), so the test holds on such a machine too
    assert default >= 10 * 20
    assert kept < default / 5  # none of the 10 here, on AVX2 and AVX-512 kernels alike
