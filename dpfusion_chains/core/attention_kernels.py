"""Which of torch's SDPA kernels the engine's forwards may use.

On a Hopper GPU, PyTorch (2.5 and later) ranks cuDNN's attention kernel first. cuDNN plans a graph
for every new input shape, and a decode step's shape changes at every token: the cache is one
position longer. So every layer of every step plans again. On an H100 with torch 2.11 that took
2.9 ms of host time per layer call (torch.profiler: `aten::_cudnn_attention_forward`, 432 ms of
CPU for 150 calls, 2.5 ms of GPU time). With SmolLM2-135M's shape in bf16, a decode step of one
request took 202 ms against 42 ms without cuDNN, a step of 8 requests 113 ms against 41 ms, and
a plain one-token forward 102 ms against 32 ms. Only lengths seen before are fast with cuDNN
(44 ms on a second pass over the same lengths).

The engine's forwards therefore run with cuDNN's kernel switched off: flash, memory-efficient and
math remain, and torch picks among them as usual. The switch is torch's own `sdpa_kernel`
context, which sets process-wide flags, so another thread's SDPA call made while an engine
forward runs also skips cuDNN (it gets one of the other exact kernels). CPUs are unaffected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

ENGINE_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@contextlib.contextmanager
def engine_kernels(device: torch.device) -> Iterator[None]:
    """Within: SDPA on `device` skips cuDNN's kernel (a CUDA GPU); elsewhere nothing changes."""
    if torch.device(device).type != "cuda":
        yield
        return
    with sdpa_kernel(ENGINE_BACKENDS):
        yield


__all__ = ["ENGINE_BACKENDS", "engine_kernels"]
