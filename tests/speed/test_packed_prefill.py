"""Packed prefill (core.packing, core.prefill): the suffixes of many views and requests in one
forward give every row the logits and keys/values it has alone; no piece sees another; a view
repeated across requests is computed once; every other call of the model is unchanged."""

import pytest
import torch

from dpfusion_chains.core import packing, prefill_attention
from dpfusion_chains.core import prefill as prefill_module
from dpfusion_chains.core.prefill import prefill_requests
from dpfusion_chains.testing import tiny_engine

OPEN = [1, 520, 9531, 198, 11, 12, 13]
REQUESTS = [
    [OPEN + [40, 41, 42], OPEN + [900, 901, 902, 903, 904]],          # public view, one group
    [OPEN + [40, 41, 42], OPEN + [910, 911]],                         # the same public view, another record
    [OPEN + [50], OPEN + [920, 921, 922], OPEN + [50, 930, 931]],     # two groups
    [[1, 77, 78, 79, 80]],                                            # public only, another opening
    [[1, 77, 300, 301], [1, 77, 600, 601, 602, 603]],                 # another opening, one group
]


def prefill_all(engine, requests, reserve=3):
    """(prefilled requests, (input shape, logits kept) of every forward, the packed forwards'
    pieces) of prefilling together."""
    calls, specs = [], []
    model = engine.model
    original = model.forward

    def counting(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append((tuple(kwargs["input_ids"].shape), out.logits.shape[1]))
        if kwargs.get("packed") is not None:
            specs.append(kwargs["packed"])
        return out

    model.forward = counting
    try:
        with torch.inference_mode():
            out = prefill_requests(model, [(rows, reserve) for rows in requests], 0, engine.device)
    finally:
        del model.forward
    return out, calls, specs


@pytest.mark.parametrize("min_queries", [prefill_attention.MIN_QUERIES, 1])
def test_requests_prefilled_together_get_what_each_row_has_alone(engine, monkeypatch, min_queries):
    """Also with every piece through core.prefill_attention's products (min_queries=1; these
    pieces are shorter than its MIN_QUERIES)."""
    monkeypatch.setattr(prefill_attention, "MIN_QUERIES", min_queries)
    used = []
    original = prefill_attention.piece_attention
    monkeypatch.setattr(prefill_attention, "piece_attention", lambda *a, **k: (used.append(1), original(*a, **k)))
    prefilled, _, _ = prefill_all(engine, REQUESTS)
    assert bool(used) == (min_queries == 1)
    with torch.inference_mode():
        for rows, p in zip(REQUESTS, prefilled):
            width = max(len(row) for row in rows)
            assert p.lead == [width - len(row) for row in rows]
            assert p.last_pos.flatten().tolist() == [len(row) - 1 for row in rows]
            assert p.mask.tolist() == [[c >= lead for c in range(width)] for lead in p.lead]
            for i, row in enumerate(rows):
                alone = engine.model(input_ids=torch.tensor([row]), use_cache=True)
                assert torch.allclose(p.logits[i], alone.logits[0, -1], atol=1e-4)
                for layer, own in zip(p.cache.layers, alone.past_key_values.layers):
                    assert torch.allclose(layer.keys[i, :, p.lead[i]:], own.keys[0], atol=1e-4)
                    assert torch.allclose(layer.values[i, :, p.lead[i]:], own.values[0], atol=1e-4)
                    assert not layer.keys[i, :, :p.lead[i]].any()  # padding: zeros, masked
            assert p.cache.layers[0]._keys.shape[2] == width + 3  # room for the tokens to come


def test_each_opening_is_computed_once_and_each_distinct_suffix_once(engine):
    _, calls, _ = prefill_all(engine, REQUESTS)
    assert calls == [
        ((1, 7), 1),   # OPEN, shared by requests 0-2
        ((1, 3 + 5 + 2 + 1 + 3 + 3), 6),  # their suffixes, the public view of requests 0 and 1 once
        ((1, 5), 1),   # request 3: no shared prefix
        ((1, 2), 1),   # [1, 77] of request 4
        ((1, 2 + 4), 2),
    ]


def test_no_piece_sees_another(engine):
    """Another record in request 1 (same length, so the same matrix shapes) changes nothing
    computed for any other request, bit for bit."""
    before, _, _ = prefill_all(engine, REQUESTS)
    changed = [list(r) for r in REQUESTS]
    changed[1] = [OPEN + [40, 41, 42], OPEN + [915, 916]]
    after, _, _ = prefill_all(engine, changed)
    assert not torch.equal(before[1].logits[1], after[1].logits[1])
    for r in (0, 2, 3, 4):
        assert torch.equal(before[r].logits, after[r].logits), r
        for a, b in zip(before[r].cache.layers, after[r].cache.layers):
            assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values), r
    assert torch.equal(before[1].logits[0], after[1].logits[0])  # its public view too


