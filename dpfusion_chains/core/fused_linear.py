"""Sibling products as one: the query, key and value projections of an attention layer, and the
gate and up projections of a gated MLP, multiply the same input by different weights.

With their packed weights (core.matmul) stacked into one matrix, the first sibling's call makes
one oneDNN product for all of them and hands each later sibling its slice of the result. A decode
step then launches one product instead of three (and two), each streaming one larger packed
matrix. On the 2-core Zen 5 dev CPU this took a decode step of one request (2 rows) from 24.8 to
23.6 ms and one of eight requests (16 rows) from 50.0 to 49.4 ms (medians, joint and separate
products alternating in one process, the same sampled text). Prefills take the joint products
too: one request's 344 against 347 ms, eight requests' 1087 against 1115 ms (medians, both
ways' weights packed beforehand). Joining decode steps alone would keep a second packed copy of
these layers for prefills (278 MB more for SmolLM2-135M, most of a larger model's weights).

A later sibling takes the slice only when it is called, in order, on the very tensor the first
one was called on, in the same thread; anything else computes its own product as before, and a
group whose slices once went untaken computes apart from then on. Slices are views into the
joint result (their rows strided), so siblings are grouped only inside transformers' own
attention and MLP modules, which view a projection into heads or multiply it elementwise and
never need it contiguous. Like the packed products, this holds only inside the engine's forwards
(`core.matmul.active`) and not under torch.compile.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator

import torch
from torch import nn

from dpfusion_chains.core.matmul import (PackedLinear, PackKey, engaged, native_product, onednn_linear, pack_key,
                                         pack_weight, repack)

SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))

logger = logging.getLogger(__name__)
_pending = threading.local()  # .entry: the joint result of the last first-sibling call in this thread


class SiblingGroup:
    """Layers multiplying one input, in call order, and their stacked packed weight."""

    def __init__(self, members: list[nn.Module]) -> None:
        self._members = [weakref.ref(m) for m in members]  # no strong cycle through the registry
        self.sizes = [m.out_features for m in members]
        self._packed: tuple[PackKey, tuple[torch.Tensor, torch.Tensor | None] | None] | None = None
        self.apart = False  # set for good once later members did not take their slices

    def weight(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """(stacked packed weight, stacked bias), packed again when a member's weight or bias was
        replaced or changed in place; None when it cannot be packed (matmul.pack_key)."""
        members = [ref() for ref in self._members]
        if any(m is None for m in members):
            return None
        key = pack_key(tuple(t for m in members for t in (m.weight, m.bias) if t is not None))
        if key is None:
            return None
        if self._packed is None or self._packed[0] != key:
            def stacked() -> tuple[torch.Tensor, torch.Tensor | None]:
                weight = pack_weight(torch.cat([m.weight.detach() for m in members]))
                return weight, None if members[0].bias is None else torch.cat([m.bias.detach() for m in members])

            self._packed = repack(key, stacked, f"{len(members)} stacked layers", "they compute apart", logger)
        return self._packed[1]

    def product(self, index: int, x: torch.Tensor) -> torch.Tensor | None:
        """Member `index`'s output for `x`: from the joint product (computed by member 0), or
        None when the member must compute its own. A group whose later members once did not take
        their slices (a module calling them on other inputs, as cross-attention would) computes
        apart from then on, rather than making joint products half of which go unused."""
        if self.apart:
            return None
        entry = getattr(_pending, "entry", None)
        if index == 0:
            _pending.entry = None
            if entry is not None and entry[0] is self:  # the last joint product was not taken up
                return self._part_ways()
            stacked = self.weight()
            if stacked is None:
                return None
            joint = onednn_linear(x.reshape(-1, x.shape[-1]), *stacked)
            parts = joint.split(self.sizes, dim=1)
            _pending.entry = (self, x, parts, 1)
            return parts[0].view(*x.shape[:-1], self.sizes[0])
        if entry is None or entry[0] is not self:
            return None
        if entry[1] is not x or entry[3] != index:
            _pending.entry = None
            return self._part_ways()
        parts = entry[2]
        _pending.entry = (self, x, parts, index + 1) if index + 1 < len(parts) else None
        return parts[index].view(*x.shape[:-1], self.sizes[index])

    def _part_ways(self) -> None:
        self.apart = True
        logger.info("sibling layers (outputs %s) were not called in order on one input; they compute apart",
                    ", ".join(str(size) for size in self.sizes))
        return None


# member → (its group, its place in the call order); off the module, as core.matmul keeps its packs
_groups: weakref.WeakKeyDictionary[nn.Module, tuple[SiblingGroup, int]] = weakref.WeakKeyDictionary()


class FusedLinear(PackedLinear):
    """A PackedLinear whose product, inside the engine, may come from its sibling group's joint one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if engaged() and x.numel() and not (torch.is_grad_enabled() and self.weight.requires_grad):
            native = native_product(x, self.weight, self.bias)  # streams this weight alone, faster still
            if native is not None:
                return native
            place = _groups.get(self)
            if place is not None and x.dtype == self.weight.dtype:
                out = place[0].product(place[1], x)
                if out is not None:
                    return out
        return super().forward(x)


def install(model: nn.Module) -> int:
    """Group the packed sibling projections of transformers' attention and MLP modules (all
    members PackedLinear, one input size, biases all or none); returns how many groups."""
    count = 0
    for parent in model.modules():
        if not type(parent).__module__.startswith("transformers.models."):
            continue
        for names in SIBLINGS:
            members = [getattr(parent, name, None) for name in names]
            if not all(isinstance(m, PackedLinear) for m in members):
                continue
            if len({m.in_features for m in members}) > 1 or len({m.bias is None for m in members}) > 1 \
                    or len({(m.weight.dtype, m.weight.device) for m in members}) > 1:
                continue
            if all(m in _groups for m in members):
                continue  # installed by an earlier engine on this model
            group = SiblingGroup(members)
            for index, member in enumerate(members):
                member.__class__ = FusedLinear
                _groups[member] = (group, index)
            count += 1
    return count


@contextlib.contextmanager
def computing_apart(model: nn.Module) -> Iterator[None]:
    """For the duration, every group of `model` computes one product per member (each packing a
    copy of its own weight at its first product), its stacked weight kept for afterwards: the
    two ways side by side without packing either again."""
    groups: dict[int, SiblingGroup] = {}
    for module in model.modules():
        place = _groups.get(module)
        if place is not None:
            groups[id(place[0])] = place[0]
    before = {key: group.apart for key, group in groups.items()}
    for group in groups.values():
        group.apart = True
    try:
        yield
    finally:
        for key, group in groups.items():
            group.apart = before[key]


def uninstall(model: nn.Module) -> None:
    """Every grouped layer of `model` back to a PackedLinear computing its own product."""
    for module in model.modules():
        if type(module) is FusedLinear:
            module.__class__ = PackedLinear
            _groups.pop(module, None)


__all__ = ["SIBLINGS", "FusedLinear", "SiblingGroup", "computing_apart", "install", "uninstall"]
