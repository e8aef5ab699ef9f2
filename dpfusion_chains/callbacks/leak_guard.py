"""Framework-free canary scanning: does private text reach anything a callback can see?

A test registers canary strings (distinctive text planted in private documents) with a
`LeakGuard`, and the framework's callback adapter passes every payload it receives to
`LeakGuard.check`. Payloads are walked recursively (strings, mappings, sequences, exceptions
and their causes, objects' attributes), so a canary inside a Document, a message, an
exception message or a metadata dict is found. Reports name the canary's index and where it
was found, never its text.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dpfusion_chains.core.errors import DPFusionError
from dpfusion_chains.core.markers import START as MARKER_START

_ATOMS = (int, float, complex, bool, type(None))
_SKIP_MODULES = ("torch", "transformers", "numpy", "threading", "asyncio", "logging")


class CanaryLeakError(DPFusionError, AssertionError):
    """A registered canary (private text) reached a callback payload."""


@dataclass(frozen=True)
class Leak:
    event: str
    canary: int          # index into the guard's canaries (its text is never reported)
    path: str

    def __str__(self) -> str:
        return f"canary #{self.canary} in {self.event} at {self.path}"


def find_canaries(obj: Any, canaries: Iterable[str], path: str = "payload", max_depth: int = 12,
                  markers: bool = False) -> list[tuple[int, str]]:
    """(canary index, path) for every canary found in `obj`; with `markers`, text still carrying a
    private marker counts as index -1 (private text that was never turned into a public view)."""
    needles = list(canaries)
    found: list[tuple[int, str]] = []
    seen: set[int] = set()

    def visit(value: Any, where: str, depth: int) -> None:
        if isinstance(value, (str, bytes)):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            found.extend((i, where) for i, c in enumerate(needles) if c and c in text)
            if markers and MARKER_START in text:
                found.append((-1, where))
            return
        if isinstance(value, _ATOMS) or depth > max_depth or id(value) in seen:
            return
        if isinstance(value, type) or inspect.isroutine(value) or inspect.ismodule(value):
            return
        if type(value).__module__.split(".")[0] in _SKIP_MODULES:
            return
        seen.add(id(value))
        if isinstance(value, BaseException):
            visit(str(value), f"{where}.str", depth + 1)
            visit(value.args, f"{where}.args", depth + 1)
            visit(value.__cause__, f"{where}.__cause__", depth + 1)
            visit(value.__context__, f"{where}.__context__", depth + 1)
            return
        if isinstance(value, Mapping):
            for k, v in list(value.items()):
                visit(k, f"{where}.key", depth + 1)
                visit(v, f"{where}[{k!r}]", depth + 1)
            return
        if isinstance(value, (list, tuple, set, frozenset)):
            for i, v in enumerate(list(value)):
                visit(v, f"{where}[{i}]", depth + 1)
            return
        attrs = getattr(value, "__dict__", None)
        if isinstance(attrs, dict):
            for k, v in list(attrs.items()):
                visit(v, f"{where}.{k}", depth + 1)
        for k in getattr(type(value), "__slots__", ()):
            if isinstance(k, str) and hasattr(value, k):
                visit(getattr(value, k), f"{where}.{k}", depth + 1)

    visit(obj, path, 0)
    return found


class LeakGuard:
    """Collects canary leaks; mode "raise" raises CanaryLeakError at the first one, "record" keeps
    them in `leaks` for the test to assert on."""

    def __init__(self, canaries: Iterable[str], mode: Literal["raise", "record"] = "raise",
                 markers: bool = False) -> None:
        self.canaries = [c for c in canaries if isinstance(c, str) and c]
        if not self.canaries and not markers:
            raise ValueError("LeakGuard needs at least one non-empty canary string (or markers=True)")
        if mode not in ("raise", "record"):
            raise ValueError(f"mode must be 'raise' or 'record', got {mode!r}")
        self.mode = mode
        self.markers = markers
        self.leaks: list[Leak] = []
        self.events = 0
        self._lock = threading.Lock()

    def check(self, event: str, payload: Any) -> list[Leak]:
        hits = [Leak(event, i, p) for i, p in find_canaries(payload, self.canaries, event, markers=self.markers)]
        with self._lock:
            self.events += 1
            self.leaks.extend(hits)
        if hits and self.mode == "raise":
            raise CanaryLeakError(f"private text reached a callback: {hits[0]}"
                                  + (f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""))
        return hits

    def assert_clean(self) -> None:
        """Raise CanaryLeakError if any leak was recorded."""
        if self.leaks:
            raise CanaryLeakError(f"{len(self.leaks)} leak(s) of private text; first: {self.leaks[0]}")
