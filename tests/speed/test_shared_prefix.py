"""Decode attention reading a shared opening once (core.shared_prefix): the attention each row
gets over its whole row, for left-padded rows and grouped heads, the rows after the opening read
in one bucket or two; used only where it pays and on a CPU; the decode loop finds the opening as
requests join and leave, and samples the same tokens with it as without. Each attention test
runs through torch's ops and through the compiled kernel (core.native_attention)."""

import pytest
import torch
from decode_attention_cases import rows_with_opening, sdpa_over_rows, thresholds

from dpfusion_chains.core import lean_decode, packing, shared_prefix
from dpfusion_chains.core.decode import DecodeBatch, DecodeRequest
from dpfusion_chains.core.shared_prefix import SharedPrefix, bucket_split


@pytest.mark.parametrize("leads, heads, kv_heads", [
    ([0, 5, 0, 9], 6, 3),      # left padding, grouped heads
    ([3, 3, 3], 4, 4),         # every row padded alike, one key head per query head
    ([0, 0], 2, 1),            # no padding
])
def test_each_row_gets_its_attention_over_its_whole_row(leads, heads, kv_heads, monkeypatch, attention_path):
    thresholds(monkeypatch, rows=2, tokens=1, saved=1)
    opening, width = 12, 30
    keys, values, mask = rows_with_opening(leads, opening, width, kv_heads)
    query = torch.randn(len(leads), heads, 1, 16)
    plan = SharedPrefix.plan(leads, opening, mask, torch.float32)
    assert plan is not None and [b.region for b in plan.buckets] == [min(leads) + opening]  # one bucket
    out = plan.attention(query, keys, values, scale=0.25)
    full = sdpa_over_rows(query, keys, values, mask, 0.25)
    assert out.shape == query.shape and torch.allclose(out, full, atol=1e-5)


@pytest.mark.parametrize("leads", [[0, 2, 1, 30, 31, 30], [30, 0, 31, 2]])
def test_rows_read_in_two_buckets_get_their_attention_over_their_whole_row(leads, monkeypatch, attention_path):
    """Each bucket reads from the first column one of its rows needs; masked columns there (a
    later row's padding, zeros as the engine's are, and its copy of the opening) stay masked."""
    thresholds(monkeypatch, rows=2, tokens=1, saved=1)
    monkeypatch.setattr(shared_prefix, "BUCKET_COST", 0)
    opening, width = 12, 60
    keys, values, mask = rows_with_opening(leads, opening, width)
    keys, values = keys.nan_to_num(), values.nan_to_num()
    query = torch.randn(len(leads), 6, 1, 16)
    plan = SharedPrefix.plan(leads, opening, mask, torch.float32)
    split = bucket_split(leads, width - opening)
    assert [(b.first, b.end, b.region) for b in plan.buckets] == \
        [(0, split, min(leads[:split]) + opening), (split, len(leads), min(leads[split:]) + opening)]
    full = sdpa_over_rows(query, keys, values, mask, 0.25)
    assert torch.allclose(plan.attention(query, keys, values, scale=0.25), full, atol=1e-5)


def test_rows_are_cut_into_two_buckets_where_it_saves_more_than_a_bucket_costs():
    # eight long rows, then eight short ones, 220 columns after the opening: 3520 positions in one
    # bucket, 8 × 220 + 8 × 30 = 2000 in two
    assert bucket_split([0] * 8 + [190] * 8, 220) == 8
    assert bucket_split([0, 0, 2, 3] + [190] * 4, 220) == 4
    assert bucket_split([0] * 16, 220) is None                             # alike: nothing to save
    assert bucket_split([0, 190] * 8, 220) is None                         # alternating: a cut saves too little
    # saving exactly BUCKET_COST positions is not enough: 2 rows × 256 columns
    assert shared_prefix.BUCKET_COST == 512
    assert bucket_split([0, 0, 256, 256], 400) is None
    assert bucket_split([0, 0, 257, 257], 400) == 2


