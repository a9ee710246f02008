"""The one thread policy and the one bf16 policy that both engines and training use."""
import os

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
