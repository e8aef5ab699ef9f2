"""core.prefill_attention: a packed piece's attention as oneDNN products equals SDPA's with the
piece's mask (every base position, its own keys causally), block by block, for grouped and
plain heads; and it is used only where it applies."""

import pytest
import torch
import torch.nn.functional as F

from dpfusion_chains.core import matmul, prefill_attention
from dpfusion_chains.core.packing import _piece_mask

pytestmark = pytest.mark.skipif(not matmul.onednn_available(), reason="this torch has no oneDNN linear op")


def sdpa_reference(query, keys, values, base, scale):
    n = query.shape[2]
    return F.scaled_dot_product_attention(query, keys, values, attn_mask=_piece_mask(base, n, query.device),
                                          scale=scale, enable_gqa=True)[0]


@pytest.mark.parametrize("heads,kv_heads", [(6, 2), (4, 4)])
@pytest.mark.parametrize("base,n,block", [(0, 1, 4), (0, 37, 8), (23, 37, 8), (23, 40, 8), (5, 300, 256)])
def test_equals_sdpa_with_the_piece_mask(heads, kv_heads, base, n, block):
    g = torch.Generator().manual_seed(base * 1000 + n)
    dim = 16
    query = torch.randn(1, heads, n, dim, generator=g)
    keys = torch.randn(1, kv_heads, base + n, dim, generator=g) * 3  # peaked softmaxes too
    values = torch.randn(1, kv_heads, base + n, dim, generator=g)
    out = torch.full((heads, n, dim), float("nan"))
    prefill_attention.piece_attention(query, keys, values, base, dim ** -0.5, out, block=block)
    torch.testing.assert_close(out, sdpa_reference(query, keys, values, base, dim ** -0.5), atol=2e-6, rtol=1e-5)


def test_no_query_sees_a_later_key():
    """Changing the piece's last key and value changes only its last query's output."""
    g = torch.Generator().manual_seed(7)
    query, keys, values = (torch.randn(1, 4, 40, 8, generator=g), torch.randn(1, 2, 50, 8, generator=g),
                           torch.randn(1, 2, 50, 8, generator=g))
    outs = []
    for _ in range(2):
        out = torch.empty(4, 40, 8)
        prefill_attention.piece_attention(query, keys, values, 10, 0.3, out, block=16)
        outs.append(out)
        keys[:, :, -1], values[:, :, -1] = 5.0, -5.0
    assert torch.equal(outs[0][:, :-1], outs[1][:, :-1]) and not torch.equal(outs[0][:, -1], outs[1][:, -1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_pieces_are_attended_in_float32(dtype):
    """Rounded to the input dtype once, at the output: at least as close to float64 attention over
    the same (rounded) inputs as SDPA's own half-precision kernel, and close to float32's."""
    g = torch.Generator().manual_seed(3)
    base, n, dim = 40, 300, 64
    query = torch.randn(1, 6, n, dim, generator=g).to(dtype)
    keys = (torch.randn(1, 2, base + n, dim, generator=g) * 3).to(dtype)
    values = torch.randn(1, 2, base + n, dim, generator=g).to(dtype)
    out = torch.full((6, n, dim), float("nan"), dtype=dtype)
    prefill_attention.piece_attention(query, keys, values, base, dim ** -0.5, out)
    exact = sdpa_reference(query.double(), keys.double(), values.double(), base, dim ** -0.5)
    ours = (out.double() - exact).abs().max().item()
    sdpa = (sdpa_reference(query, keys, values, base, dim ** -0.5).double() - exact).abs().max().item()
    assert out.dtype == dtype and ours <= sdpa and ours < 1e-2


def test_applies_to_float32_and_half_precision_cpu_pieces_long_enough_without_autograd():
    long = torch.zeros(1, 2, prefill_attention.MIN_QUERIES, 8)
    assert prefill_attention.applies(long)
    assert not prefill_attention.applies(long[:, :, 1:])                 # short: SDPA's fixed cost is lower
    assert not prefill_attention.applies(long.double())
    assert not prefill_attention.applies(long.clone().requires_grad_())  # the oneDNN op has no gradient
    with torch.no_grad():
        assert prefill_attention.applies(long.clone().requires_grad_())
    assert prefill_attention.takes(prefill_attention.MIN_QUERIES, torch.float32, torch.device("cpu"))
    assert prefill_attention.takes(prefill_attention.MIN_QUERIES, torch.bfloat16, torch.device("cpu"))
    assert prefill_attention.applies(long.half())
    assert not prefill_attention.takes(prefill_attention.MIN_QUERIES, torch.float32, torch.device("meta"))
