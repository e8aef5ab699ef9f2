"""Keys and values of recent public views, reused across requests.

Requests to one engine often open alike: the same system prompt, instructions, tool
descriptions or public background, with the private records further down; the next turn of a
chat repeats the last one; a batch job asks one question of many records. A request's public
view (every private span redacted) is public, so its keys and values may outlive the request.
This store keeps them (never a token of a group view: the prefill offers only the public view)
and hands the next prefill a copy of the longest stored prefix of its public view, which then
computes only the rest. A view stored in full also keeps its next-token logits, so a request
whose public view repeats one exactly computes no public token at all.

Bounded by a token budget (positions; each costs layers × 2 × KV heads × head dim × dtype
bytes, 46 KB with SmolLM2-135M in float32), least recently used first out. Reusing keys and
values computed in another forward changes float rounding (chunked instead of one pass), not
the distribution. A hit makes a request faster, so timing shows that the same public text was
sent recently; set `prefix_cache_tokens=0` where requests of different tenants must not learn
even that.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no torch at import: the CLI and the server config read DEFAULT_TOKENS
    import torch

    from dpfusion_chains.core.kvcache import ReservedCache

MIN_MATCH = 16  # shorter matches (a chat template's first line) are not worth a copy
DEFAULT_TOKENS = 2048  # the engine's, the server's and the benchmarks' default budget


@dataclass
class StoredPrefix:
    """A lookup's answer: the first `length` positions of the asked view in a private cache;
    `logits` (next-token, [V]) when the whole view was stored and matched."""

    length: int
    cache: ReservedCache
    logits: torch.Tensor | None = None


@dataclass
class _Entry:
    tokens: tuple[int, ...]
    cache: ReservedCache
    logits: torch.Tensor | None


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """LRU store of public-view KV caches, at most `max_tokens` positions in all."""

    def __init__(self, max_tokens: int) -> None:
        if max_tokens < 0:
            raise ValueError(f"prefix_cache_tokens must be ≥ 0 (0 turns the cache off), got {max_tokens}")
        self.max_tokens = max_tokens
        self._entries: list[_Entry] = []  # most recently used last
        self._lock = threading.Lock()
        self.hits = self.misses = 0       # statistics, for tests and benchmarks

    @property
    def tokens(self) -> int:
        return sum(len(e.tokens) for e in self._entries)

    def lookup(self, view: list[int], reserve: int) -> StoredPrefix | None:
        """The longest stored prefix of `view` (None below MIN_MATCH). Unless `view` was stored
        whole, at least its last token is left to compute, for its logits."""
        with self._lock:
            best, length = None, 0
            for entry in self._entries:
                n = common_length(entry.tokens, view)
                whole = n == len(entry.tokens) and entry.logits is not None  # preferred on a tie
                if n > length or (n == length and n and whole):
                    best, length = entry, n
            exact = best is not None and best.logits is not None and len(best.tokens) == length == len(view)
            if not exact:
                length = min(length, len(view) - 1)
            if best is None or length < MIN_MATCH:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.remove(best)
            self._entries.append(best)
            logits = best.logits.clone() if exact else None
            return StoredPrefix(length, best.cache.copy(length=length, reserve=reserve), logits)

    def store(self, view: list[int], cache: ReservedCache, row: int = 0, logits: torch.Tensor | None = None) -> None:
        """Keep a copy of row `row` of `cache`, whose first len(view) positions hold the public
        `view`, and the next-token `logits` after it."""
        if not MIN_MATCH <= len(view) <= self.max_tokens or cache.length < len(view):
            return
        entry = _Entry(tuple(view), cache.copy(length=len(view), reserve=0, row=row),
                       None if logits is None else logits.detach().clone())
        with self._lock:
            # a stored prefix of the new view (the same view included) adds nothing now
            self._entries = [e for e in self._entries if common_length(e.tokens, view) < len(e.tokens)]
            self._entries.append(entry)
            while self.tokens > self.max_tokens:
                self._entries.pop(0)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


__all__ = ["DEFAULT_TOKENS", "MIN_MATCH", "PrefixCache", "StoredPrefix", "common_length"]
