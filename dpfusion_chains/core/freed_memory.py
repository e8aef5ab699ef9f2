"""Keep freed memory in the process instead of returning it to the kernel (glibc malloc).

Every prefill and every batch that forms allocates its activations and a new KV cache (tens to
hundreds of MB), and frees the last one's. glibc gives large freed blocks back to the kernel
(munmap, or trimming the top of a heap once more than M_TRIM_THRESHOLD is free there), so the
next allocation of that size starts on fresh pages, and the kernel zeroes each 4 KiB page at
its first touch. On the 2-core dev VM that cost about 1.2 ms per MB: assembling an 8-request
batch's 313 MB cache took 0.36–0.45 s on fresh pages and 0.02 s on reused ones, and the batch's
packed prefill 0.9–1.5 s against 0.7–0.8 s (SmolLM2-135M, `/tmp` A/B). CPU inference guides
swap in jemalloc or tcmalloc for the same reason.

`keep_freed_memory` sets glibc's malloc once per process: blocks up to MMAP_THRESHOLD come from
the heap (glibc's own ceiling for the threshold it adapts by itself); up to TRIM_THRESHOLD of
free memory stays mapped for the next request; and threads that start allocating from then on
share the main heap (M_ARENA_MAX 1), so that memory one thread freed serves the next thread to
drive the decode loop (with a heap per thread, eight threads calling `generate` at once still
met fresh pages: 0.4–0.5 s for one join). After a burst of requests the resident size stays
near its peak instead of falling back. Settings the user made in the environment
(MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_, MALLOC_ARENA_MAX, GLIBC_TUNABLES) win: then
nothing is changed. Under a preloaded allocator (jemalloc, tcmalloc) glibc's settings go
unused. The engine calls it on a CPU unless created with keep_freed_memory=False.

The heap limit holds only for threads that had not allocated yet: glibc keeps the heaps that
threads made before it and hands them to later threads in turn (a thread pool's new threads,
the thread driving the decode loop), each heap then growing to a batch's size on fresh pages of
its own. transformers loads weights on a pool of threads, so `DPFusionEngine.from_default` and
`from_pretrained` call this before loading. Called after loading, as before: eight threads
calling `generate` at once took 2.90–3.04 s with ~100 000 page faults a round, and the process
held 1.9 GB in four heaps; called before: 2.08–2.10 s, under 100 faults, 1.3 GB in one heap
(SmolLM2-135M on the dev CPU, rounds after the first). An engine built around a model loaded
beforehand meets whatever heaps the loading made: call this first, or set MALLOC_ARENA_MAX=1
in the environment.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
TRIM_THRESHOLD = 1 << 30   # free memory kept mapped at a heap's top
MMAP_THRESHOLD = 32 << 20  # larger blocks are mapped and unmapped on their own


def _set_by_user() -> bool:
    """Whether the environment already tunes glibc's malloc."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return "glibc.malloc." in tunables or any(
        os.environ.get(name) for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX"))


@functools.cache
def keep_freed_memory() -> bool:
    """Apply the settings (once per process); whether glibc took every one."""
    if not sys.platform.startswith("linux") or _set_by_user():
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc (musl's malloc has no such thresholds)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_ARENA_MAX, 1))
    return all([mallopt(param, value) == 1 for param, value in settings])  # a list: every one is applied


__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]
