"""Optional dependencies: import one, or fail with the pip extra that installs it.

    require("langchain_core", "langchain", "ChatDPFusion")   # at the top of an adapter module

A missing framework then reads "optional dependency 'langchain_core' (for ChatDPFusion) is not
installed; install it with: pip install 'dpfusion-chains[langchain]'", not a bare ModuleNotFoundError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["install_hint", "require"]


def install_hint(extra: str) -> str:
    return f"pip install 'dpfusion-chains[{extra}]'"


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """`module`, imported; an ImportError naming the extra `extra` when it cannot be imported."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        who = f" (for {feature})" if feature else ""
        missing = getattr(exc, "name", None) or ""
        absent = isinstance(exc, ModuleNotFoundError) and (module == missing or module.startswith(missing + "."))
        why = "is not installed" if absent else f"could not be imported ({type(exc).__name__}: {exc})"
        raise ImportError(f"optional dependency {module!r}{who} {why}; install it with: {install_hint(extra)}",
                          name=module) from exc
