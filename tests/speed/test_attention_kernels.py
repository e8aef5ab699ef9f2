"""core.attention_kernels: the engine's forwards on a CUDA GPU skip cuDNN's SDPA kernel (which
re-plans at every decode step's new shape); other devices and the flags outside are untouched."""

import torch

from dpfusion_chains.core.attention_kernels import engine_kernels


def enabled() -> tuple[bool, bool, bool, bool]:
    b = torch.backends.cuda
    return b.cudnn_sdp_enabled(), b.flash_sdp_enabled(), b.mem_efficient_sdp_enabled(), b.math_sdp_enabled()


def test_on_a_gpu_cudnn_is_off_inside_and_every_flag_is_restored_after():
    before = enabled()
    with engine_kernels(torch.device("cuda")):
        assert enabled() == (False, True, True, True)
    assert enabled() == before


def test_elsewhere_nothing_changes():
    before = enabled()
    for device in (torch.device("cpu"), "cpu"):
        with engine_kernels(device):
            assert enabled() == before


def test_flags_are_restored_when_the_forward_raises():
    before = enabled()
    try:
        with engine_kernels(torch.device("cuda")):
            raise RuntimeError("forward failed")
    except RuntimeError:
        pass
    assert enabled() == before