def test_the_cut_is_the_cheapest_of_all_cuts():
    """bucket_split against reading every cut's positions out (random leads, any order)."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        rows = int(torch.randint(1, 20, (1,), generator=gen))
        leads = torch.randint(0, 300, (rows,), generator=gen).tolist()
        width = max(leads) + int(torch.randint(1, 400, (1,), generator=gen))
        reads = {None: rows * (width - min(leads)) - shared_prefix.BUCKET_COST}
        reads.update({k: k * (width - min(leads[:k])) + (rows - k) * (width - min(leads[k:])) for k in range(1, rows)})
        best = min(reads.values())
        split = bucket_split(leads, width)
        assert reads[split] == best and (split is None or reads[None] > best)


@pytest.mark.parametrize("buckets", [1, 2])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_rows_are_attended_in_float32(dtype, buckets, monkeypatch, attention_path):
    """Scores and softmax in float32, the output rounded once: at least as close to float64
    attention over the same (rounded) inputs as SDPA's own half-precision kernel (scores rounded to
    bfloat16 before the softmax were ~4× further off), in one bucket of rows or two."""
    thresholds(monkeypatch, rows=2, tokens=1, saved=1)
    monkeypatch.setattr(shared_prefix, "BUCKET_COST", 10**9 if buckets == 1 else 0)
    leads, opening, width, heads, kv_heads = [0, 5, 0, 9] * 4, 120, 330, 9, 3
    keys, values, mask = rows_with_opening(leads, opening, width, kv_heads, dim=64)
    keys = keys * 2
    query = (torch.randn(len(leads), heads, 1, 64) * 2).to(dtype)
    keys, values = keys.nan_to_num().to(dtype), values.nan_to_num().to(dtype)
    plan = SharedPrefix.plan(leads, opening, mask, dtype)
    assert len(plan.buckets) == buckets
    out = plan.attention(query, keys, values, scale=0.125)

    exact = sdpa_over_rows(query.double(), keys.double(), values.double(), mask, 0.125)
    ours = (out.double() - exact).abs().max().item()
    sdpa = (sdpa_over_rows(query, keys, values, mask, 0.125).double() - exact).abs().max().item()
    assert out.dtype == dtype and ours <= sdpa


def test_masked_columns_inside_a_rows_own_part_stay_masked(monkeypatch, attention_path):
    """The boolean mask is the authority on every column: masked ones inside a row's own part
    (which the engine's layouts do not make) stay masked."""
    thresholds(monkeypatch, rows=2, tokens=1, saved=1)
    keys, values, mask = rows_with_opening([0, 0], 8, 20, kv_heads=2)
    mask[1, 8:12] = False
    keys[1, :, 8:12] = 1e4                                   # would dominate if attended
    query = torch.randn(2, 2, 1, 16)
    out = SharedPrefix.plan([0, 0], 8, mask, torch.float32).attention(query, keys, values, scale=0.25)
    assert torch.allclose(out, sdpa_over_rows(query, keys, values, mask, 0.25), atol=1e-5)


def test_it_is_planned_only_where_it_pays_and_on_a_cpu():
    mask = torch.ones(4, 700, dtype=torch.bool)
    assert SharedPrefix.plan([0] * 4, 256, mask, torch.float32) is not None                 # 3 × 256 saved
    assert SharedPrefix.plan([0] * 4, 128, mask, torch.float32) is None                     # 3 × 128 < MIN_SAVED
    assert SharedPrefix.plan([0] * 3, 600, mask[:3], torch.float32) is None                 # too few rows
    assert SharedPrefix.plan([0] * 16, shared_prefix.MIN_TOKENS - 1, torch.ones(16, 300, dtype=torch.bool),
                             torch.float32) is None                                         # a short opening
    assert SharedPrefix.plan([0] * 4, 256, mask.to("meta"), torch.float32) is None          # not a CPU


def request(rows, seed, n=6):
    return DecodeRequest(rows=rows, bound=0.05, order=4.0, max_new_tokens=n,
                         generator=torch.Generator().manual_seed(seed))


OPENING = list(range(10, 50))                                 # 40 tokens every row starts with
ROWS = [[1, *OPENING, 60, 61, 62], [1, *OPENING, 70, 71, 72, 73, 74, 75]]
OTHER = [[1, *OPENING, 80, 81], [1, *OPENING, 90]]
ELSEWHERE = [[1, 5, 6, 7, 8], [1, 5, 9]]


def decode_all(engine, joins, decode_with_joins):
    """Run requests to the end, joining at the given steps: their tokens, and the batch's opening
    after each join and step."""
    requests = {name: request(rows, seed) for name, (rows, seed) in
                {"a": (ROWS, 1), "b": (OTHER, 2), "c": (ELSEWHERE, 3)}.items()}
    openings = []
    decode_with_joins(engine, requests, joins, watch=lambda batch: openings.append(batch.opening))
    return {name: r.generated for name, r in requests.items() if r.generated}, openings


def test_the_decode_loop_samples_the_same_tokens_reading_the_opening_once(engine, monkeypatch, decode_with_joins,
                                                                         draws, torch_attention):
    """Through torch's ops, where the thresholds decide (the compiled kernel is always planned)."""
    assert packing.supports(engine.model)
    lean_decode.for_model(engine.model)  # its one probe step first: only the loop's steps are recorded
    used = []
    real = SharedPrefix.attention
    monkeypatch.setattr(SharedPrefix, "attention", lambda self, *a, **k: used.append(self.length) or real(self, *a, **k))
    monkeypatch.setattr(shared_prefix, "MIN_SAVED", 10**9)   # never pays: every step reads each row whole
    joins = [(0, "a"), (2, "b"), (1, "c")]
    with draws.run("apart"):
        apart, _ = decode_all(engine, joins, decode_with_joins)
    assert used == []
    thresholds(monkeypatch, rows=2, tokens=8, saved=8)
    with draws.run("once"):
        once, openings = decode_all(engine, joins, decode_with_joins)
    assert once == apart and set(once) == {"a", "b", "c"}
    draws.assert_close("apart", "once")
    # a and b share 41 tokens (<bos> and the opening); c opens otherwise: one token in common, too few
    assert openings[:2] == [41, 41] and 1 in openings
    assert used and set(used) == {41}
    # the rows after the opening read in two buckets wherever a cut saves anything at all
    buckets = []
    monkeypatch.setattr(SharedPrefix, "attention", lambda self, *a, **k: buckets.append(len(self.buckets))
                        or real(self, *a, **k))
    monkeypatch.setattr(shared_prefix, "BUCKET_COST", -10**9)
    with draws.run("buckets"):
        in_buckets, _ = decode_all(engine, joins, decode_with_joins)
    assert in_buckets == apart and buckets and set(buckets) == {2}
    draws.assert_close("apart", "buckets")


def test_with_the_compiled_kernel_every_step_is_planned_and_samples_the_same_tokens(engine, monkeypatch,
                                                                                   decode_with_joins, draws):
    """Where core.native_attention takes the model, every decode step's attention is its one call
    per layer: two rows, one shared token, no thresholds. The same tokens as SDPA over whole rows."""
    from decode_attention_cases import kernel_answers

    from dpfusion_chains.core import native_attention

    if not native_attention.takes_model(engine.model):
        pytest.skip(f"the compiled kernel does not take this model here: {native_attention.unavailable_reason()}")
    monkeypatch.setattr(shared_prefix, "MIN_SAVED", 10**9)   # torch's ops would never read it once
    lean_decode.for_model(engine.model)  # its one probe step first: only the loop's steps are recorded
    joins = [(0, "a"), (2, "b"), (1, "c")]
    with native_attention.disabled(), draws.run("sdpa"):
        apart, _ = decode_all(engine, joins, decode_with_joins)
    planned = []
    real = SharedPrefix.attention
    monkeypatch.setattr(SharedPrefix, "attention",
                        lambda self, *a, **k: planned.append((len(self.leads), self.length)) or real(self, *a, **k))
    answers = kernel_answers(monkeypatch)
    with draws.run("kernel"):
        through, openings = decode_all(engine, joins, decode_with_joins)
    assert through == apart and set(through) == {"a", "b", "c"}
    draws.assert_close("sdpa", "kernel")
    assert answers and all(answers)
    # a alone (2 rows, its 41-token opening), a and b (4 rows), then with c (6 rows, 1 token shared)
    assert (2, 41) in planned and (4, 41) in planned and (6, 1) in planned and 1 in openings
    layers = engine.model.config.num_hidden_layers
    assert len(planned) == len(answers) and len(planned) % layers == 0


def test_the_compiled_kernel_is_planned_for_any_rows_and_opening():
    mask = torch.ones(2, 50, dtype=torch.bool)
    for leads, length in (([0], 0), ([0, 3], 0), ([0, 0], 1), ([0, 0], 40)):
        plan = SharedPrefix.plan(leads, length, mask[:len(leads)], torch.float32, compiled=True)
        assert plan is not None and (plan.leads, plan.length) == (tuple(leads), length)
        assert SharedPrefix.plan(leads, length, mask[:len(leads)], torch.float32) is None  # torch's ops: too few
    assert SharedPrefix.plan([0, 0], 40, mask.to("meta"), torch.float32, compiled=True) is None  # not a CPU
    assert SharedPrefix.plan([], 0, mask[:0], torch.float32, compiled=True) is None


def test_the_opening_is_found_again_as_requests_join_and_leave(engine):
    with torch.inference_mode():
        batch = DecodeBatch(engine.model, engine.tokenizer, engine.device)
        batch.add([request(ROWS, 1, n=2)])
        assert batch.opening == 41
        batch.add([request(ELSEWHERE, 3, n=4)])
        assert batch.opening == 1
        batch.step(), batch.step()                           # the first request leaves
        assert len(batch.requests) == 1 and batch.opening == 2  # <bos>, 5: all ELSEWHERE's rows share
