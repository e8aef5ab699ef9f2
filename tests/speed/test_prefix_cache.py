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
    short, long = PUBLIC[:20] + [1], PUBLIC[:30] + [7, 7]
    store.store(short, filled(short))
    store.store(long, filled(long, value=100.0))
    hit = store.lookup(PUBLIC[:30] + [9, 9, 9], reserve=5)
    assert hit.length == 30 and hit.cache.length == 30 and hit.cache.layers[0].reserve == 5 and hit.logits is None
    assert torch.equal(hit.cache.layers[0].keys[0, 0, :, 0], 100.0 + torch.arange(30.0))
    hit.cache.layers[0].keys.zero_()  # the caller writes into its copy: the stored entry is untouched
    again = store.lookup(long + [3], reserve=0).cache
    assert torch.equal(again.layers[0].keys[0, 0, :, 0], 100.0 + torch.arange(32.0))
    assert (store.hits, store.misses) == (2, 0)


def test_a_view_stored_whole_comes_back_with_its_logits_otherwise_its_last_token_is_left():
    store = PrefixCache(1000)
    logits = torch.randn(11)
    store.store(PUBLIC, filled(PUBLIC), logits=logits)
    exact = store.lookup(PUBLIC, reserve=0)
    assert exact.length == len(PUBLIC) and torch.equal(exact.logits, logits)
    logits.zero_()  # the store kept its own copy
    assert not torch.equal(store.lookup(PUBLIC, reserve=0).logits, logits)
    # a shorter view, fully inside the stored one: its last token must still be computed
    inside = store.lookup(PUBLIC[:25], reserve=0)
    assert inside.length == 24 and inside.logits is None
    store.store(PUBLIC[:30], filled(PUBLIC[:30]))  # no logits: never "exact"
    assert store.lookup(PUBLIC[:30], reserve=0).length == 29


def test_store_copies_the_given_row_only():
    cache = ReservedCache(1)
    keys = torch.arange(3.0)[:, None, None, None].expand(3, 2, len(PUBLIC), 4).contiguous()
    cache.update(keys, -keys, 0)
    store = PrefixCache(1000)
    store.store(PUBLIC, cache, row=1)
    stored = store.lookup(PUBLIC + [0], reserve=0).cache
    assert stored.layers[0].keys.shape[0] == 1 and (stored.layers[0].keys == 1.0).all()


def test_short_matches_and_an_empty_store_miss():
    store = PrefixCache(1000)
    assert store.lookup(PUBLIC, reserve=0) is None
    store.store(PUBLIC, filled(PUBLIC))
    assert store.lookup(PUBLIC[:MIN_MATCH - 1] + [0] * 30, reserve=0) is None
    assert store.lookup(PUBLIC[:MIN_MATCH] + [0], reserve=0).length == MIN_MATCH
    store.store(PUBLIC[:MIN_MATCH - 1], filled(PUBLIC[:MIN_MATCH - 1]))  # too short to keep
    assert store.tokens == len(PUBLIC)


def test_the_token_budget_evicts_the_least_recently_used_and_prefixes_of_a_new_entry_go():
    store = PrefixCache(100)
    a, b, c = [1] * 40, [2] * 40, [3] * 40
    store.store(a, filled(a))
    store.store(b, filled(b))
    store.lookup(a + [0], reserve=0)  # a is now the most recently used
    store.store(c, filled(c))         # 120 > 100: b goes
    assert store.lookup(b + [0], reserve=0) is None and store.lookup(a + [0], reserve=0).length == 40
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


def test_only_the_public_view_is_stored_and_later_requests_compute_only_the_rest():
    engine = tiny_engine(seed=0)
    store = PrefixCache(1000)
    public_view, private_view = PUBLIC + [5, 6, 7, 8], PUBLIC + [900, 901, 902, 903, 904, 905]
    shapes, _ = prefill(engine, store, [public_view, private_view])
    assert shapes == [(1, 40), (1, 4 + 6)]  # the prefix, then both suffixes packed
    # stored: the public view, whole; nothing of the private view past the shared prefix
    assert [e.tokens for e in store._entries] == [tuple(public_view)]
    # another record behind the same public opening: the shared 40 tokens come from the store
    second = [PUBLIC + [11, 12], PUBLIC + [950, 951, 952]]
    shapes, logits = prefill(engine, store, second)
    assert shapes == [(1, 2 + 3)]
    cold_shapes, cold_logits = prefill(engine, None, second)
    assert cold_shapes == [(1, 40), (1, 2 + 3)]
    assert torch.allclose(logits, cold_logits, atol=1e-5)
    # the same public view again (the same question of another record): no public token computed,
    # the stored logits are the public row's
    third = [public_view, PUBLIC + [960, 961, 962]]
    shapes, logits = prefill(engine, store, third)
    assert shapes == [(1, 3)]
    assert torch.allclose(logits, prefill(engine, None, third)[1], atol=1e-5)
    # a public view that continues a stored one (the next turn): only its new tokens are computed
    fourth = [public_view + [70, 71, 72], PUBLIC + [980, 981]]
    shapes, logits = prefill(engine, store, fourth)
    assert shapes == [(1, 3 + 2)]  # the public view from its stored 44 tokens, the private from 40
    assert torch.allclose(logits, prefill(engine, None, fourth)[1], atol=1e-5)
    assert tuple(public_view + [70, 71, 72]) in [e.tokens for e in store._entries]
    assert not any(t >= 900 for e in store._entries for t in e.tokens)


def test_a_public_only_request_reuses_and_keeps_its_view():
    engine = tiny_engine(seed=0)
    store = PrefixCache(1000)
    assert prefill(engine, store, [PUBLIC + [5, 6]])[0] == [(1, 42)]
    shapes, logits = prefill(engine, store, [PUBLIC + [5, 6, 7]])
    assert shapes == [(1, 1)]
    assert torch.allclose(logits, prefill(engine, None, [PUBLIC + [5, 6, 7]])[1], atol=1e-5)


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
