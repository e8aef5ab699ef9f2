"""The fast decode paths give the results of the plain ones: shared prefix, joining a running
batch, requests leaving it, probability-space mixing, the KV cache. The scheduler's packing of
concurrent calls is in test_scheduler.py, padded decode steps in test_padded_decode.py."""

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch

from dpfusion_chains.core import packing
from dpfusion_chains.core.decode import DecodeBatch, DecodeRequest, compaction_order, decode
from dpfusion_chains.core.fusion import fuse, mixture_logprobs
from dpfusion_chains.core.kvcache import ReservedCache, assemble, new_cache
from dpfusion_chains.core.params import make_settings
from dpfusion_chains.core.prefill import Prefilled
from dpfusion_chains.core.spans import private
from dpfusion_chains.core.steps import StepPlan, mix_rows, public_masses, public_rows
from dpfusion_chains.testing import tiny_engine


def ask(record, unit="rec-7"):
    return [{"role": "system", "content": "Answer from the record."},
            {"role": "user", "content": ["Record: ", private(record, unit=unit), "\nWhen was she admitted?"]}]


def request(rows, seed, n=12, bound=0.05):
    return DecodeRequest(rows=rows, bound=bound, order=4.0, max_new_tokens=n,
                         generator=torch.Generator().manual_seed(seed))


ROWS_A = [[1, 520, 9531, 198, 40, 1000, 2000], [1, 520, 9531, 198, 41, 42, 43, 44, 45, 46, 47]]
ROWS_B = [[1, 77, 300, 301, 302], [1, 77, 300, 9, 9, 9], [1, 77, 5]]
ROWS_C = [[1, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100]]


def run_alone(engine, rows, seed, n=12):
    req = request(rows, seed, n)
    list(decode(engine.model, engine.tokenizer, [req], engine.device))
    return req.generated


