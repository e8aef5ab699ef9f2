"""The compiled decode step (static cache, one graph) gives the eager step's tokens.

Most tests trace with dynamo's "eager" backend: the same graph capture and static-cache
bookkeeping, without inductor's minutes of C++ compilation. One slow test runs inductor itself."""

import logging

import pytest
import torch

from dpfusion_chains.core.compiled import (CAPACITY_STEP, CompiledForward, CompiledSearch, StaticBatch,
                                          wants_compile)
from dpfusion_chains.core.decode import DecodeBatch, DecodeRequest
from dpfusion_chains.core.fusion import search_lambda, search_limits
from dpfusion_chains.core.spans import private
from dpfusion_chains.testing import tiny_engine

ROWS_A = [[1, 520, 9531, 198, 40, 1000, 2000], [1, 520, 9531, 198, 41, 42, 43, 44, 45, 46, 47]]
ROWS_B = [[1, 77, 300, 301, 302], [1, 77, 300, 9, 9, 9], [1, 77, 5]]
ROWS_C = [[1, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100]]


def request(rows, seed, n):
    return DecodeRequest(rows=rows, bound=0.05, order=4.0, max_new_tokens=n,
                         generator=torch.Generator().manual_seed(seed))


def run_joined(engine, compiled, lengths=(14, 5, 9)):
    """A joins, B joins after 3 steps, C after 4; they finish at different steps (rows leave)."""
    reqs = [request(rows, seed, n) for rows, seed, n in zip((ROWS_A, ROWS_B, ROWS_C), (1, 2, 3), lengths)]
    with torch.inference_mode():
        batch = DecodeBatch(engine.model, engine.tokenizer, engine.device, compiled=compiled)
        batch.add([reqs[0]])
        for _ in range(3):
            batch.step()
        batch.add([reqs[1]])
        batch.step()
        batch.add([reqs[2]])
        while batch.requests:
            batch.step()
    return [r.generated for r in reqs]


@pytest.fixture(scope="module")
def engine():
    return tiny_engine(seed=0)


def test_auto_compiles_on_cuda_only_and_bad_values_are_refused():
    assert wants_compile("auto", torch.device("cpu")) is False
    assert wants_compile("auto", torch.device("cuda")) is True
    assert wants_compile(True, torch.device("cpu")) is True and wants_compile(False, torch.device("cuda")) is False
    with pytest.raises(ValueError, match="compile must be True, False or 'auto'"):
        wants_compile("yes", torch.device("cpu"))
    with pytest.raises(ValueError, match="compile must be"):
        tiny_engine(compile="fast")
    assert tiny_engine().compiled is None and tiny_engine(compile=True).compiled is not None


def test_static_steps_give_the_eager_tokens_while_requests_join_and_leave(engine, draws):
    with draws.run("eager"):
        eager = run_joined(engine, None)
    traced = CompiledForward(engine.model, backend="eager")
    with draws.run("static"):
        assert run_joined(engine, traced) == eager
    draws.assert_close("eager", "static")
    assert not traced.broken and traced._ran


def test_inductor_on_cpu_freezes_weights_only_inside_its_own_calls(engine):
    """CPU + inductor: the module is compiled in max-autotune mode, and inductor's `freezing`
    (read when a graph is built) is on during the compiled calls only."""
    import torch._inductor.config as inductor_config

    tuned = CompiledForward(engine.model)
    assert tuned.cpu_tuned and not CompiledForward(engine.model, backend="eager").cpu_tuned
    assert not CompiledForward(engine.model, mode="default").cpu_tuned  # an explicit mode is kept
    seen = []

    def recording(**kwargs):
        seen.append(inductor_config.freezing)
        return engine.model(**kwargs)

    tuned._fn = recording  # the eager model stands in for the graph: same calls, no compile time
    assert run_joined(engine, tuned) == run_joined(engine, None)
    assert seen and all(seen) and not inductor_config.freezing


