"""The compiled kernels of `native/`, built for this CPU on first use and loaded with ctypes.

Every `native/*.c` file (decode attention, few-row linear products, the CPU check) is compiled
into one shared library with the C compiler (`$CC`, else `cc`/`gcc`), `-march=native` and
OpenMP, into `models.cache_dir()/native/`, keyed by the sources, the compiler's version and the
CPU; a later process loads the file. Building a new one deletes the others left unused for
UNUSED_DAYS (each library upgrade would leave one more; a cache shared by machines with
different CPUs keeps each build in use). The kernels are written over `native/simd.h`: AVX-512F
(16 floats a vector) or AVX2 with FMA and F16C (8). They are used only on Linux x86-64 with torch
on the GNU OpenMP runtime (libgomp.so.1, torch's bundled one in its wheels, which the compiled
file then shares: it is refused if loading it mapped another runtime, which would put a second
pool of spinning threads on the same cores). Anywhere else, or if the build fails (logged once),
`load()` answers None and every caller keeps torch's ops.
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
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SOURCES = tuple(sorted(Path(__file__).with_name("native").glob("*.c")))
HEADERS = tuple(sorted(Path(__file__).with_name("native").glob("*.h")))
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")
BUILD_SECONDS = 120
UNUSED_DAYS = 30  # another build not loaded for this long is deleted when a new one is built
PREFIX = "dpfusion_native-"

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_tried = False
_reason: str | None = None  # why `load` found no library
_lanes = 0  # the loaded kernels' vector width in floats
_declared: dict[str, tuple[ctypes.CDLL, Callable[..., int]]] = {}  # name -> (library, function with types)


def load() -> ctypes.CDLL | None:
    """The loaded library (built on the first call), or None where it cannot be (`reason()`)."""
    global _library, _tried, _reason, _lanes
    if _tried:
        return _library
    with _lock:
        if not _tried:
            try:
                _library = _build_and_open()
                _lanes = int(_library.dpf_native_lanes())
            except _Unusable as exc:
                _library, _reason = None, str(exc)
                logger.info("native kernels: %s; using torch's ops", exc)
            except Exception as exc:  # any failure leaves torch's ops, which compute the same
                _library, _reason = None, f"its build or load failed: {exc}"
                logger.warning("native kernels unavailable, using torch's ops: %s", exc)
            _tried = True
    return _library


def reason() -> str | None:
    """Why the library is not loaded here (None when it is)."""
    return None if load() is not None else _reason


def lanes() -> int:
    """Floats per vector of the kernels built here (16 with AVX-512F, 8 with AVX2); 0 where the
    library is not loaded."""
    return _lanes if load() is not None else 0


def function(name: str, argtypes: list[type], restype: type = ctypes.c_int) -> Callable[..., int] | None:
    """The library's function `name`, its argument and result types declared once; None where the
    library is not loaded."""
    library = load()
    if library is None:
        return None
    found = _declared.get(name)
    if found is None or found[0] is not library:  # a test may load another build
        declared = getattr(library, name)
        declared.argtypes, declared.restype = argtypes, restype
        found = _declared[name] = (library, declared)
    return found[1]


class BlockSwitch:
    """A kernel's process-wide switch for a block of code (benchmarks and tests compare the
    kernel with the ops it replaces)."""

    def __init__(self) -> None:
        self.off = False

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """The kernel unused inside."""
        saved, self.off = self.off, True
        try:
            yield
        finally:
            self.off = saved


class _Unusable(Exception):
    """This machine cannot build or run the kernels (said once, at info level)."""


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
    if not library.dpf_native_usable():
        raise _Unusable("this CPU has neither AVX-512F nor AVX2 with FMA and F16C")
    return library


def _compiler() -> list[str] | None:
    """The C compiler's command: $CC (which may carry arguments), else cc or gcc."""
    named = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    return shlex.split(named) if named else None


def _built(compiler: list[str]) -> Path:
    """The compiled library for these sources, compiler and CPU, built once into the cache."""
    from dpfusion_chains.core.models import cache_dir

    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    parts = [path.name.encode() + b"\0" + path.read_bytes() for path in (*SOURCES, *HEADERS)]
    key = hashlib.sha256(b"\0".join([*parts, version.encode(), " ".join(FLAGS).encode(), _cpu().encode()]))
    target = cache_dir() / "native" / f"{PREFIX}{key.hexdigest()[:16]}.so"
    if target.is_file():
        _mark_used(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    started = time.perf_counter()
    result = subprocess.run([*compiler, *FLAGS, *map(str, SOURCES), "-o", str(partial), "-lm"], capture_output=True,
                            text=True, timeout=BUILD_SECONDS)
    if result.returncode:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{shlex.join(compiler)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    os.replace(partial, target)  # atomic: a concurrent process sees no half-written file
    logger.info("built the native kernels in %.1f s: %s", time.perf_counter() - started, target)
    _prune_unused(target)
    return target


def _mark_used(built: Path) -> None:
    """Date a loaded build's file to today, so that pruning keeps builds still in use. At most
    once a day per file."""
    try:
        if time.time() - built.stat().st_mtime > 86400:
            os.utime(built)
    except OSError:  # a read-only cache: nothing is pruned from it either
        pass


def _prune_unused(kept: Path) -> None:
    """Delete the builds of earlier sources, compilers or CPUs left unused for UNUSED_DAYS, and
    partial files of builds killed midway. A process that has one loaded keeps its mapping
    (Linux frees the file on its last close)."""
    now = time.time()
    # decode_attention-*: the single-kernel builds of releases before the linear products joined
    for pattern in (f"*{PREFIX}*", "*decode_attention-*"):
        for path in kept.parent.glob(pattern):
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
    """Whether torch runs on OpenMP and a libgomp.so.1 is mapped (the runtime the library's own
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


__all__ = ["BUILD_SECONDS", "FLAGS", "SOURCES", "UNUSED_DAYS", "BlockSwitch", "function", "lanes", "load", "reason"]
