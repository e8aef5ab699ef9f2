"""The GPU path: half-precision weights with float32 fusion math, packed prefill, one host sync
per decode step, attention without cuDNN's kernel, and the compiled step and λ search that
`compile="auto"` turns on there. These run only where torch sees a CUDA GPU (CI has none);
everywhere else they are skipped with that reason."""

import warnings

import pytest
import torch

from dpfusion_chains.core.decode import DecodeBatch
from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.core.models import default_tokenizer
from dpfusion_chains.core.params import make_settings
from dpfusion_chains.core.prefill import prefill_requests
from dpfusion_chains.core.spans import private
from dpfusion_chains.testing import tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU: the GPU path is checked only where one is present")

OPEN = [1, 520, 9531, 198, 11, 12, 13]
REQUESTS = [
    [OPEN + [40, 41, 42], OPEN + [900, 901, 902, 903, 904]],
    [OPEN + [40, 41, 42], OPEN + [910, 911]],
    [OPEN + [50], OPEN + [920, 921, 922], OPEN + [50, 930, 931]],
    [[1, 77, 300, 301], [1, 77, 600, 601, 602, 603]],
]
MESSAGES = [{"role": "user", "content": ["Patient note: ", private("Alice Smith, born 1970, has diabetes."),
                                         " Summarise the note."]}]
TWO_UNITS = [{"role": "user", "content": ["Notes: ", private("Alice Smith, born 1970.", unit="alice"), " and ",
                                          private("Bob Jones has asthma.", unit="bob"), " Summarise them."]}]


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


def cuda_engine(tokenizer, dtype=torch.float32, **kwargs) -> DPFusionEngine:
    model = tiny_model(tokenizer, seed=0, hidden_size=64).to("cuda", dtype)
    kwargs.setdefault("compile", False)
    return DPFusionEngine(model, tokenizer, device="cuda", detector="whole", model_name="tiny-cuda", **kwargs)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-3), (torch.bfloat16, 6e-2)])
def test_packed_prefill_on_cuda_gives_each_row_its_own_logits_and_cache(tokenizer, dtype, atol):
    engine = cuda_engine(tokenizer, dtype)
    with torch.inference_mode():
        prefilled = prefill_requests(engine.model, [(rows, 3) for rows in REQUESTS], 0, engine.device)
        for rows, p in zip(REQUESTS, prefilled):
            for i, row in enumerate(rows):
                alone = engine.model(input_ids=torch.tensor([row], device="cuda"), use_cache=True)
                scale = alone.logits[0, -1].float().abs().max()
                assert (p.logits[i].float() - alone.logits[0, -1].float()).abs().max() <= atol * scale
                for layer, own in zip(p.cache.layers, alone.past_key_values.layers):
                    assert torch.allclose(layer.keys[i, :, p.lead[i]:].float(), own.keys[0].float(), atol=atol)
                    assert torch.allclose(layer.values[i, :, p.lead[i]:].float(), own.values[0].float(), atol=atol)


def test_half_precision_weights_mix_in_float32_and_pass_the_float64_audit(tokenizer):
    engine = cuda_engine(tokenizer, torch.bfloat16, audit=True)
    result = engine.generate(MESSAGES, beta=0.05, max_new_tokens=12, seed=3)
    assert result.tokens == len(result.token_ids) > 0 and result.groups == 1
    assert result.audit_margin is not None and result.audit_margin >= 0
    assert all(0.0 <= lam <= 1.0 for step in result.lambdas for lam in step)
    assert all(d <= result.bound + 1e-6 for step in result.divergences for d in step)


@pytest.mark.parametrize("graph_search", [False, "auto"])
def test_a_decode_step_synchronises_with_the_host_once(tokenizer, graph_search):
    engine = cuda_engine(tokenizer, torch.bfloat16, graph_search=graph_search)
    requests = [engine._prepare(MESSAGES, make_settings(beta=0.05, max_new_tokens=40, seed=i), None, None, None).request
                for i in range(3)]
    batch = DecodeBatch(engine.model, engine.tokenizer, engine.device, prefixes=engine.prefixes, search=engine.search)
    with torch.inference_mode():
        batch.add(requests)
        batch.step()  # the first step builds the step plan (host → device copies, once) and captures the search
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for _ in range(5):
                    batch.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(batch.requests) == 3
    assert len(syncs) == 5, syncs  # reading the sampled tokens for the stop check, nothing else


