"""DP-Fusion as a service: an OpenAI-compatible private endpoint, in-process or on Ray Serve.

    dpfusion serve --replicas 2 --ledger postgresql://… --api-keys-file keys.txt --port 8000
    engine = RemoteEngine(base_url="http://127.0.0.1:8000", api_key="…")   # same generate/stream

Install with ``pip install 'dpfusion-chains[serve]'``. FastAPI, Ray and httpx are imported only
by the modules that need them; see README.md in this folder for deploying to a Ray cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "RemoteEngine": "dpfusion_chains.serve.client",
    "RemoteError": "dpfusion_chains.serve.client",
    "ServeConfig": "dpfusion_chains.serve.config",
    "KeyStore": "dpfusion_chains.serve.auth",
    "hash_key": "dpfusion_chains.serve.auth",
    "create_app": "dpfusion_chains.serve.app",
    "LocalBackend": "dpfusion_chains.serve.local",
    "EngineWorker": "dpfusion_chains.serve.worker",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from dpfusion_chains.serve.app import create_app
    from dpfusion_chains.serve.auth import KeyStore, hash_key
    from dpfusion_chains.serve.client import RemoteEngine, RemoteError
    from dpfusion_chains.serve.config import ServeConfig
    from dpfusion_chains.serve.local import LocalBackend
    from dpfusion_chains.serve.worker import EngineWorker


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dpfusion_chains.serve' has no attribute {name!r}")
