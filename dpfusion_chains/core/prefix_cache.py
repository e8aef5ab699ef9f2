"""Keys and values of recent public prompt prefixes, reused across requests.

Requests to one engine often open alike: the same system prompt, instructions, tool
descriptions or public background, with the private records further down. The views of a
request share every token before the first private one, and those tokens are a prefix of the
public view, so they are public. This cache keeps the KV of such prefixes (never of a private
token: only the common prefix of a request's views is ever stored) and hands a copy of the
longest match to the next prefill, which then computes only the rest.

Bounded by a token budget, least recently used first out. Reusing a prefix computed in another
forward changes float rounding (chunked instead of one pass), not the distribution. A hit makes
a request faster, so timing shows that the same public prefix was sent recently; set
`prefix_cache_tokens=0` where requests of different tenants must not see even that.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from dpfusion_chains.core.kvcache import ReservedCache

MIN_MATCH = 16  # shorter matches (a chat template's first line) are not worth a copy


@dataclass
class _Entry:
    tokens: tuple[int, ...]
    cache: ReservedCache


def _common_length(a: tuple[int, ...], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """LRU store of public-prefix KV caches, at most `max_tokens` positions in all."""

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

    def lookup(self, tokens: list[int], reserve: int) -> tuple[int, ReservedCache | None]:
        """(matched length, a private copy of the cache holding those positions) for the longest
        stored prefix of `tokens`; (0, None) below MIN_MATCH."""
        with self._lock:
            best, length = None, 0
            for entry in self._entries:
                n = _common_length(entry.tokens, tokens)
                if n > length:
                    best, length = entry, n
            if best is None or length < MIN_MATCH:
                self.misses += 1
                return 0, None
            self.hits += 1
            self._entries.remove(best)
            self._entries.append(best)
            return length, best.cache.copy(length=length, reserve=reserve)

    def store(self, tokens: list[int], cache: ReservedCache) -> None:
        """Keep a copy of `cache` (its first len(tokens) positions are `tokens`, all public)."""
        if not MIN_MATCH <= len(tokens) <= self.max_tokens or cache.length < len(tokens):
            return
        key = tuple(tokens)
        kept = cache.copy(length=len(tokens), reserve=0)
        with self._lock:
            # an entry that is a prefix of the new one adds nothing: the new one serves its matches
            self._entries = [e for e in self._entries if _common_length(e.tokens, tokens) < len(e.tokens)]
            self._entries.append(_Entry(key, kept))
            while self.tokens > self.max_tokens:
                self._entries.pop(0)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


__all__ = ["MIN_MATCH", "PrefixCache"]
