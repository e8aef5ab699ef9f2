"""A KV cache for the decode loop: preallocated, assembled from several, trimmable.

transformers' DynamicLayer appends with torch.cat, which copies the whole cache of every layer
at every token (O(context) per token, ~10 % of a CPU step at 500 tokens and more with longer
contexts). `ReservedLayer` keeps keys/values in a buffer with room for the tokens still to come
and writes each new token in place. The decode loop also needs two operations transformers
does not have: assembling rows from several caches into one (the running batch and newly
prefilled requests, shorter rows left-padded and masked) and trimming columns that every row
masks.

Only models whose cache layers are all plain full-attention `DynamicLayer`s get this cache
(`new_cache` returns None otherwise and the caller keeps transformers' default): sliding-window
and linear-attention layers have state whose meaning depends on positions.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

# model → (its config object, the probe's answer): building the probe cache took ~0.27 ms, asked
# several times per request; probed again if the model's config object is replaced
_layer_counts: weakref.WeakKeyDictionary[Any, tuple[Any, int | None]] = weakref.WeakKeyDictionary()


class ReservedLayer(DynamicLayer):
    """A DynamicLayer whose tensors are views into a larger buffer (dim 2 = positions)."""

    def __init__(self, reserve: int = 0) -> None:
        super().__init__()
        self.reserve = reserve                     # positions to allocate beyond the first write
        self.length = 0
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def _set(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        self._keys, self._values, self.length = keys, values, length
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        new = key_states.shape[-2]
        end = self.length + new
        if self._keys is None or end > self._keys.shape[2] or self._keys.shape[0] != key_states.shape[0]:
            capacity = max(end + self.reserve, int(end * 1.25))
            keys = key_states.new_zeros(key_states.shape[:2] + (capacity, key_states.shape[3]))
            values = value_states.new_zeros(value_states.shape[:2] + (capacity, value_states.shape[3]))
            if self.length:
                keys[:, :, :self.length] = self.keys
                values[:, :, :self.length] = self.values
            self._keys, self._values = keys, values
        self._keys[:, :, self.length:end] = key_states
        self._values[:, :, self.length:end] = value_states
        self._set(self._keys, self._values, end)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        if tokens_to_remove and self.is_initialized:
            self._set(self._keys, self._values, max(0, self.length + tokens_to_remove))

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:
            self._set(self._keys.repeat_interleave(repeats, dim=0), self._values.repeat_interleave(repeats, dim=0),
                      self.length)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.length:
            self._set(self._keys[indices], self._values[indices], self.length)

    def move_rows(self, moves: list[tuple[int, int]], rows: int) -> None:
        """Copy row src into row dst for each (dst, src) (every dst below its src, ascending),
        then keep the first `rows` rows: in place, only the moved rows' positions copied."""
        if not self.length:
            return
        for dst, src, n in _runs(moves):
            for buffer in (self._keys, self._values):
                buffer[dst:dst + n, :, :self.length] = buffer[src:src + n, :, :self.length]
        self._set(self._keys[:rows], self._values[:rows], self.length)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def drop_front(self, columns: int) -> None:
        """Forget the first `columns` positions (masked in every row)."""
        if columns and self.length:
            keep = self.length - columns
            keys = self._keys.new_zeros(self._keys.shape[:2] + (keep + self.reserve, self._keys.shape[3]))
            values = self._values.new_zeros(self._values.shape[:2] + (keep + self.reserve, self._values.shape[3]))
            keys[:, :, :keep] = self._keys[:, :, columns:self.length]
            values[:, :, :keep] = self._values[:, :, columns:self.length]
            self._set(keys, values, keep)


