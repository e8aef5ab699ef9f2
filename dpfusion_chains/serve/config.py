"""Server configuration shared by the in-process app, the Ray deployments and `dpfusion serve`,
plus the two things every replica builds from it: the engine and the privacy budget."""

from __future__ import annotations

import importlib
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dpfusion_chains.core.params import DTypeName
from dpfusion_chains.core.prefix_cache import DEFAULT_TOKENS as PREFIX_CACHE_TOKENS

DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: far above any chat prompt the model's context window admits


class ServeConfig(BaseModel):
    """Everything a replica needs to rebuild the same engine and budget; picklable for Ray.

    ``model``: "default" (embedded SmolLM2), "tiny" (a random test model, see
    dpfusion_chains.testing), "module:function" (a factory returning a DPFusionEngine), or a
    Hugging Face id / local directory. ``defaults`` are GenerationSettings applied to every call
    unless the request overrides them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "default"
    device: str = "auto"
    dtype: DTypeName = "auto"  # the weights; fusion math is float32
    detector: str = "presidio"
    ledger: str | None = None
    budget_epsilon: float = Field(default=10.0, ge=0)
    budget_delta: float = Field(default=1e-5, gt=0, lt=1)
    budget_alpha: float = Field(default=8.0, gt=1)
    defaults: dict[str, Any] = Field(default_factory=lambda: {"max_new_tokens": 64})
    replicas: int = Field(default=1, ge=1)
    replica_cpus: float = Field(default=1.0, ge=0)
    torch_threads: int | None = Field(default=None, ge=1)
    compile: bool | Literal["auto"] = "auto"   # compiled decode steps (DPFusionEngine's `compile`)
    prefix_cache_tokens: int = Field(default=PREFIX_CACHE_TOKENS, ge=0)  # KV store of recent public views (0: off)
    max_batch_size: int = Field(default=8, ge=1)
    batch_wait_s: float = Field(default=0.01, ge=0)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    max_retries: int = Field(default=2, ge=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    @field_validator("defaults")
    @classmethod
    def _defaults(cls, v: dict[str, Any]) -> dict[str, Any]:
        from dpfusion_chains.core.params import make_settings

        make_settings(**v)  # fail at start-up, not on the first request
        return v

    def ledger_scheme(self) -> str:
        if not self.ledger:
            return "sqlite"  # PrivacyBudget's default: $DPFUSION_LEDGER or a SQLite file
        scheme = urlsplit(self.ledger).scheme.lower()
        if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
            return "postgresql"
        return scheme or "sqlite"  # a bare path is a SQLite file

    def check_for_ray(self) -> None:
        """Refuse ledgers that replicas on several processes or machines cannot share."""
        scheme = self.ledger_scheme()
        if scheme == "memory":
            raise ValueError("the memory:// ledger lives inside one process, so Ray replicas and the HTTP ingress "
                             "would each count a different budget; use --ledger postgresql://… (or sqlite:///… "
                             "for a single replica on one machine)")
        if self.replicas > 1 and scheme != "postgresql":
            raise ValueError(f"{self.replicas} replicas need a ledger they all share: the {scheme} ledger is refused "
                             "because replicas may run on other machines (a SQLite file is local to one). Start "
                             "PostgreSQL and pass --ledger postgresql://user@host/db")


def build_engine(config: ServeConfig) -> Any:
    """The engine a replica serves, loaded once per replica."""
    from dpfusion_chains.core.engine import DPFusionEngine

    spec = config.model
    if spec == "default":
        return DPFusionEngine.from_default(device=config.device, dtype=config.dtype, detector=config.detector,
                                           compile=config.compile, prefix_cache_tokens=config.prefix_cache_tokens)
    if spec == "tiny":
        from dpfusion_chains.testing import tiny_engine

        return tiny_engine(detector=config.detector, prefix_cache_tokens=config.prefix_cache_tokens)
    if ":" in spec and not spec.startswith((".", "/")):
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"--model {spec!r}: cannot import factory {attr!r} from {module_name!r}: {exc}") from exc
        return factory(detector=config.detector)
    return DPFusionEngine.from_pretrained(spec, device=config.device, dtype=config.dtype, detector=config.detector,
                                          compile=config.compile, prefix_cache_tokens=config.prefix_cache_tokens)


def open_budget(config: ServeConfig) -> Any:
    from dpfusion_chains.budget import PrivacyBudget

    return PrivacyBudget(epsilon=config.budget_epsilon, delta=config.budget_delta, alpha=config.budget_alpha,
                         ledger=config.ledger)
