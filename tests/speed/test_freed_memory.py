"""Keeping freed memory in the process (core.freed_memory): what it changes, what it leaves alone.

Its settings are process-wide, so each case runs in a fresh interpreter."""

import os
import subprocess
import sys
import textwrap

import pytest

from dpfusion_chains.testing import tiny_engine

GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None

# Allocate and touch 8 blocks of 16 MiB (under the heap threshold once kept, mapped on their own
# otherwise), free them, and print whether the call applied and the resident MiB given back.
PROBE = textwrap.dedent("""
    import sys
    from dpfusion_chains.core.freed_memory import keep_freed_memory

    def resident_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    blocks = [bytearray(16 << 20) for _ in range(8)]
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])   # touch every page
    before = resident_mib()
    del blocks, block
    print(applied, round(before - resident_mib()))
""")


def _probe(mode: str, **env: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_blocks_stay_in_the_process_once_kept():
    env = {name: "" for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX",
                                 "GLIBC_TUNABLES")}
    applied, given_back = _probe("keep", **env)
    assert applied == "True" and given_back < 16  # kept for the next allocation
    applied, given_back = _probe("default", **env)
    assert applied == "None" and given_back > 100  # glibc's default: back to the kernel


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
@pytest.mark.parametrize("name, value", [("MALLOC_TRIM_THRESHOLD_", "131072"),
                                         ("MALLOC_ARENA_MAX", "4"),
                                         ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")])
def test_settings_made_in_the_environment_win(name, value):
    applied, given_back = _probe("keep", **{name: value})
    assert applied == "False" and given_back > 100


def test_the_engine_switch(monkeypatch):
    from dpfusion_chains.core import freed_memory

    with pytest.raises(ValueError, match="keep_freed_memory must be True, False or 'auto'"):
        tiny_engine(keep_freed_memory="yes")
    calls = []
    monkeypatch.setattr(freed_memory, "keep_freed_memory", lambda: calls.append(1) or True)
    tiny_engine(keep_freed_memory=False)
    assert calls == []
    tiny_engine()  # "auto": on a CPU
    assert calls == [1]


# Threads that allocate (as transformers' weight loaders do), then glibc's count of arenas (heaps).
ARENAS = textwrap.dedent("""
    import ctypes, sys, threading
    from dpfusion_chains.core.freed_memory import keep_freed_memory

    if sys.argv[1] == "keep":
        keep_freed_memory()
    gate = threading.Barrier(4)

    def load():
        gate.wait()                                  # all four allocate at once
        blocks = [bytearray(1 << 20) for _ in range(8)]
        gate.wait()
        del blocks

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctypes.CDLL(None).malloc_stats()                 # one "Arena N:" line per arena, on stderr
""")


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_threads_allocating_after_the_settings_share_one_heap():
    env = {**os.environ, **{name: "" for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                                                   "MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}}

    def arenas(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True, text=True, check=True, env=env)
        return done.stderr.count("Arena ")

    assert arenas("keep") == 1
    assert arenas("default") > 1  # each thread a heap of its own, which later threads are handed in turn


@pytest.mark.parametrize("build", ["from_default", "from_pretrained"])
def test_the_settings_come_before_the_weights_load(monkeypatch, build):
    """Applied after loading, they would leave the loader threads' heaps to later threads."""
    from dpfusion_chains.core import engine as engine_module
    from dpfusion_chains.core import freed_memory
    from dpfusion_chains.core.engine import DPFusionEngine

    calls, seen_at_load = [], []

    def loading(*args, **kwargs):
        seen_at_load.append(len(calls))
        raise LookupError("stop before any weight loads")

    monkeypatch.setattr(freed_memory, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(engine_module, "load_default", loading)
    monkeypatch.setattr(engine_module, "load_model", loading)
    make = (lambda **kw: DPFusionEngine.from_default(device="cpu", **kw)) if build == "from_default" else \
        (lambda **kw: DPFusionEngine.from_pretrained("some/model", device="cpu", **kw))
    with pytest.raises(LookupError):
        make()
    with pytest.raises(LookupError):
        make(keep_freed_memory=False)
    assert seen_at_load == [1, 1]  # applied before the first load; not at all when switched off
    with pytest.raises(ValueError, match="keep_freed_memory must be True, False or 'auto'"):
        make(keep_freed_memory="yes")  # refused before anything loads
    assert seen_at_load == [1, 1]