def prefill_forwards(engine, rows):
    """(input shape, logits positions kept) of every model forward that prefilling `rows` makes."""
    calls = []
    model = engine.model
    original = model.forward

    def counting(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append((tuple(kwargs["input_ids"].shape), out.logits.shape[1]))
        return out

    model.forward = counting
    try:
        with torch.inference_mode():
            DecodeBatch(model, engine.tokenizer, engine.device).add([request(rows, 0)])
    finally:
        del model.forward
    return calls


def test_shared_prefix_is_computed_once_then_every_suffix_in_one_packed_forward(engine):
    shared = 4  # [1, 520, 9531, 198]
    # the views' suffixes end to end in one row: no padding computed, each one's last position kept
    assert prefill_forwards(engine, ROWS_A) == [((1, shared), 1), ((1, len(ROWS_A[0]) + len(ROWS_A[1]) - 2 * shared), 2)]


@pytest.mark.parametrize("rows, packed, unpacked", [
    # equal suffix lengths: one forward of three rows without packing
    ([[1, 520, 9531, 198, 40, 1000, 2000], [1, 520, 9531, 198, 41, 42, 43], [1, 520, 9531, 198, 5, 6, 7]],
     [((1, 4), 1), ((1, 9), 3)], [((1, 4), 1), ((3, 3), 1)]),
    # lengths 7, 7, 5: without packing a copy of the prefix expanded to two rows, then one row
    ([[1, 520, 9531, 198, 40, 1000, 2000], [1, 520, 9531, 198, 41, 42, 43], [1, 520, 9531, 198, 5]],
     [((1, 4), 1), ((1, 7), 3)], [((1, 4), 1), ((2, 3), 1), ((1, 1), 1)]),
])
@pytest.mark.parametrize("packed_attention", [True, False])
def test_every_row_gets_the_logits_it_would_get_alone(engine, rows, packed, unpacked, packed_attention):
    if not packed_attention:
        packing.uninstall(engine.model)  # models whose attention cannot run packed
    try:
        assert prefill_forwards(engine, rows) == (packed if packed_attention else unpacked)
        with torch.inference_mode():
            batch = DecodeBatch(engine.model, engine.tokenizer, engine.device)
            batch.add([request(rows, 0)])
            for i, row in enumerate(rows):
                alone = engine.model(input_ids=torch.tensor([row])).logits[0, -1]
                assert torch.allclose(batch.logits[i], alone, atol=1e-4), i
    finally:
        packing.install(engine.model)


def test_prefill_without_a_mergeable_cache_pads_the_suffixes_and_decodes_the_same(engine, monkeypatch):
    """Models whose cache cannot be assembled keep the padded suffix pass, and the scheduler gives
    each of their requests a loop of its own; tokens do not change."""
    import dpfusion_chains.core.decode as decode_module
    from dpfusion_chains.core import kvcache

    with_merge = [run_alone(engine, rows, seed) for rows, seed in ((ROWS_A, 1), (ROWS_B, 2))]
    calls = [(ask("Jane Roe"), 1), (ask("Bob Stone, born 1990", "u2"), 2)]
    batched = [r.token_ids for r in engine.generate_batch([{"messages": m, "seed": s} for m, s in calls],
                                                          beta=0.05, max_new_tokens=6)]
    monkeypatch.setattr(kvcache, "_full_attention_layers", lambda model: None)  # as for a sliding-window model
    assert kvcache.new_cache(engine.model) is None and not kvcache.supports_reserved_cache(engine.model)
    assert [run_alone(engine, rows, seed) for rows, seed in ((ROWS_A, 1), (ROWS_B, 2))] == with_merge
    # the scheduler decodes such requests one loop each, never two in one cache
    assert [r.token_ids for r in engine.generate_batch([{"messages": m, "seed": s} for m, s in calls],
                                                       beta=0.05, max_new_tokens=6)] == batched
    with pytest.raises(RuntimeError, match="cannot take new requests mid-loop"):
        decode_module.prefill(engine.model, [request(ROWS_A, 1), request(ROWS_B, 2)], 0, engine.device)


@pytest.mark.parametrize("joins", [
    [(0, "a"), (3, "b"), (1, "c")],   # each at a step boundary, b's prompt longer than a's context so far
    [(0, "a"), (2, "bc")],            # b and c in one merge, into a running batch
])
def test_joining_a_running_batch_changes_no_token(engine, joins, decode_with_joins, draws):
    with draws.run("alone"):
        alone = [run_alone(engine, rows, seed) for rows, seed in ((ROWS_A, 1), (ROWS_B, 2), (ROWS_C, 3))]
    reqs = {"a": request(ROWS_A, 1), "b": request(ROWS_B, 2), "c": request(ROWS_C, 3)}
    with draws.run("joined"):
        decode_with_joins(engine, reqs, joins)
    assert [reqs[name].generated for name in "abc"] == alone
    draws.assert_close("alone", "joined")


def test_a_failing_request_leaves_its_batch_companions_alone(monkeypatch):
    import dpfusion_chains.core.decode as decode_module
    from dpfusion_chains.core.errors import PrivacyAuditError

    engine = tiny_engine(seed=1)
    honest = engine.generate(ask("Bob", "u2"), beta=0.05, max_new_tokens=6, seed=5).token_ids
    real = decode_module.search_lambda

    def broken(*args, **kwargs):  # λ = 1 for every group row: fails any audited request
        lam, div = real(*args, **kwargs)
        return lam.new_ones(lam.shape), div

    monkeypatch.setattr(decode_module, "search_lambda", broken)
    audited = request([[1, 520, 40], [1, 520, 41, 42]], 0, bound=1e-6)
    audited.audit = True
    plain = request([[1, 77, 5]], 9)
    with torch.inference_mode():
        batch = DecodeBatch(engine.model, engine.tokenizer, engine.device)
        batch.add([audited, plain])
        events = batch.step()
    assert isinstance(events[0][3], PrivacyAuditError) and events[0][2] and audited.generated == []
    assert events[1][3] is None and len(plain.generated) == 1
    monkeypatch.setattr(decode_module, "search_lambda", real)
    assert engine.generate(ask("Bob", "u2"), beta=0.05, max_new_tokens=6, seed=5).token_ids == honest


def test_probability_space_mixing_is_the_uniform_mixture():
    gen = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(7, 300, generator=gen, dtype=torch.float64) * 3, -1)
    reqs = [request([[1]] * 4, 0), request([[1]], 1), request([[1]] * 2, 2)]   # G = 3, 0, 1: rows 0-3, 4, 5-6
    plan = StepPlan.build(reqs, torch.device("cpu"))
    plan.public_weights = plan.public_weights.double()
    plan.inverse_groups = plan.inverse_groups.double()
    lam = torch.tensor([0.3, 0.0, 1.0, 0.6], dtype=torch.float64)
    mixed = mix_rows(logp.exp(), lam, plan)
    want0 = fuse(mixture_logprobs(lam[:3], logp[1:4], logp[0].expand(3, -1))).exp()
    want2 = fuse(mixture_logprobs(lam[3:], logp[6:7], logp[5:6])).exp()
    assert torch.allclose(mixed[0], want0, atol=1e-12) and torch.allclose(mixed[2], want2, atol=1e-12)
    assert torch.equal(mixed[1], logp[4].exp())  # no groups: the public distribution, bit for bit


