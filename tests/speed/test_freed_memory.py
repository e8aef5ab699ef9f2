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
