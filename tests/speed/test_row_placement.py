"""The decode batch places its cache's rows by lead (core.row_placement): tokens go in and logits
come out in logical order through joins and leaves, and a request samples from the distributions
it would sample from alone."""

import torch

from dpfusion_chains.core import shared_prefix
from dpfusion_chains.core.decode import DecodeBatch, DecodeRequest
from dpfusion_chains.core.row_placement import RowPlacement, by_lead, compacted


def request(rows, seed, n):
    return DecodeRequest(rows=rows, bound=0.05, order=4.0, max_new_tokens=n,
                         generator=torch.Generator().manual_seed(seed))


# public views shorter than their private ones: in request order, leads alternate
LONG_SHORT = [[1, 5, 6, 7, 8, 9, 10, 11, 12], [1, 5, 20, 21]]
SHORT_LONG = [[1, 30, 31], [1, 30, 40, 41, 42, 43, 44, 45]]
EVEN = [[1, 50, 51, 52, 53], [1, 50, 60, 61, 62]]


def test_a_placement_maps_rows_both_ways_and_the_identity_is_none():
    assert RowPlacement.of([0, 1, 2], torch.device("cpu")) is None
    placement = RowPlacement.of([2, 0, 1], torch.device("cpu"))
    logical = torch.tensor([10, 11, 12])                       # a value per logical row
    physical = logical[placement.to_physical]
    assert physical.tolist() == [12, 10, 11]                   # physical row p holds logical row logical[p]
    assert physical[placement.to_logical].tolist() == [10, 11, 12]


def test_rows_are_ordered_by_lead_stably():
    assert by_lead([3, 3, 0, 6, 0]) == [2, 4, 0, 1, 3]


def test_compaction_moves_only_rows_past_the_new_end_into_the_places_left():
    placement = RowPlacement.of([2, 0, 3, 1, 5, 4], torch.device("cpu"))
    # logical rows 0 and 2 leave (physical rows 1 and 0); the others become logical 0..3 in the
    # order 1, 3, 4, 5: physical rows 2 and 3 stay where they are, rows 4 and 5 take places 0 and 1
    physical, logical = compacted(placement, [1, 3, 4, 5])
    assert physical == [4, 5, 2, 3] and logical == [3, 2, 1, 0]


def test_the_batch_places_rows_by_lead_through_joins_and_leaves(engine, draws, decode_with_joins, torch_attention):
    """Alternating long and short views are placed in the cache by lead at every join, requests
    leave it in any order, and every request's draws are the ones it makes alone (with torch's
    ops computing the attention: the compiled kernel needs no placement)."""
    specs = {"a": (LONG_SHORT, 1, 3), "b": (SHORT_LONG, 2, 6), "c": (EVEN, 3, 4)}
    for name, spec in specs.items():
        with draws.run("alone"):
            decode_with_joins(engine, {name: request(*spec)}, [(0, [name])])
    leads = []
    with draws.run("together"), torch.inference_mode():
        batch = DecodeBatch(engine.model, engine.tokenizer, engine.device)
        batch.add([request(*specs[name]) for name in ("a", "b")])
        # a's rows (9 and 4 tokens), then b's (3 and 8), right-aligned at 9: leads 0, 5, 6, 1
        assert batch.placement is not None and batch.placement.logical == (0, 3, 1, 2)
        assert batch.lead == [0, 1, 5, 6]
        batch.step()
        batch.add([request(*specs["c"])])
        assert batch.lead == sorted(batch.lead)                  # sorted again when c joined
        while batch.requests:
            leads.append(list(batch.lead))
            assert sorted(batch.placement.logical if batch.placement else range(batch.rows)) == list(range(batch.rows))
            batch.step()
    assert len({len(x) for x in leads}) == 3                  # 6 rows, then 4 (a left), then 2 (c left)
    draws.assert_close("alone", "together")


def test_rows_stay_in_logical_order_where_they_are_not_read_in_buckets(engine, monkeypatch):
    monkeypatch.setattr(shared_prefix, "MIN_ROWS", 5)        # four rows: too few to share an opening
    with torch.inference_mode():
        batch = DecodeBatch(engine.model, engine.tokenizer, engine.device)
        batch.add([request(LONG_SHORT, 1, 2), request(SHORT_LONG, 2, 2)])
    assert batch.placement is None and batch.lead == [0, 5, 6, 1]
