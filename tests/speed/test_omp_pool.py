"""Releasing a thread's OpenMP pool (core.omp_pool) and when the scheduler does it."""

import sys
import threading
from pathlib import Path

import pytest
import torch

from dpfusion_chains.core import omp_pool
from dpfusion_chains.core.decode import DecodeBatch
from dpfusion_chains.testing import tiny_engine


def _parallel_op() -> torch.Tensor:
    return torch.arange(4 * 49152, dtype=torch.float32).reshape(4, -1).div(1e5).exp().sum(dim=-1)


BUNDLED_LIBGOMP = Path(torch.__file__).parent / "lib" / "libgomp.so.1"


@pytest.mark.skipif(not (sys.platform.startswith("linux") and BUNDLED_LIBGOMP.exists()),
                    reason="this torch build does not bundle GNU OpenMP (torch/lib/libgomp.so.1)")
def test_the_pool_of_torchs_libgomp_is_released_and_rebuilt():
    expected = _parallel_op()
    assert omp_pool._pause_all() is not None, "torch's own libgomp.so.1 should be the one loaded"
    assert omp_pool.release_thread_pool() is True
    assert omp_pool.release_thread_pool() is True  # nothing left to free: still fine
    assert torch.equal(_parallel_op(), expected)  # the next parallel op builds a new pool


def test_another_runtime_is_left_alone(monkeypatch):
    monkeypatch.setattr(omp_pool, "_pause_all", lambda: None)
    assert omp_pool.release_thread_pool() is False


def test_a_caller_that_drove_the_loop_releases_its_pool_and_the_worker_does_not(monkeypatch):
    import dpfusion_chains.core.scheduler as scheduler_module

    engine = tiny_engine(seed=2)
    released: list[str] = []
    monkeypatch.setattr(scheduler_module, "release_thread_pool",
                        lambda: released.append(threading.current_thread().name) or True)
    messages = [{"role": "user", "content": "Plain question"}]
    engine.generate(messages, beta=0.05, max_new_tokens=3, seed=0)
    assert released == [threading.current_thread().name]
    released.clear()
    for _ in engine.stream(messages, beta=0.05, max_new_tokens=3, seed=0):  # decoded by the worker
        pass
    assert released == []
    real = DecodeBatch.step

    def step_then_fail(self):
        real(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(DecodeBatch, "step", step_then_fail)
    with pytest.raises(KeyboardInterrupt):
        engine.generate(messages, beta=0.05, max_new_tokens=3, seed=0)
    assert released == [threading.current_thread().name]  # also when driving ends in an error
    assert not engine._scheduler._driving