def test_batches_over_the_row_limit_decode_eagerly(engine):
    """A batch with more rows than `max_rows` takes the eager step; it returns to the graph
    once requests have left. Tokens are the eager ones throughout."""
    traced = CompiledForward(engine.model, backend="eager")
    assert traced.max_rows is None and CompiledForward(engine.model).max_rows == 8
    rows_seen = []
    real = traced._fn

    def recording(**kwargs):
        rows_seen.append(kwargs["input_ids"].shape[0])
        return real(**kwargs)

    traced._fn = recording
    traced.max_rows = 3  # rows: A alone 2, A+B 5, A+B+C 6, A+C 3 once B has left, A alone again 2
    assert run_joined(engine, traced) == run_joined(engine, None)
    assert set(rows_seen) == {2, 3}  # the 5- and 6-row steps ran eagerly


def test_freeze_and_thaw_keep_the_cache_and_mask(engine):
    batch = DecodeBatch(engine.model, engine.tokenizer, engine.device,
                        compiled=CompiledForward(engine.model, backend="eager"))
    with torch.inference_mode():
        batch.add([request(ROWS_B, 0, 40)])
        keys, mask = batch.cache.layers[0].keys.clone(), batch.mask.clone()
        batch.step()
        static = batch.static
        assert static is not None and static.capacity % CAPACITY_STEP == 0 and static.length == mask.shape[1] + 1
        assert torch.equal(static.cache.layers[0].keys[:, :, :mask.shape[1]], keys)
        assert not static.mask[:, static.length:].any()   # slots not yet written stay masked
        # the graph reads the additive form of the same mask: 0 where attended, −inf elsewhere
        assert torch.equal(static.additive[:, 0, 0] == 0, static.mask) and static.additive.dtype == engine.model.dtype
        # plain graph inputs: a static-address tensor would be folded in as a constant under
        # frozen weights, and the next batch's buffers ignored
        layer = static.cache.layers[0]
        assert not any(hasattr(t, "_dynamo_static_input_type")
                       for t in (layer.keys, layer.values, layer.cumulative_length))
        batch._thaw()
    assert batch.static is None and batch.cache.length == mask.shape[1] + 1
    assert torch.equal(batch.mask[:, :-1], mask) and batch.mask[:, -1].all()
    assert torch.equal(batch.cache.layers[0].keys[:, :, :mask.shape[1]], keys)