def test_packed_forwards_are_bounded_and_give_the_same_rows(engine, monkeypatch):
    packed, _, specs = prefill_all(engine, REQUESTS)
    assert [spec.lengths for spec in specs] == [(3, 5, 2, 1, 3, 3), (5,), (2, 4)]
    monkeypatch.setattr(prefill_module, "PACK_TOKENS", 4)
    split, _, specs = prefill_all(engine, REQUESTS)
    # 4 tokens at most, or one longer piece alone
    assert [spec.lengths for spec in specs] == [(3,), (5,), (2, 1), (3,), (3,), (5,), (2,), (4,)]
    for a, b in zip(packed, split):
        assert torch.allclose(a.logits, b.logits, atol=1e-4)


def test_a_shared_opening_long_enough_for_prefill_attention_is_one_packed_piece(engine, monkeypatch):
    """Openings of at least prefill_attention.MIN_QUERIES tokens (here 1) go through it as one
    piece over what the cache holds; the rows stay what they are."""
    before, _, _ = prefill_all(engine, REQUESTS)
    monkeypatch.setattr(prefill_attention, "MIN_QUERIES", 1)
    after, _, specs = prefill_all(engine, REQUESTS)
    assert [spec.lengths for spec in specs] == [(7,), (3, 5, 2, 1, 3, 3), (5,), (2,), (2, 4)]
    assert [(spec.base_length, spec.bases) for spec in specs if spec.lengths in ((7,), (2,))] == [(0, (0,))] * 2
    for a, b in zip(before, after):
        assert torch.allclose(a.logits, b.logits, atol=1e-4)


def test_kv_heads_repeated_before_sdpa_give_the_same_rows(engine, monkeypatch):
    """The GPU way of grouped-query attention (heads repeated, then masked SDPA), run here on the CPU."""
    assert engine.model.config.num_key_value_heads < engine.model.config.num_attention_heads
    in_kernel, _, _ = prefill_all(engine, REQUESTS)
    monkeypatch.setattr(packing, "_gqa_in_kernel", lambda device: False)
    repeated, _, _ = prefill_all(engine, REQUESTS)
    for a, b in zip(in_kernel, repeated):
        assert torch.allclose(a.logits, b.logits, atol=1e-5)


def test_unpacked_calls_compute_exactly_as_sdpa():
    engine = tiny_engine(seed=3)
    ids = torch.tensor([[1, 520, 9531, 198, 40, 41], [1, 77, 78, 79, 80, 81]])
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    with torch.inference_mode():
        assert packing.supports(engine.model)
        packed = engine.model(input_ids=ids, attention_mask=mask).logits
        packing.uninstall(engine.model)
        assert engine.model.config._attn_implementation == "sdpa"
        assert torch.equal(engine.model(input_ids=ids, attention_mask=mask).logits, packed)


def test_the_engine_switch_and_models_that_cannot_pack():
    assert tiny_engine(packed_prefill=False).model.config._attn_implementation == "sdpa"
    with pytest.raises(TypeError, match="packed_prefill must be True or False"):
        tiny_engine(packed_prefill="yes")
    engine = tiny_engine()
    engine.model.set_attn_implementation("eager")
    assert not packing.install(engine.model)  # only SDPA models switch; the others prefill unpacked
    with torch.inference_mode():
        prefilled = prefill_requests(engine.model, [(rows, 2) for rows in REQUESTS[:2]], 0, engine.device)
        assert torch.allclose(prefilled[0].logits[1], engine.model(input_ids=torch.tensor([REQUESTS[0][1]])).logits[0, -1],
                              atol=1e-4)


def test_attention_arguments_packing_cannot_apply_are_refused():
    q = torch.zeros(1, 2, 3, 4)
    spec = packing.PackedPieces.of(0, [(0, 3)])
    with pytest.raises(ValueError, match="softcap.*packed_prefill=False"):
        packing.packed_sdpa(torch.nn.Module(), q, q, q, None, packed=spec, softcap=30.0)
    with pytest.raises(ValueError, match="one row over a cache of 2 positions"):
        packing.packed_sdpa(torch.nn.Module(), q, q, q, None, packed=packing.PackedPieces.of(2, [(2, 3)]))


def test_the_same_tokens_as_prefilling_alone(engine, draws):
    """Decoding after a packed prefill of several requests gives each the tokens it gets alone."""
    from dpfusion_chains.core.decode import DecodeBatch, DecodeRequest

    def make(rows, seed):
        return DecodeRequest(rows=rows, bound=0.05, order=4.0, max_new_tokens=8,
                             generator=torch.Generator().manual_seed(seed))

    alone = []
    for seed, rows in enumerate(REQUESTS):
        req = make(rows, seed)
        with torch.inference_mode(), draws.run("alone"):
            batch = DecodeBatch(engine.model, engine.tokenizer, engine.device)
            batch.add([req])
            while batch.requests:
                batch.step()
        alone.append(req.generated)
    together = [make(rows, seed) for seed, rows in enumerate(REQUESTS)]
    with torch.inference_mode(), draws.run("together"):
        batch = DecodeBatch(engine.model, engine.tokenizer, engine.device)
        batch.add(together)
        while batch.requests:
            batch.step()
    assert [r.generated for r in together] == alone
    draws.assert_close("alone", "together")
