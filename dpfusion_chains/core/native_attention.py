"""A decode step's attention as one compiled pass, where this machine can build it.

A batched decode step's attention (core.shared_prefix) is some twenty small torch ops per layer:
products of three query heads against one row's few hundred keys, a softmax, products with the
values, in one or two buckets of rows. Each op costs microseconds of dispatch, so on the
project's 2-core Zen 5 dev CPU the eight requests of benchmarks/batch_bench.py (16 rows, a
223-token opening) spent ~400 µs a layer there, 11.8 ms of a ~41 ms step, reading ~3 MB of keys
and values (~60 µs at the machine's read bandwidth). `native/decode_attention.c` computes the
same attention in one call: for each (row, key/value head), in parallel on torch's own OpenMP
threads, the scores against the opening (row 0's copy) and the row's own attended columns, one
softmax, the weighted values; float32 throughout, half-precision caches converted as read.
In that step it takes 141–171 µs a layer (~67 µs called again on the same step's tensors, its
caches warm), and the step 33.8–37.3 ms against 40.4–43.5 with torch's ops (medians of runs with
the two alternating in one process, the same sampled text). The (row, head) tasks are handed out one
at a time, as the rows' lengths differ: in a standalone run of those shapes with the long rows
first, handing them out in two halves took 246 µs a layer against 198. On a 2-core AMD Zen 3
(AVX2, no AVX-512; GEMM ~140–170 GFLOP/s), its 8-lane build took the same step from 119–170 to
101–118 ms (two such runs, 4 alternations each, the same text).

It is compiled on first use with the C compiler (`$CC`, else `cc`/`gcc`) for this CPU
(`-march=native`, OpenMP) into `models.cache_dir()/native/`, keyed by the source, the compiler's
version and the CPU, and loaded with ctypes; a later process loads the file. Building a new one
deletes the others left unused for UNUSED_DAYS (each upgrade would leave one more). It is used only on
Linux x86-64 with AVX-512F (16 floats a vector) or AVX2 with FMA and F16C (8; the same source
over the narrower vectors), with torch on the GNU OpenMP runtime (libgomp.so.1, torch's bundled
one in its wheels, which the compiled file then shares: it is refused if loading it mapped another
runtime, which would put a second pool of spinning threads on the same cores), for float32,
bfloat16 and float16 caches with a head dim that is a multiple of its vector width (`lanes()`, at
most 256), without autograd and outside torch.compile. Anywhere else, or if the build fails
(logged once), `decode_attention` answers None and the caller keeps torch's ops, which compute the
same attention up to float rounding (the exponential here is a polynomial, ~1 ulp).
Set DPFUSION_NATIVE_ATTENTION=0 to keep torch's ops everywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native") / "decode_attention.c"
ENVIRONMENT = "DPFUSION_NATIVE_ATTENTION"  # "0": torch's ops everywhere
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")
DTYPES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}  # the kernel's dtype codes
BUILD_SECONDS = 120
UNUSED_DAYS = 30  # another build not loaded for this long is deleted when a new one is built
MAX_HEAD_DIM, MAX_GROUP = 256, 64  # the kernel's limits (native/decode_attention.c)

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_tried = False
_reason: str | None = None  # why `_load` found no library
_lanes = 0  # the loaded kernel's vector width in floats
_switched_off = False  # `disabled()`


def available() -> bool:
    """Whether the compiled kernel is loaded (building it on the first call) and switched on."""
    return not _switched_off and os.environ.get(ENVIRONMENT, "1") != "0" and _load() is not None


def takes_model(model: torch.nn.Module) -> bool:
    """Whether `decode_attention` computes this model's decode attention on a CPU (its dtype,
    head dim and grouping), the kernel being available."""
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None)
    if not heads or getattr(model, "dtype", None) not in DTYPES:
        return False
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    dim = getattr(config, "head_dim", None) or getattr(config, "hidden_size", 0) // heads
    width = lanes()
    return (width > 0 and dim % width == 0 and width <= dim <= MAX_HEAD_DIM and heads % kv_heads == 0
            and heads // kv_heads <= MAX_GROUP)


def lanes() -> int:
    """Floats per vector of the kernel built here (16 with AVX-512F, 8 with AVX2), which a head
    dim must be a multiple of; 0 where the kernel is not available."""
    return _lanes if available() else 0


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Torch's ops for every decode step inside (benchmarks and tests compare the two)."""
    global _switched_off
    saved, _switched_off = _switched_off, True
    try:
        yield
    finally:
        _switched_off = saved


def decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float, shared_start: int,
                     shared_length: int, first: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """One decode step's attention, or None where the kernel does not apply (the caller computes
    it with torch's ops). query [rows, heads, 1, dim]; key and value [rows, kv_heads, columns,
    dim] (query head j reads key/value head j // (heads / kv_heads)); row r attends to row 0's
    columns [shared_start, shared_start + shared_length), then to its own columns from first[r]
    (int64 [rows]) where `mask` ([rows, ≥ columns] bool) is True -> [rows, heads, 1, dim]."""
    rows, heads, steps, dim = query.shape
    columns = key.shape[2]
    tensors = (query, key, value, first, mask)
    if (steps != 1 or key.dtype not in DTYPES or not query.dtype == key.dtype == value.dtype
            or any(t.device.type != "cpu" for t in tensors) or value.shape != key.shape or key.shape[0] != rows
            or any(t.stride(3) != 1 for t in (query, key, value))
            or mask.dtype != torch.bool or not mask.is_contiguous() or mask.shape[0] != rows or mask.shape[1] < columns
            or first.dtype != torch.int64 or not first.is_contiguous() or first.shape != (rows,)
            or not 0 <= shared_start <= shared_start + shared_length <= columns
            or torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
            or torch.compiler.is_compiling() or not available()):
        return None
    out = torch.empty((rows, heads, dim), dtype=torch.float32)
    key_strides, value_strides = key.stride(), value.stride()
    status = _library.dpf_decode_attention(  # type: ignore[union-attr]
        query.data_ptr(), key.data_ptr(), value.data_ptr(), DTYPES[key.dtype], scale, query.stride(0),
        query.stride(1), key_strides[0], key_strides[1], key_strides[2], value_strides[0], value_strides[1],
        value_strides[2], rows, heads, key.shape[1], dim, shared_start, shared_length, first.data_ptr(), columns,
        mask.data_ptr(), mask.stride(0), out.data_ptr())
    if status == 1:
        return None  # a shape the kernel does not take (head dim, grouping): torch's ops
    if status:
        raise MemoryError("native decode attention could not allocate its score buffer")
    return out.view(rows, heads, 1, dim).to(query.dtype)


def unavailable_reason() -> str | None:
    """Why the kernel is not used here (None when `available()`), for logs and test reports."""
    if _switched_off:
        return "switched off for this block (native_attention.disabled)"
    if os.environ.get(ENVIRONMENT, "1") == "0":
        return f"switched off ({ENVIRONMENT}=0)"
    return None if _load() is not None else _reason


class _Unusable(Exception):
    """This machine cannot build or run the kernel (said once, at info level)."""


def _load() -> ctypes.CDLL | None:
    global _library, _tried, _reason, _lanes
    if _tried:
        return _library
    with _lock:
        if not _tried:
            try:
                _library = _build_and_open()
                _lanes = int(_library.dpf_decode_attention_lanes())
            except _Unusable as exc:
                _library, _reason = None, str(exc)
                logger.info("native decode attention: %s; using torch's ops", exc)
            except Exception as exc:  # any failure leaves torch's ops, which compute the same
                _library, _reason = None, f"its build or load failed: {exc}"
                logger.warning("native decode attention unavailable, using torch's ops: %s", exc)
            _tried = True
    return _library