class ReservedCache(DynamicCache):
    """A Cache of ReservedLayers (a DynamicCache subclass, so models treat it as one)."""

    def __init__(self, n_layers: int, reserve: int = 0) -> None:
        Cache.__init__(self, layers=[ReservedLayer(reserve) for _ in range(n_layers)])

    @property
    def length(self) -> int:
        return self.layers[0].length

    def set_reserve(self, reserve: int) -> None:
        for layer in self.layers:
            layer.reserve = reserve

    def drop_front(self, columns: int) -> None:
        for layer in self.layers:
            layer.drop_front(columns)

    def move_rows(self, moves: list[tuple[int, int]], rows: int) -> None:
        """ReservedLayer.move_rows on every layer (a batch losing requests keeps its buffers)."""
        for layer in self.layers:
            layer.move_rows(moves, rows)

    def adopt(self, buffers: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> None:
        """Use the given per-layer (keys, values) buffers, their first `length` positions filled
        (no copy; the compiled path hands its static buffers back this way)."""
        for layer, (keys, values) in zip(self.layers, buffers, strict=True):
            layer._set(keys, values, length)

    def copy(self, repeats: int = 1, length: int | None = None, reserve: int | None = None,
             row: int | None = None) -> ReservedCache:
        """An independent cache holding the same positions (the first `length` of them) of every
        row (or of row `row` alone), each `repeats` times, with our reserve for later writes
        unless `reserve` is given."""
        if reserve is None:
            reserve = self.layers[0].reserve if self.layers else 0
        twin = ReservedCache(len(self.layers), reserve)
        rows = slice(None) if row is None else slice(row, row + 1)
        for layer, mine in zip(twin.layers, self.layers):
            keep = mine.length if length is None else min(length, mine.length)
            if keep:  # repeat_interleave always copies, also for repeats=1
                layer._set(mine.keys[rows, :, :keep].repeat_interleave(repeats, dim=0),
                           mine.values[rows, :, :keep].repeat_interleave(repeats, dim=0), keep)
        return twin


Segment = tuple[ReservedCache, int, int, int]  # (cache, row, first position, end position)


def assemble(rows: list[list[Segment]], reserve: int = 0) -> ReservedCache:
    """A new cache whose row i holds the positions named by rows[i], end to end, right-aligned:
    rows shorter than the longest are left-padded with zeros (the caller masks them), and every
    row has room for `reserve` more positions."""
    lengths = [sum(end - start for _, _, start, end in segments) for segments in rows]
    width = max(lengths)
    blocks = _blocks(rows, [width - n for n in lengths])
    source = rows[0][0][0]
    out = ReservedCache(len(source.layers), reserve)
    for i, layer in enumerate(out.layers):
        buffers = []
        for name in ("keys", "values"):
            like = getattr(source.layers[i], name)
            buffer = like.new_empty((len(rows), like.shape[1], width + reserve, like.shape[3]))
            buffer[:, :, width:].zero_()  # room for later tokens: never read unwritten, zeroed all the same
            for dst, n, at, segments in blocks:
                buffer[dst:dst + n, :, :at].zero_()  # masked padding: zeros, never stale memory (0·NaN)
                for cache, row, start, end in segments:
                    source_rows = getattr(cache.layers[i], name)[row:row + n]
                    buffer[dst:dst + n, :, at:at + end - start] = source_rows[:, :, start:end]
                    at += end - start
            buffers.append(buffer)
        layer._set(buffers[0], buffers[1], width)
    return out


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, L] boolean (True = attend) -> [B, 1, 1, L] additive: 0 where attended, −inf elsewhere,
    in the model's dtype. The 4-D mask of a decode step over left-padded rows: transformers hands
    a 4-D mask to every layer as is, and its eager attention adds it to the scores (a boolean one
    would add 1 to every attended score and mask nothing); SDPA takes it as it would make it from
    a boolean one, in every layer."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))[:, None, None]


def _blocks(rows: list[list[Segment]], pads: list[int]) -> list[tuple[int, int, int, list[Segment]]]:
    """(first row, row count, padding, segments of the first row) for runs of consecutive rows
    that take the same positions of consecutive rows of the same caches: one copy per run."""
    blocks: list[tuple[int, int, int, list[Segment]]] = []
    for r, (segments, pad) in enumerate(zip(rows, pads)):
        if blocks:
            dst, n, at, first = blocks[-1]
            if at == pad and len(first) == len(segments) and all(
                    a[0] is b[0] and a[1] + n == b[1] and a[2:] == b[2:] for a, b in zip(first, segments)):
                blocks[-1] = (dst, n + 1, at, first)
                continue
        blocks.append((r, 1, pad, segments))
    return blocks


def _runs(moves: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(dst, src, n) blocks of consecutive row moves, none overlapping its own source."""
    runs: list[list[int]] = []
    for dst, src in moves:
        if runs and runs[-1][0] + runs[-1][2] == dst and runs[-1][1] + runs[-1][2] == src \
                and runs[-1][2] < src - dst:
            runs[-1][2] += 1
        else:
            runs.append([dst, src, 1])
    return [(d, s, n) for d, s, n in runs]


def _full_attention_layers(model: Any) -> int | None:
    """How many cache layers `model` has when all are plain full attention (DynamicLayer), else None."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    try:
        known = _layer_counts.get(model)
    except TypeError:  # not weakly referable: probe every time
        return _probe_layers(config)
    if known is None or known[0] is not config:
        known = (config, _probe_layers(config))
        _layer_counts[model] = known
    return known[1]


def _probe_layers(config: Any) -> int | None:
    try:
        probe = DynamicCache(config=config)
    except Exception:  # configs transformers cannot map to layer types: use its default cache
        return None
    if not probe.layers or any(type(layer) is not DynamicLayer for layer in probe.layers):
        return None
    return len(probe.layers)


def supports_reserved_cache(model: Any) -> bool:
    """Whether `model` gets a ReservedCache (and so can have caches assembled and trimmed)."""
    return _full_attention_layers(model) is not None


def new_cache(model: Any, reserve: int = 0) -> ReservedCache | None:
    """A ReservedCache for `model`, or None when its layers are not all plain full attention."""
    layers = _full_attention_layers(model)
    return None if layers is None else ReservedCache(layers, reserve)
