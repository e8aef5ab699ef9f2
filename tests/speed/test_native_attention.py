"""The compiled decode attention (core.native_attention): the attention of SDPA over each whole
row, for every cache dtype, head dim and grouping it takes; padding and masked columns never
read into a result; shapes it does not take handed back to torch's ops; the decode loop samples
the same tokens through it. Its build and load: tests/speed/test_native_library.py."""


import pytest
import torch
from decode_attention_cases import kernel_answers, rows_with_opening, sdpa_over_rows, thresholds

from dpfusion_chains.core import native_attention
from dpfusion_chains.core.decode import DecodeRequest
from dpfusion_chains.testing import tiny_model


@pytest.fixture
def kernel():
    if not native_attention.available():
        pytest.skip(f"no native decode attention kernel: {native_attention.unavailable_reason()}; "
                    "the engine uses torch's ops, tested elsewhere")


def step_inputs(leads, opening, width, heads, kv_heads, dim, dtype, seed=0):
    """query, keys, values, first own columns and mask of a decode step whose rows hold one
    opening from their lead (padding NaN, so a read of it shows in the output)."""
    keys, values, mask = rows_with_opening(leads, opening, width, kv_heads, dim, seed)
    query = torch.randn(len(leads), heads, 1, dim) * 2
    first = torch.tensor(leads) + opening
    return query.to(dtype), (keys * 2).to(dtype), values.to(dtype), first, mask


@pytest.mark.parametrize("heads, kv_heads, dim",
                         [(9, 3, 64), (4, 4, 16), (8, 1, 128), (6, 2, 32), (4, 2, 256), (4, 4, 8), (6, 3, 24)])
@pytest.mark.parametrize("opening", [0, 1, 40])
def test_float32_attention_is_sdpas_over_each_whole_row(kernel, heads, kv_heads, dim, opening):
    if dim % native_attention.lanes():
        pytest.skip(f"head dim {dim} is no multiple of this kernel's {native_attention.lanes()} lanes")
    leads, width = [0, 7, 0, 30, 3], 90
    query, keys, values, first, mask = step_inputs(leads, opening, width, heads, kv_heads, dim, torch.float32)
    out = native_attention.decode_attention(query, keys, values, dim ** -0.5, leads[0], opening, first, mask)
    assert out is not None and out.shape == query.shape and out.dtype == torch.float32
    assert torch.allclose(out, sdpa_over_rows(query, keys, values, mask, dim ** -0.5), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_caches_are_attended_in_float32(kernel, dtype):
    """At least as close to float64 attention over the same rounded inputs as SDPA's own
    half-precision kernel, the output rounded once to the cache's dtype."""
    leads, opening, width = [0, 5, 0, 9] * 4, 120, 330
    query, keys, values, first, mask = step_inputs(leads, opening, width, 9, 3, 64, dtype)
    out = native_attention.decode_attention(query, keys, values, 0.125, 0, opening, first, mask)
    exact = sdpa_over_rows(query.double(), keys.double(), values.double(), mask, 0.125)
    assert out.dtype == dtype
    sdpa = (sdpa_over_rows(query, keys, values, mask, 0.125).double() - exact).abs().max()
    assert (out.double() - exact).abs().max() <= sdpa


def test_masked_columns_of_a_rows_own_part_are_never_attended(kernel):
    query, keys, values, first, mask = step_inputs([0, 0, 4], 8, 40, 4, 2, 16, torch.float32)
    mask[1, 10:20] = False
    keys[1, :, 10:20] = 1e4                                           # would take all the weight if attended
    values[1, :, 10:20] = float("nan")
    out = native_attention.decode_attention(query, keys, values, 0.25, 0, 8, first, mask)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, sdpa_over_rows(query, keys, values, mask, 0.25), atol=2e-5)


def test_a_cache_read_where_it_lies_with_room_after_it(kernel):
    """Keys and values as the engine's cache hands them over: views of a larger buffer (columns
    beyond the used width, rows and heads strided by the buffer's capacity)."""
    query, keys, values, first, mask = step_inputs([0, 3, 0, 6], 20, 50, 6, 3, 64, torch.float32)
    buffer_k, buffer_v = torch.full((4, 3, 80, 64), float("nan")), torch.full((4, 3, 80, 64), float("nan"))
    buffer_k[:, :, :50], buffer_v[:, :, :50] = keys, values
    out = native_attention.decode_attention(query, buffer_k[:, :, :50], buffer_v[:, :, :50], 0.125, 0, 20, first,
                                            torch.cat([mask, torch.zeros(4, 5, dtype=torch.bool)], dim=1))
    assert torch.allclose(out, sdpa_over_rows(query, keys, values, mask, 0.125), atol=2e-5)