def _build_and_open() -> ctypes.CDLL:
    if not sys.platform.startswith("linux") or platform.machine().lower() not in ("x86_64", "amd64"):
        raise _Unusable(f"built only on Linux x86-64, not {sys.platform} {platform.machine()}")
    if not _torch_on_gnu_openmp():
        raise _Unusable("torch does not run on the GNU OpenMP runtime (libgomp.so.1)")
    compiler = _compiler()
    if not compiler:
        raise _Unusable("no C compiler found ($CC, cc, gcc)")
    target = _built(compiler)
    before = _mapped_openmp_runtimes()
    library = ctypes.CDLL(str(target))
    added = _mapped_openmp_runtimes() - before
    if added:  # ours pulled in a runtime of its own: never call it
        raise RuntimeError(f"loading it mapped another OpenMP runtime ({', '.join(sorted(added))})")
    if not library.dpf_decode_attention_usable():
        raise _Unusable("this CPU has neither AVX-512F nor AVX2 with FMA and F16C")
    function = library.dpf_decode_attention
    pointer, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    function.argtypes = [pointer, pointer, pointer, i32, ctypes.c_float, *[i64] * 8, i32, i32, i32, i32, i64, i64,
                         pointer, i64, pointer, i64, pointer]
    function.restype = i32
    return library


def _compiler() -> list[str] | None:
    """The C compiler's command: $CC (which may carry arguments), else cc or gcc."""
    named = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    return shlex.split(named) if named else None


def _built(compiler: list[str]) -> Path:
    """The compiled kernel for this source, compiler and CPU, built once into the cache."""
    from dpfusion_chains.core.models import cache_dir

    source = SOURCE.read_bytes()
    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256(b"\0".join([source, version.encode(), " ".join(FLAGS).encode(), _cpu().encode()]))
    target = cache_dir() / "native" / f"decode_attention-{key.hexdigest()[:16]}.so"
    if target.is_file():
        _mark_used(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    started = time.perf_counter()
    result = subprocess.run([*compiler, *FLAGS, str(SOURCE), "-o", str(partial), "-lm"], capture_output=True,
                            text=True, timeout=BUILD_SECONDS)
    if result.returncode:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{shlex.join(compiler)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    os.replace(partial, target)  # atomic: a concurrent process sees no half-written file
    logger.info("built the native decode attention kernel in %.1f s: %s", time.perf_counter() - started, target)
    _prune_unused(target)
    return target


def _mark_used(built: Path) -> None:
    """Date a loaded build's file to today, so that pruning keeps builds still in use (a cache
    shared by machines with different CPUs holds one per CPU). At most once a day per file."""
    try:
        if time.time() - built.stat().st_mtime > 86400:
            os.utime(built)
    except OSError:  # a read-only cache: nothing is pruned from it either
        pass


def _prune_unused(kept: Path) -> None:
    """Delete the builds of earlier sources, compilers or CPUs left unused for UNUSED_DAYS, and
    partial files of builds killed midway: each library upgrade would otherwise leave one more.
    A process that has one loaded keeps its mapping (Linux frees the file on its last close)."""
    now = time.time()
    for path in kept.parent.glob("*decode_attention-*"):
        with contextlib.suppress(OSError):  # another process may be pruning or building too
            age = now - path.stat().st_mtime
            if (path.suffix == ".tmp" and age > 2 * BUILD_SECONDS) or (
                    path.suffix == ".so" and path != kept and age > UNUSED_DAYS * 86400):
                path.unlink()
                logger.info("deleted an unused native kernel file: %s", path.name)


def _cpu() -> str:
    """The CPU's model and flags (-march=native code may not run on another CPU sharing the cache)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    lines = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(lines)))


def _torch_on_gnu_openmp() -> bool:
    """Whether torch runs on OpenMP and a libgomp.so.1 is mapped (the runtime the kernel's own
    dependency on libgomp.so.1 then binds to)."""
    return torch.backends.openmp.is_available() and any(
        os.path.basename(path) == "libgomp.so.1" for path in _mapped_openmp_runtimes())


def _mapped_openmp_runtimes() -> set[str]:
    """Files of OpenMP runtimes mapped into this process (GNU, LLVM, Intel)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return set()
    names = ("libgomp", "libomp", "libiomp")
    return {line.split()[-1] for line in maps.splitlines()
            if "/" in line and any(name in line.rsplit("/", 1)[-1] for name in names)}


__all__ = ["DTYPES", "ENVIRONMENT", "MAX_GROUP", "MAX_HEAD_DIM", "available", "decode_attention", "disabled", "lanes",
           "takes_model", "unavailable_reason"]