def test_a_full_static_cache_is_frozen_again_with_more_room(engine, monkeypatch):
    monkeypatch.setattr("dpfusion_chains.core.compiled.CAPACITY_STEP", 1)  # capacity = exactly the room asked
    eager = run_joined(engine, None, lengths=(6, 6, 6))
    sizes = []
    real_init = StaticBatch.__init__

    def recording(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        sizes.append(self.capacity)

    monkeypatch.setattr(StaticBatch, "__init__", recording)
    assert run_joined(engine, CompiledForward(engine.model, backend="eager"), lengths=(6, 6, 6)) == eager
    assert len(sizes) >= 3  # refrozen at each join and leave


def test_a_graph_that_fails_to_build_falls_back_to_eager(engine, caplog):
    eager = run_joined(engine, None)
    broken = CompiledForward(engine.model, backend="eager")

    def fail(**kwargs):
        raise RuntimeError("backend compiler failed: no C++ compiler")

    broken._fn = fail
    with caplog.at_level(logging.WARNING, logger="dpfusion_chains.core.compiled"):
        assert run_joined(engine, broken) == eager
    assert broken.broken and "decoding eagerly" in caplog.text


def test_a_failure_after_the_graph_ran_is_raised(engine):
    compiled = CompiledForward(engine.model, backend="eager")
    real, calls = compiled._fn, []

    def fail_on_third(**kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory")
        return real(**kwargs)

    compiled._fn = fail_on_third
    with pytest.raises(RuntimeError, match="out of memory"):
        run_joined(engine, compiled)


def test_shapes_past_the_recompile_limit_decode_eagerly(engine, caplog):
    """Dynamo builds one graph per batch shape up to its recompile limit and then, with
    fullgraph, raises: those shapes step eagerly (warned once each), the others keep their graph."""
    import torch._dynamo

    eager = run_joined(engine, None)
    torch._dynamo.reset()
    traced = CompiledForward(engine.model, backend="eager")
    rows_run = []
    real = traced._fn

    def recording(**kwargs):
        out = real(**kwargs)
        rows_run.append(kwargs["input_ids"].shape[0])
        return out

    traced._fn = recording
    with caplog.at_level(logging.WARNING, logger="dpfusion_chains.core.compiled"), \
            torch._dynamo.config.patch(recompile_limit=1):
        assert run_joined(engine, traced) == eager
    torch._dynamo.reset()
    assert set(rows_run) == {2}  # A alone: the one graph; 5, 6 and 3 rows were refused
    assert {rows for rows, _ in traced.eager_shapes} == {5, 6, 3} and not traced.broken
    assert caplog.text.count("recompile limit") == len(traced.eager_shapes)


@pytest.mark.slow
def test_inductor_graph_gives_the_eager_tokens_on_cpu(draws):
    """The real compiled path (inductor, float32 CPU): same seed, same tokens as eager, drawn from
    the same distributions up to rounding."""
    eager_engine = tiny_engine(seed=3)
    compiled_engine = tiny_engine(seed=3, compile=True)
    messages = [{"role": "user", "content": ["Record: ", private("Jane Roe, born 1961", unit="r1"),
                                             "\nWhen was she born?"]}]
    batch = [{"messages": messages, "seed": 7, "max_new_tokens": 12},
             {"messages": messages, "seed": 8, "max_new_tokens": 6}]
    with draws.run("eager"):
        want = [r.token_ids for r in eager_engine.generate_batch(batch, beta=0.05)]
    with draws.run("compiled"):
        got = [r.token_ids for r in compiled_engine.generate_batch(batch, beta=0.05)]
    assert got == want
    draws.assert_close("eager", "compiled", tolerance=1e-5)
    # a second call reuses the graphs with new cache buffers (they must be inputs, not constants)
    again = [{**item, "seed": item["seed"] + 10} for item in batch]
    want = [r.token_ids for r in eager_engine.generate_batch(again, beta=0.05)]
    assert [r.token_ids for r in compiled_engine.generate_batch(again, beta=0.05)] == want
    assert compiled_engine.compiled._ran and not compiled_engine.compiled.broken


def random_logps(rows: int, vocab: int = 500, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    private_lp = torch.log_softmax(3 * torch.randn(rows, vocab, generator=g), dim=-1)
    public_lp = torch.log_softmax(3 * torch.randn(rows, vocab, generator=g), dim=-1)
    return private_lp, public_lp, torch.full((rows,), 0.05), torch.full((rows,), 2.0)


def test_the_lambda_search_compiles_as_one_graph_for_any_number_of_rows():
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    search = CompiledSearch(counting_backend)
    for rows in (3, 5, 2, 7):  # fullgraph: a graph break would raise; dynamic: no graph per row count
        args = random_logps(rows, seed=rows)
        # as a decode step calls it
        given = {"public_mass": args[1].exp().sum(-1), "limits": search_limits(args[2], args[3], rows)}
        got, want = search(*args, **given), search_lambda(*args)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert len(graphs) == 1 and not search.broken


def test_a_lambda_search_that_fails_to_compile_is_answered_eagerly(caplog):
    search = CompiledSearch("eager")
    calls = []

    def fail(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("backend compiler failed: no C++ compiler")

    search._fn = fail
    args = random_logps(4)
    with caplog.at_level(logging.WARNING, logger="dpfusion_chains.core.compiled"):
        for _ in range(2):
            got, want = search(*args), search_lambda(*args)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert search.broken and len(calls) == 1 and "searching eagerly" in caplog.text


def test_compiled_steps_search_with_the_compiled_search_off_the_cpu_tuned_path(engine):
    assert CompiledForward(engine.model).search is None  # CPU + inductor: the search stays eager
    traced = CompiledForward(engine.model, backend="eager")
    calls = []
    compiled_search = traced.search

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return compiled_search(*args, **kwargs)

    traced.search = counting
    assert run_joined(engine, traced) == run_joined(engine, None)
    assert calls and max(calls) == 3  # A's and B's group rows together (C has no group)
