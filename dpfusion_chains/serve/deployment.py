"""Ray Serve deployment: an HTTP ingress and N model replicas sharing one PostgreSQL ledger.

    DPFusionIngress (FastAPI app, keys, request checks; no model, no CPU reserved)
        └─ handle ─> DPFusionModel × N (engine loaded once per replica; `@serve.batch` packs
                     concurrent calls into one `engine.generate_batch` decode loop)

Every replica opens its own `PrivacyBudget` on the same ledger URL; the ledger's atomic
reservations keep each unit within its limit whichever replica serves it. When a replica dies
mid-call the ingress retries the call on another replica under the same call id: the dead call's
open reservation (charged at the worst case) covers the retry, so nothing is charged twice (see
worker.py for the one case that is refused instead).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from dpfusion_chains._optional import require

require("ray", "serve", "the Ray Serve deployment")

from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle

from dpfusion_chains.serve.app import create_app
from dpfusion_chains.serve.auth import KeyStore
from dpfusion_chains.serve.config import ServeConfig, open_budget
from dpfusion_chains.serve.worker import CallError, CallOutcome, EngineCall, EngineWorker, iterate_in_thread

logger = logging.getLogger("dpfusion_chains.serve")

APP_NAME = "dpfusion"
# Replicas must never reach a model hub; on a cluster they do not inherit the driver's environment.
REPLICA_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@serve.deployment(name="DPFusionModel", health_check_period_s=10, graceful_shutdown_timeout_s=30)
class DPFusionModel:
    """One engine per replica."""

    def __init__(self, config: ServeConfig) -> None:
        self.worker = EngineWorker(config)
        self.generate.set_max_batch_size(config.max_batch_size)
        self.generate.set_batch_wait_timeout_s(config.batch_wait_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # reset from the config in __init__
    async def generate(self, calls: list[EngineCall]) -> list[CallOutcome]:
        # The decode loop blocks: run it off the replica's event loop so new calls keep queueing.
        return await asyncio.to_thread(self.worker.run_batch, calls)

    async def stream(self, call: EngineCall) -> AsyncIterator[dict[str, Any]]:
        async for event in iterate_in_thread(lambda: self.worker.stream(call)):
            yield event

    def info(self) -> dict[str, Any]:
        return self.worker.info()


def _replica_died(exc: BaseException) -> bool:
    # Unavailable is not dead: that replica may still be running the call, so a rerun could settle twice.
    return isinstance(exc, ActorDiedError) or (isinstance(exc, RayActorError) and not isinstance(exc, ActorUnavailableError))


def _lost(exc: BaseException) -> CallError:
    if not _replica_died(exc):
        return CallError(503, "service_unavailable", f"the model replica could not run this request "
                         f"({type(exc).__name__}); any reservation it made stays charged in full")
    return CallError(503, "service_unavailable",
                     f"the model replica serving this request stopped ({type(exc).__name__}); any reservation it made "
                     "stays charged in full and no answer was returned. Send the request again.")


class RayBackend:
    """The app's `Backend` over a handle to the model deployment, with retries on replica death."""

    def __init__(self, model: DeploymentHandle, config: ServeConfig) -> None:
        self.model = model
        self.config = config
        self.budget = open_budget(config)

    async def generate(self, call: EngineCall) -> CallOutcome:
        for attempt in range(self.config.max_retries + 1):
            try:
                return await self.model.generate.remote(call)
            except Exception as exc:  # noqa: BLE001 - becomes this call's outcome
                if not _replica_died(exc) or attempt == self.config.max_retries:
                    logger.warning("call %s failed: %s", call.call_id, type(exc).__name__)
                    return CallOutcome(call.call_id, error=_lost(exc))
                logger.warning("call %s: replica died, retrying under the same call id", call.call_id)
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    async def stream(self, call: EngineCall) -> AsyncIterator[dict[str, Any]]:
        for attempt in range(self.config.max_retries + 1):
            events = self.model.options(stream=True).stream.remote(call)
            sent, finished = False, False
            try:
                async for event in events:
                    sent = True
                    yield event
                finished = True
                return
            except Exception as exc:  # noqa: BLE001 - reported as the stream's last event
                finished = True
                if sent or not _replica_died(exc) or attempt == self.config.max_retries:
                    yield {"outcome": CallOutcome(call.call_id, error=_lost(exc))}
                    return
                await asyncio.sleep(0.5 * (attempt + 1))
            finally:
                if not finished:  # the client went away: stop the replica's stream (it is charged in full)
                    events.cancel()

    async def info(self) -> dict[str, Any]:
        return await self.model.info.remote()


@serve.deployment(name="DPFusionIngress", max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class DPFusionIngress:
    def __init__(self, model: DeploymentHandle, config: ServeConfig, keys: KeyStore) -> None:
        self._asgi = create_app(RayBackend(model, config), keys, config)  # ('app' is taken by Serve's wrapper)

    def __serve_build_asgi_app__(self) -> Any:
        return self._asgi


def build_app(config: ServeConfig, keys: KeyStore) -> Any:
    """The Ray Serve application (ingress bound to N model replicas)."""
    config.check_for_ray()
    model = DPFusionModel.options(
        num_replicas=config.replicas,
        max_ongoing_requests=max(16, 2 * config.max_batch_size),  # room for @serve.batch to fill a batch
        ray_actor_options={"num_cpus": config.replica_cpus, "runtime_env": {"env_vars": REPLICA_ENV}},
    ).bind(config)
    return DPFusionIngress.bind(model, config, keys)


def run(config: ServeConfig, keys: KeyStore, *, address: str | None = None, blocking: bool = False) -> str:
    """Start (or join) Ray, start Serve's HTTP proxy on config.host:port and deploy. Returns the URL."""
    import ray

    config.check_for_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, runtime_env={"env_vars": REPLICA_ENV})
    serve.start(http_options={"host": config.host, "port": config.port})
    serve.run(build_app(config, keys), name=APP_NAME, route_prefix="/", blocking=blocking)
    return f"http://{config.host}:{config.port}"
