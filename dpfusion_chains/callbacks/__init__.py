"""Callback handlers that observe DP-Fusion spending and guard against leaks, imported lazily:
`import dpfusion_chains.callbacks` imports no framework."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "PrivacyBudgetCallbackHandler": "dpfusion_chains.callbacks.langchain",
    "LeakGuardCallbackHandler": "dpfusion_chains.callbacks.langchain",
    "PrivacyBudgetEventHandler": "dpfusion_chains.callbacks.llama_index",
    "SpendTracker": "dpfusion_chains.callbacks.store",
    "SpendStore": "dpfusion_chains.callbacks.store",
    "MemorySpendStore": "dpfusion_chains.callbacks.store",
    "CallRecord": "dpfusion_chains.callbacks.store",
    "PrivacyLimitExceededError": "dpfusion_chains.callbacks.store",
    "LeakGuard": "dpfusion_chains.callbacks.leak_guard",
    "CanaryLeakError": "dpfusion_chains.callbacks.leak_guard",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from dpfusion_chains.callbacks.langchain import LeakGuardCallbackHandler, PrivacyBudgetCallbackHandler
    from dpfusion_chains.callbacks.leak_guard import CanaryLeakError, LeakGuard
    from dpfusion_chains.callbacks.llama_index import PrivacyBudgetEventHandler
    from dpfusion_chains.callbacks.store import (CallRecord, MemorySpendStore, PrivacyLimitExceededError, SpendStore,
                                                 SpendTracker)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dpfusion_chains.callbacks' has no attribute {name!r}")
