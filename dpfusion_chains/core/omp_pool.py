"""Give back the OpenMP thread pool of a thread that stops driving the decode loop.

torch's Linux CPU wheels run parallel ops on the GNU OpenMP runtime bundled with them
(torch/lib/libgomp.so.1), which keeps a pool of threads for every thread that has run a
parallel op. Once the pools hold more threads than there are cores, libgomp's threads stop
spinning at barriers and sleep ("throttled" spinning), and every parallel op pays for waking
them. On a 2-core CPU, after the main thread had run torch ops, an exp over 4×49152 floats took
100–110 µs on a second thread against 60 µs on the main thread, and 60 µs on the second thread
once the main thread's pool was released. Eight threads calling `generate` at once (SmolLM2-135M,
24 tokens each) took 2.5–2.8 s after earlier calls on the main thread had released its pool,
3.3–3.5 s when they had not.

The scheduler (core.scheduler) calls `release_thread_pool` on a caller's thread when that thread
stops driving the loop, so that the pool it built there does not slow the loop's next driver (a
worker, or a caller on another thread). OpenMP 5.0's omp_pause_resource_all frees the calling
thread's pool in libgomp (the other threads' pools are untouched); the next parallel op on that
thread builds a new one. Other OpenMP runtimes are left alone.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable

OMP_PAUSE_SOFT = 1  # omp_pause_resource_t: release threads, keep the runtime's settings


@functools.cache
def _pause_all() -> Callable[[int], int] | None:
    """omp_pause_resource_all of torch's bundled libgomp, if that library is the one loaded."""
    if not sys.platform.startswith("linux"):
        return None
    import torch

    path = os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1")
    try:  # RTLD_NOLOAD: only a library this process has already loaded (torch's, not another copy)
        library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD)
        pause = library.omp_pause_resource_all
    except (OSError, AttributeError):
        return None
    pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
    return pause


def release_thread_pool() -> bool:
    """Free the calling thread's OpenMP thread pool; whether one was released."""
    pause = _pause_all()
    return pause is not None and pause(OMP_PAUSE_SOFT) == 0


__all__ = ["release_thread_pool"]