def test_mixing_requests_of_one_size_adds_their_rows_as_index_add_does():
    """One sum over [R, rows, V] when every request has as many rows: bit for bit the index_add_
    of mixed sizes, so a request's distribution does not depend on its companions' sizes."""
    gen = torch.Generator().manual_seed(1)
    for rows in (2, 3, 5, 9):
        reqs = [request([[1]] * rows, i) for i in range(3)]
        plan = StepPlan.build(reqs, torch.device("cpu"))
        probs = torch.softmax(torch.randn(3 * rows, 49152, generator=gen) * 4, -1)
        lam = torch.rand(3 * (rows - 1), generator=gen)
        assert plan.rows_each == rows
        summed = mix_rows(probs.clone(), lam, plan)
        plan.rows_each = None
        assert torch.equal(summed, mix_rows(probs, lam, plan))
    assert StepPlan.build([request([[1]] * 2, 0), request([[1]] * 3, 1)], torch.device("cpu")).rows_each is None


def test_one_mixing_request_reads_its_public_row_without_copies():
    """The search's public rows are a view of the one mixing request's row: the same values, the
    same masses, as the copies made when several requests mix."""
    gen = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(6, 3000, generator=gen) * 3, -1)
    alone = StepPlan.build([request([[7]], 0), request([[1]] * 5, 1)], torch.device("cpu"))  # rows 0 | 1-5
    assert alone.one_public_row == 1 and alone.group_public_rows.tolist() == [1] * 4
    view, masses = public_rows(probs.log(), alone), public_masses(probs, alone)
    assert view.stride(0) == 0 and torch.equal(view, probs.log()[[1] * 4])
    alone.one_public_row = None  # the general path: copies
    assert torch.equal(public_rows(probs.log(), alone), view) and torch.equal(public_masses(probs, alone), masses)
    both = StepPlan.build([request([[1]] * 2, 0), request([[1]] * 4, 1)], torch.device("cpu"))
    assert both.one_public_row is None


@pytest.mark.parametrize("reserve", [0, 3, 50])
def test_reserved_cache_matches_the_default_cache(engine, reserve):
    cache = new_cache(engine.model, reserve)
    assert isinstance(cache, ReservedCache)
    ids = torch.tensor([[1, 520, 9531, 198, 40, 1000, 2000, 7, 8]])
    with torch.inference_mode():
        reference = engine.model(input_ids=ids).logits[0, -1]
        out = engine.model(input_ids=ids[:, :5], past_key_values=cache, use_cache=True)
        for t in range(5, ids.shape[1]):
            out = engine.model(input_ids=ids[:, t:t + 1], past_key_values=out.past_key_values, use_cache=True)
    assert cache.length == ids.shape[1]
    assert torch.allclose(out.logits[0, -1], reference, atol=1e-4)


def test_decode_generator_resumed_on_other_threads_gives_the_same_tokens(engine):
    """Inference mode is not held across yields: each next() may run on a different thread."""
    expected = run_alone(engine, ROWS_A, seed=5)
    req = request(ROWS_A, 5)
    steps = decode(engine.model, engine.tokenizer, [req], engine.device)
    with ThreadPoolExecutor(max_workers=3) as pool:
        while pool.submit(next, steps, None).result() is not None:
            pass
    assert req.generated == expected
    assert not torch.is_inference_mode_enabled()