def test_what_the_kernel_does_not_take_goes_back_to_torchs_ops(kernel):
    query, keys, values, first, mask = step_inputs([0, 2], 4, 12, 4, 2, 16, torch.float32)

    def answer(q=query, k=keys, v=values, start=0, length=4, f=first, m=mask):
        return native_attention.decode_attention(q, k, v, 0.25, start, length, f, m)

    assert answer() is not None
    q20, k20, v20, f20, m20 = step_inputs([0, 2], 4, 12, 4, 2, 20, torch.float32)
    assert answer(q20, k20, v20, f=f20, m=m20) is None                         # head dim not a multiple of 8 or 16
    assert answer(q=query.expand(2, 4, 2, 16)) is None                         # not one decode step
    assert answer(k=keys.double(), v=values.double()) is None                  # float64
    assert answer(v=values.half()) is None                                     # keys and values differ
    assert answer(q=query.half()) is None                                      # queries of another dtype
    assert answer(m=mask.long()) is None                                       # an additive or integer mask
    assert answer(f=first.int()) is None
    assert answer(length=20) is None                                           # the opening beyond the columns
    assert answer(f=torch.tensor([0, 13])) is None                             # a first column beyond them
    assert answer(f=torch.tensor([-1, 2])) is None
    assert answer(q=query.to("meta"), k=keys.to("meta"), v=values.to("meta")) is None
    grad = query.clone().requires_grad_()
    assert answer(q=grad) is None
    with torch.no_grad():
        assert answer(q=grad) is not None


def test_it_is_switched_off_for_a_block_and_by_the_environment(kernel, monkeypatch):
    assert native_attention.lanes() in (8, 16)
    with native_attention.disabled():
        assert not native_attention.available() and native_attention.lanes() == 0
        assert "disabled" in native_attention.unavailable_reason()
    assert native_attention.available() and native_attention.unavailable_reason() is None
    monkeypatch.setenv(native_attention.ENVIRONMENT, "0")
    assert not native_attention.available()
    assert native_attention.unavailable_reason() == f"switched off ({native_attention.ENVIRONMENT}=0)"


def test_it_takes_models_whose_heads_it_computes(kernel):
    from dpfusion_chains.core.models import default_tokenizer

    tokenizer = default_tokenizer()
    assert native_attention.takes_model(tiny_model(tokenizer, hidden_size=64))        # 4 heads of 16
    assert not native_attention.takes_model(tiny_model(tokenizer, hidden_size=40))    # 4 heads of 10
    # 4 heads of 8: whole vectors for AVX2's kernel, half a vector for AVX-512's
    assert native_attention.takes_model(tiny_model(tokenizer, hidden_size=32)) == (native_attention.lanes() == 8)
    assert not native_attention.takes_model(tiny_model(tokenizer, hidden_size=64).double())
    assert not native_attention.takes_model(torch.nn.Linear(2, 2))
    with native_attention.disabled():
        assert not native_attention.takes_model(tiny_model(tokenizer, hidden_size=64))


def test_the_decode_loop_samples_the_same_tokens_through_the_kernel(kernel, monkeypatch, decode_with_joins, draws):
    """A tiny model with 16-dim heads (which both builds take): draws through the kernel and
    through torch's ops, the opening read once either way, have the same distributions."""
    from dpfusion_chains.core.engine import DPFusionEngine
    from dpfusion_chains.core.models import default_tokenizer

    tokenizer = default_tokenizer()
    engine = DPFusionEngine(tiny_model(tokenizer, seed=3, hidden_size=64), tokenizer, device="cpu",
                            detector="whole", model_name="tiny-random-llama-64")
    thresholds(monkeypatch, rows=2, tokens=8, saved=8)
    opening = list(range(10, 50))
    rows = {"a": [[1, *opening, 60, 61, 62], [1, *opening, 70, 71, 72, 73]],
            "b": [[1, *opening, 80], [1, *opening, 90]]}

    placements = []

    def run():
        requests = {name: DecodeRequest(rows=r, bound=0.05, order=4.0, max_new_tokens=6,
                                        generator=torch.Generator().manual_seed(seed))
                    for seed, (name, r) in enumerate(rows.items())}
        decode_with_joins(engine, requests, [(0, "a"), (2, "b")], watch=lambda b: placements.append(b.placement))
        return {name: r.generated for name, r in requests.items()}

    with native_attention.disabled(), draws.run("torch ops"):
        by_torch = run()
    assert any(p is not None for p in placements)          # torch's ops: rows placed by lead for the buckets
    placements.clear()
    answers = kernel_answers(monkeypatch)
    with draws.run("kernel"):
        by_kernel = run()
    assert answers and all(answers)
    assert placements and all(p is None for p in placements)  # the kernel reads each row where it starts
    assert by_kernel == by_torch
    draws.assert_close("torch ops", "kernel")
