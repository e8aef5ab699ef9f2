"""The public-prefix store: what it keeps (public tokens only), what it hands back (the longest
match, as an independent copy), its bounds, and that a prefill from it gives the logits of a
cold one while computing only the rest of the prompt."""

import pytest
import torch

from dpfusion_chains.core.decode import DecodeBatch, DecodeRequest
from dpfusion_chains.core.kvcache import ReservedCache
from dpfusion_chains.core.prefix_cache import MIN_MATCH, PrefixCache
from dpfusion_chains.core.spans import private
from dpfusion_chains.testing import tiny_engine

PUBLIC = list(range(100, 140))  # 40 public tokens shared by every request below


def filled(tokens, value=0.0, layers=2):
    """A one-row ReservedCache whose keys at position i hold value + i (values: minus that)."""
    cache = ReservedCache(layers)
    positions = torch.arange(len(tokens), dtype=torch.float32)
    keys = (value + positions)[None, None, :, None].expand(1, 2, -1, 4).contiguous()
    for i in range(layers):
        cache.update(keys, -keys, i)
    return cache


def request(rows, seed=0, n=4):
    return DecodeRequest(rows=rows, bound=0.05, order=4.0, max_new_tokens=n,
                         generator=torch.Generator().manual_seed(seed))


def test_lookup_returns_the_longest_match_as_an_independent_copy_with_the_callers_reserve():
    store = PrefixCache(1000)
    short, long = PUBLIC[:20], PUBLIC[:30] + [7, 7]
    store.store(short + [1], filled(short + [1]))
    store.store(long, filled(long, value=100.0))
    matched, cache = store.lookup(PUBLIC[:30] + [9, 9, 9], reserve=5)
    assert matched == 30 and cache.length == 30 and cache.layers[0].reserve == 5
    assert torch.equal(cache.layers[0].keys[0, 0, :, 0], 100.0 + torch.arange(30.0))
    cache.layers[0].keys.zero_()  # the caller writes into its copy: the stored entry is untouched
    again = store.lookup(long, reserve=0)[1]
    assert torch.equal(again.layers[0].keys[0, 0, :, 0], 100.0 + torch.arange(32.0))
    assert (store.hits, store.misses) == (2, 0)


def test_short_matches_and_an_empty_store_miss():
    store = PrefixCache(1000)
    assert store.lookup(PUBLIC, reserve=0) == (0, None)
    store.store(PUBLIC, filled(PUBLIC))
    assert store.lookup(PUBLIC[:MIN_MATCH - 1] + [0] * 30, reserve=0) == (0, None)
    assert store.lookup(PUBLIC[:MIN_MATCH] + [0], reserve=0)[0] == MIN_MATCH
    store.store(PUBLIC[:MIN_MATCH - 1], filled(PUBLIC[:MIN_MATCH - 1]))  # too short to keep
    assert store.tokens == len(PUBLIC)


def test_the_token_budget_evicts_the_least_recently_used_and_prefixes_of_a_new_entry_go():
    store = PrefixCache(100)
    a, b, c = [1] * 40, [2] * 40, [3] * 40
    store.store(a, filled(a))
    store.store(b, filled(b))
    store.lookup(a, reserve=0)  # a is now the most recently used
    store.store(c, filled(c))   # 120 > 100: b goes
    assert store.lookup(b, reserve=0) == (0, None) and store.lookup(a, reserve=0)[0] == 40
    store.store(a + [5] * 10, filled(a + [5] * 10))  # supersedes a
    assert store.tokens == 40 + 50
    store.store([4] * 101, filled([4] * 101))  # larger than the whole budget: not kept
    assert store.tokens == 90
    store.clear()
    assert store.tokens == 0


def test_a_negative_budget_is_refused():
    with pytest.raises(ValueError, match="prefix_cache_tokens must be ≥ 0"):
        PrefixCache(-1)
    with pytest.raises(ValueError, match="prefix_cache_tokens"):
        tiny_engine(prefix_cache_tokens=-5)
    assert tiny_engine(prefix_cache_tokens=0).prefixes is None


def prefill(engine, store, rows):
    """(forward input shapes, [rows, V] logits) of prefilling one request with `store`."""
    shapes = []
    model = engine.model
    original = model.forward

    def counting(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return original(*args, **kwargs)

    model.forward = counting
    try:
        with torch.inference_mode():
            batch = DecodeBatch(model, engine.tokenizer, engine.device, prefixes=store)
            batch.add([request(rows)])
    finally:
        del model.forward
    return shapes, batch.logits


def test_only_the_views_common_prefix_is_stored_and_a_later_request_computes_only_the_rest():
    engine = tiny_engine(seed=0)
    store = PrefixCache(1000)
    first = [PUBLIC + [5, 6, 7, 8], PUBLIC + [900, 901, 902, 903, 904, 905]]   # public view, private view
    shapes, _ = prefill(engine, store, first)
    assert shapes == [(1, 40), (1, 4), (1, 6)]
    # stored: the 40 common tokens; nothing of either view's suffix (the private text among them)
    assert [e.tokens for e in store._entries] == [tuple(PUBLIC)]
    second = [PUBLIC + [11, 12], PUBLIC + [950, 951, 952]]
    shapes, logits = prefill(engine, store, second)
    assert shapes == [(1, 2), (1, 3)]  # the prefix came from the store
    cold_shapes, cold_logits = prefill(engine, None, second)
    assert cold_shapes == [(1, 40), (1, 2), (1, 3)]
    assert torch.allclose(logits, cold_logits, atol=1e-5)
    # a longer common prefix reuses the stored 40 tokens and computes the next 3
    third = [PUBLIC + [60, 61, 62, 1], PUBLIC + [60, 61, 62, 970, 971]]
    assert prefill(engine, store, third)[0] == [(1, 3), (1, 1), (1, 2)]
    assert [e.tokens for e in store._entries] == [tuple(PUBLIC + [60, 61, 62])]  # supersedes PUBLIC


def test_a_request_without_private_views_is_never_stored():
    engine = tiny_engine(seed=0)
    store = PrefixCache(1000)
    prefill(engine, store, [PUBLIC + [5, 6]])
    assert store.tokens == 0


def test_engine_calls_reuse_the_public_prefix_and_keep_their_tokens():
    """Two calls over different private records with the same public opening: the second reuses
    the stored prefix; with or without the store the sampled tokens are the same."""
    background = "Background: the clinic's discharge policy applies to every ward and every shift. " * 4

    def ask(record, unit):
        return [{"role": "system", "content": "Answer from the records only."},
                {"role": "user", "content": [background, "Record: ", private(record, unit=unit), "\nWhen?"]}]

    calls = [(ask("Jane Roe admitted 2021-03-04", "a"), 1), (ask("Bob Stone admitted 2020-01-02", "b"), 2)]
    cached, uncached = tiny_engine(seed=3), tiny_engine(seed=3, prefix_cache_tokens=0)
    out = [[e.generate(m, seed=s, max_new_tokens=6, beta=0.05).text for m, s in calls] for e in (cached, uncached)]
    assert out[0] == out[1]
    assert cached.prefixes.hits >= 1 and cached.prefixes.tokens > 0
