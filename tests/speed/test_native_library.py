"""The compiled kernels' library (core.native_library): it maps no OpenMP runtime of its own, is
built once per cache and CPU, deletes builds left unused and killed partial files when it builds
a new one, and a failed build leaves torch's ops for attention and linear products alike."""

import ctypes
import logging
import os
import stat
import subprocess
import sys
import time

import pytest
import torch
from decode_attention_cases import rows_with_opening, sdpa_over_rows, thresholds

from dpfusion_chains.core import native_attention, native_library, native_linear
from dpfusion_chains.core.matmul import WeightMajorLinear, active, install
from dpfusion_chains.core.shared_prefix import SharedPrefix


@pytest.fixture
def library():
    if native_library.load() is None:
        pytest.skip(f"no native kernels here: {native_library.reason()}; the engine uses torch's ops, tested elsewhere")


def test_loading_it_maps_no_openmp_runtime_of_its_own(library):
    """A second runtime would put another pool of spinning threads on the same cores: in a fresh
    process, the same runtimes before and after."""
    script = ("from dpfusion_chains.core import native_library as n\n"
              "before = n._mapped_openmp_runtimes()\n"
              "assert n.load() is not None, n.reason()\n"
              "print(sorted(before), sorted(n._mapped_openmp_runtimes()))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = done.stdout.strip().split("] [")
    assert before + "]" == "[" + after and "libgomp.so.1" in before


def test_it_holds_every_kernel_and_says_its_width(library):
    assert native_library.lanes() in (8, 16) and native_library.reason() is None
    assert {path.name for path in native_library.SOURCES} >= {"cpu.c", "decode_attention.c", "few_row_linear.c"}
    loaded = native_library.load()
    assert all(hasattr(loaded, name) for name in ("dpf_native_usable", "dpf_decode_attention", "dpf_few_row_linear"))


def test_a_function_is_declared_once_per_loaded_library(library, monkeypatch):
    lanes = native_library.function("dpf_native_lanes", [])
    assert native_library.function("dpf_native_lanes", []) is lanes and lanes() == native_library.lanes()
    again = ctypes.CDLL(str(native_library._built(native_library._compiler())))  # another handle on it
    monkeypatch.setattr(native_library, "_library", again)
    other = native_library.function("dpf_native_lanes", [])
    assert other is not lanes and other() == lanes()
    assert native_library.function("dpf_native_lanes", []) is other


def test_it_is_built_once_per_cache_and_cpu(library, tmp_path, monkeypatch):
    monkeypatch.setenv("DPFUSION_CACHE_DIR", str(tmp_path))
    compiler = native_library._compiler()
    built = native_library._built(compiler)
    assert built.parent == tmp_path / "native" and built.is_file()
    stamp = built.stat().st_mtime_ns
    assert native_library._built(compiler) == built and built.stat().st_mtime_ns == stamp
    assert [p.name for p in built.parent.iterdir()] == [built.name]           # no partial file left


def test_a_new_build_deletes_builds_unused_for_a_month_and_killed_partials(library, tmp_path, monkeypatch):
    monkeypatch.setenv("DPFUSION_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "native"
    folder.mkdir()
    month, now = native_library.UNUSED_DAYS * 86400, time.time()
    files = {"dpfusion_native-0000000000000old.so": now - month - 60,      # an upgrade ago: deleted
             "decode_attention-000000000000old.so": now - month - 60,      # a release before: deleted
             "dpfusion_native-00000000000other.so": now - month + 3600,    # another CPU's, in use: kept
             ".dpfusion_native-0000000000000old.so.1.2.tmp": now - 3 * native_library.BUILD_SECONDS,  # killed
             ".dpfusion_native-00000000building.so.3.4.tmp": now - 5,      # being built: kept
             "notes.txt": now - 2 * month}                                  # not ours: kept
    for name, when in files.items():
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (when, when))
    built = native_library._built(native_library._compiler())
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [built.name, "dpfusion_native-00000000000other.so", ".dpfusion_native-00000000building.so.3.4.tmp",
         "notes.txt"])
    os.utime(built, (now - month - 60, now - month - 60))                 # loaded again: dated today
    assert native_library._built(native_library._compiler()) == built
    assert now - built.stat().st_mtime < 3600


def test_a_failed_build_leaves_torchs_ops(tmp_path, monkeypatch, caplog):
    broken = tmp_path / "cc"
    broken.write_text("#!/bin/sh\necho 'cc: no compiler here' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CC", str(broken))
    monkeypatch.delenv(native_attention.ENVIRONMENT, raising=False)
    monkeypatch.setenv(native_linear.ENVIRONMENT, "1")
    monkeypatch.setenv("DPFUSION_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native_library, "_tried", False)
    monkeypatch.setattr(native_library, "_library", None)
    monkeypatch.setattr(native_library, "_reason", None)
    with caplog.at_level(logging.WARNING, logger=native_library.__name__):
        assert not native_attention.available() and not native_linear.available()
    if native_library._torch_on_gnu_openmp() and os.uname().machine in ("x86_64", "AMD64"):
        assert "no compiler here" in caplog.text and "no compiler here" in native_attention.unavailable_reason()
    thresholds(monkeypatch, rows=2, tokens=1, saved=1)
    keys, values, mask = rows_with_opening([0, 3, 0], 10, 30, 2, 16, 0)
    query = torch.randn(3, 4, 1, 16)
    out = SharedPrefix.plan([0, 3, 0], 10, mask, torch.float32).attention(query, keys, values, 0.25)
    assert torch.allclose(out, sdpa_over_rows(query, keys, values, mask, 0.25), atol=1e-5)
    layer, x = torch.nn.Linear(16, 8), torch.randn(2, 16)
    assert native_linear.few_row_linear(x, layer.weight.detach()) is None
    expected = layer(x)
    install(layer, pack=False)
    assert type(layer) is WeightMajorLinear
    with torch.inference_mode(), active():
        assert torch.allclose(layer(x), expected, atol=1e-6)