def _filled_cache(rows, length, reserve, seed):
    """A 2-layer ReservedCache with `rows` rows of `length` random positions."""
    gen = torch.Generator().manual_seed(seed)
    cache = ReservedCache(2, reserve)
    for layer in cache.layers:
        layer.update(torch.randn(rows, 2, length, 4, generator=gen), torch.randn(rows, 2, length, 4, generator=gen))
    return cache


def _prefilled(cache, reserve):
    """A Prefilled whose rows are `cache`'s rows, whole."""
    n, length = cache.layers[0].keys.shape[0], cache.length
    return Prefilled(torch.ones(n, length, dtype=torch.bool), [0] * n, torch.full((n, 1), length - 1),
                     torch.zeros(n, 5), segments=[[(cache, r, 0, length)] for r in range(n)], reserve=reserve)


def test_joining_a_running_batch_assembles_every_row_once_left_padded_with_room(engine, torch_attention):
    """With torch's ops computing the attention: their buckets read the opening from rows sorted
    by lead (the compiled kernel reads each row where it lies: test_native_attention.py)."""
    parts = [_filled_cache(2, 5, 0, 0), _filled_cache(1, 8, 0, 1), _filled_cache(3, 2, 0, 2)]
    originals = [[(l.keys.clone(), l.values.clone()) for l in p.layers] for p in parts]
    batch = DecodeBatch(engine.model, engine.tokenizer, engine.device)
    pending = [(SimpleNamespace(rows=[[0] * p.length] * p.layers[0].keys.shape[0]), _prefilled(p, reserve))
               for p, reserve in zip(parts, (3, 1, 6))]
    batch.join(pending[:1])  # the first request alone, then two joining the running batch in one copy
    batch.join(pending[1:])
    assert batch.cache.length == 8 and batch.cache.layers[0].reserve == 6 and batch.padded
    # the cache holds the rows by lead (core.row_placement): row r of the batch is the cache's where[r]
    assert batch.lead == [0, 3, 3, 6, 6, 6] and batch.placement.logical == (2, 0, 1, 3, 4, 5)
    where = batch.placement.to_logical.tolist()
    assert [batch.lead[where[r]] for r in range(6)] == [3, 3, 0, 6, 6, 6]
    assert batch.mask.tolist() == [[c >= lead for c in range(8)] for lead in batch.lead]
    for i, layer in enumerate(batch.cache.layers):
        assert layer._keys.shape == (6, 2, 8 + 6, 4)  # room for the largest reserve after the widest
        start = 0
        for p, original in zip(parts, originals):
            keys, values = original[i]
            n, length = keys.shape[0], keys.shape[2]
            rows = where[start:start + n]
            assert torch.equal(layer.keys[rows][:, :, 8 - length:], keys)
            assert torch.equal(layer.values[rows][:, :, 8 - length:], values)
            assert not layer.keys[rows][:, :, :8 - length].any()       # masked padding: zeros
            assert not layer.values[rows][:, :, :8 - length].any()
            start += n
        assert not layer._keys[:, :, 8:].any()


def test_assembled_rows_hold_the_named_positions_right_aligned():
    """Runs of rows taken alike from consecutive rows are copied as one block; every other row on
    its own, its segments end to end."""
    a, b = _filled_cache(3, 5, 0, 3), _filled_cache(1, 3, 0, 4)
    rows = [[(a, 0, 0, 5)], [(a, 1, 0, 5)], [(b, 0, 0, 3)], [(a, 2, 1, 4), (b, 0, 0, 2)]]
    out = assemble(rows, reserve=2)
    assert out.length == 5
    for layer, la, lb in zip(out.layers, a.layers, b.layers):
        assert layer._keys.shape == (4, 2, 5 + 2, 4) and not layer._keys[:, :, 5:].any()
        assert torch.equal(layer.keys[:2], la.keys[:2])
        assert not layer.keys[2, :, :2].any() and torch.equal(layer.keys[2, :, 2:], lb.keys[0])
        assert torch.equal(layer.values[3], torch.cat([la.values[2, :, 1:4], lb.values[0, :, :2]], dim=1))