def test_compiled_steps_on_cuda_sample_the_eager_tokens(tokenizer):
    eager = cuda_engine(tokenizer)
    compiled = cuda_engine(tokenizer, compile="auto")
    assert compiled.compiled is not None  # "auto" compiles on a GPU
    want = eager.generate(MESSAGES, beta=0.05, max_new_tokens=10, seed=5)
    got = compiled.generate(MESSAGES, beta=0.05, max_new_tokens=10, seed=5)
    assert not compiled.compiled.broken
    assert got.token_ids == want.token_ids


def test_the_engines_forwards_never_run_cudnn_attention(tokenizer):
    from torch.profiler import ProfilerActivity, profile

    engine = cuda_engine(tokenizer, torch.bfloat16)
    requests = [engine._prepare(MESSAGES, make_settings(beta=0.05, max_new_tokens=20, seed=i), None, None, None).request
                for i in range(2)]
    batch = DecodeBatch(engine.model, engine.tokenizer, engine.device, prefixes=engine.prefixes)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        batch.add(requests)
        for _ in range(3):
            batch.step()
    names = {event.key for event in prof.key_averages()}
    assert any("scaled_dot_product" in name for name in names)
    assert not [name for name in names if "cudnn_attention" in name]


def search_inputs(rows: int, seed: int):
    """Random [rows, 49152] private and public log-probabilities on the GPU, bound 0.05, order 2:
    (positional arguments, and the keywords a decode step passes) of a λ search."""
    from dpfusion_chains.core.fusion import search_limits

    g = torch.Generator(device="cuda").manual_seed(seed)
    public = torch.log_softmax(3 * torch.randn(rows, 49152, device="cuda", generator=g), dim=-1)
    private_ = torch.log_softmax(public + torch.randn(rows, 49152, device="cuda", generator=g), dim=-1)
    bound, order = torch.full((rows,), 0.05, device="cuda"), torch.full((rows,), 2.0, device="cuda")
    return (private_, public, bound, order), {"public_mass": public.exp().sum(-1),
                                              "limits": search_limits(bound, order, rows, device="cuda")}


def test_the_compiled_lambda_search_on_cuda_keeps_every_row_within_its_bound():
    from dpfusion_chains.core.compiled import CompiledSearch
    from dpfusion_chains.core.fusion import mixture_logprobs, search_lambda, symmetric_renyi

    search = CompiledSearch()
    for rows in (3, 6):
        (private_, public, bound, order), _ = search_inputs(rows, seed=rows)
        lam, div = search(private_, public, bound, order)
        want, _ = search_lambda(private_, public, bound, order)
        assert not search.broken and torch.allclose(lam, want, atol=2e-2)
        exact = symmetric_renyi(mixture_logprobs(lam.double(), private_.double(), public.double()), public.double(), 2.0)
        assert (exact <= bound.double()).all() and (div.double() >= exact * (1 - 1e-4)).all()


@pytest.mark.parametrize("compiled", [False, True])
def test_the_graphed_lambda_search_replays_the_direct_search_bit_for_bit(compiled):
    from dpfusion_chains.core.compiled import CompiledSearch
    from dpfusion_chains.core.fusion import search_lambda
    from dpfusion_chains.core.graphed_search import GraphedSearch

    direct = CompiledSearch() if compiled else search_lambda
    graphed = GraphedSearch(direct, max_graphs=2)
    kept = []
    for rows, seed in [(3, 0), (3, 1), (6, 2), (3, 3), (1, 4), (6, 5)]:  # new inputs, shapes seen and unseen
        args, kwargs = search_inputs(rows, seed)
        got = graphed(*args, **kwargs)
        want = direct(*args, **kwargs)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        kept.append((got, want))
    assert not graphed.broken and graphed.captures == 4  # 3, 6, 1, then 6 again: two graphs are kept
    for got, want in kept:  # later replays do not overwrite the results a step keeps
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("compile_", [False, "auto"])
def test_engines_with_the_graphed_search_sample_the_tokens_of_those_without(tokenizer, compile_):
    graphed = cuda_engine(tokenizer, compile=compile_)
    direct = cuda_engine(tokenizer, compile=compile_, graph_search=False)
    assert graphed.search is not None and direct.search is None  # "auto" graphs on a GPU
    for seed in (5, 6):
        want = direct.generate(TWO_UNITS, beta=0.05, max_new_tokens=10, seed=seed)
        got = graphed.generate(TWO_UNITS, beta=0.05, max_new_tokens=10, seed=seed)
        assert got.groups == 2
        assert got.token_ids == want.token_ids and got.lambdas == want.lambdas
    assert graphed.search.captures >= 1 and not graphed.search.broken
