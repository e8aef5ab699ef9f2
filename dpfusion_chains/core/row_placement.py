"""Where a decode batch keeps each row in its KV cache: ordered by lead, not by request.

The decode loop's rows are logical: a request's rows together, requests in batch order (the
fused step's index plan and the mixture rely on it). Nothing in a forward needs that order,
since each row attends only to itself. On a CPU, core.shared_prefix reads the columns after a
shared opening in buckets of consecutive rows, each from the first column one of its rows needs;
with public views shorter than private ones, rows in request order alternate long and short and
no bucket saves anything. So the cache, the mask, the leads and the positions are kept in
physical order, the rows sorted by lead whenever requests join (a new cache is assembled then
anyway), and a forward takes its tokens in that order and hands its logits back in logical order
(two index ops on [rows] and [rows, vocabulary]). When requests leave, rows from the end fill
their places (`compacted`), as few rows copied as before: eight staggered requests of
`batch_bench --staggered` spent 0.03–0.04 s leaving this way, 0.06 s with every later row moved up
to keep the order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RowPlacement:
    """Physical row p of the cache holds logical row `logical[p]`."""

    logical: tuple[int, ...]
    to_physical: torch.Tensor   # [B]: logical row of each physical row (tokens[to_physical] → physical order)
    to_logical: torch.Tensor    # [B]: physical row of each logical row (logits[to_logical] → logical order)

    @classmethod
    def of(cls, logical: list[int], device: torch.device) -> RowPlacement | None:
        """The placement `logical` describes; None when it is the identity (nothing to reorder)."""
        if logical == list(range(len(logical))):
            return None
        to_physical = torch.tensor(logical, dtype=torch.long, device=device)
        return cls(tuple(logical), to_physical, torch.argsort(to_physical))


def by_lead(leads: list[int]) -> list[int]:
    """Rows in order of their leads (stable): long rows first, then shorter and shorter ones."""
    return sorted(range(len(leads)), key=leads.__getitem__)


def compacted(placement: RowPlacement, keep: list[int]) -> tuple[list[int], list[int]]:
    """The rows left when only the logical rows `keep` stay (new logical row i = old `keep[i]`):
    (the old physical row of each new physical row, its new logical row). Rows past the end of
    the smaller cache move into the places of rows that left, so only they are copied (as
    core.decode.compaction_order does for requests); the lead order then holds except for them,
    until the next join sorts the cache again."""
    new_index = {old: new for new, old in enumerate(keep)}
    stay = [p for p, row in enumerate(placement.logical) if row in new_index]
    arrangement = list(range(len(stay)))
    holes = [p for p in arrangement if placement.logical[p] not in new_index]
    for hole, mover in zip(holes, [p for p in stay if p >= len(stay)]):
        arrangement[hole] = mover
    return arrangement, [new_index[placement.logical[p]] for p in arrangement]


__all__ = ["RowPlacement", "by_lead", "compacted"]