def test_a_request_whose_prefill_fails_is_the_only_one_to_fail(monkeypatch):
    """The scheduler prefills arrivals together; when that fails, one by one, and merges those
    that made it."""
    engine = tiny_engine(seed=1)
    expected = [engine.generate(ask(name, unit), beta=0.05, max_new_tokens=5, seed=s).token_ids
                for name, unit, s in (("Jane Roe", "u1", 1), ("Tom Poe", "u3", 3))]
    real = DecodeBatch.prefill

    def failing(self, reqs):
        if any(req.max_new_tokens == 4 for req in reqs):
            raise MemoryError("no room for this request")
        return real(self, reqs)

    monkeypatch.setattr(DecodeBatch, "prefill", failing)
    requests = [engine._prepare(ask(name, unit), make_settings(beta=0.05, max_new_tokens=n, seed=s), None, None,
                                None).request
                for name, unit, n, s in (("Jane Roe", "u1", 5, 1), ("Bob Stone", "u2", 4, 2), ("Tom Poe", "u3", 5, 3))]
    tickets = engine._scheduler.submit(requests)
    tickets[0].wait()
    with pytest.raises(MemoryError, match="no room"):
        tickets[1].wait()
    tickets[2].wait()
    assert [requests[0].generated, requests[2].generated] == expected


@pytest.mark.parametrize("sizes, gone, order", [
    ([2, 2, 2, 2], {0}, [3, 1, 2]),          # the last request takes the leaving one's rows
    ([2, 2, 2, 2], {3}, [0, 1, 2]),          # leaving from the end: nothing moves
    ([2, 2, 2, 2], {0, 1}, [3, 2]),
    ([2, 3, 2], {1}, [0, 2]),                # no staying request of size 3: the rest shift down
    ([2, 2, 3, 2], {0, 1}, [3, 2]),          # one gap filled, the other closed by shifting
    ([1, 2, 1, 2], {0, 1, 2, 3}, []),
])
def test_compaction_moves_the_fewest_rows_and_none_later(sizes, gone, order):
    assert compaction_order(sizes, gone) == order
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    new_row = 0
    for i in order:  # no request's rows move to a later place (the in-place copy relies on it)
        assert new_row <= starts[i]
        new_row += sizes[i]


def test_move_rows_copies_in_place_and_keeps_the_rest():
    cache = _filled_cache(6, 5, 3, 0)
    before = [(l.keys.clone(), l._keys.data_ptr()) for l in cache.layers]
    cache.move_rows([(0, 4), (1, 5), (3, 5)], 4)   # runs, and a run cut where it would overlap
    for layer, (keys, pointer) in zip(cache.layers, before):
        assert layer._keys.data_ptr() == pointer and layer.keys.shape[0] == 4   # same buffer
        assert torch.equal(layer.keys, torch.stack([keys[4], keys[5], keys[2], keys[5]]))


def test_requests_leaving_out_of_order_keep_their_tokens(engine, draws):
    """Equal-size requests finishing at different steps: later ones take the leavers' rows."""
    rows = [[[1, 520, 9531, 198, 40 + i], [1, 520, 9531, 198, 41, 42 + i, 43]] for i in range(4)]
    lengths = [3, 9, 5, 12]
    with draws.run("alone"):
        alone = [run_alone(engine, r, seed, n) for seed, (r, n) in enumerate(zip(rows, lengths))]
    reqs = [request(r, seed, n) for seed, (r, n) in enumerate(zip(rows, lengths))]
    with torch.inference_mode(), draws.run("batched"):
        batch = DecodeBatch(engine.model, engine.tokenizer, engine.device)
        batch.add(reqs)
        orders = []
        while batch.requests:
            batch.step()
            orders.append([reqs.index(r) for r in batch.requests])
    assert [r.generated for r in reqs] == alone
    draws.assert_close("alone", "batched")
    assert [3, 1, 2] in orders  # request 0 left first and request 3 took its rows
