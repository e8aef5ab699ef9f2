"""Fixtures of the server tests: the app over an in-process tiny engine (no Ray), keys of two
tenants, and a throwaway PostgreSQL server for the Ray tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from dpfusion_chains.budget import PrivacyBudget  # noqa: E402
from dpfusion_chains.serve.app import create_app  # noqa: E402
from dpfusion_chains.serve.auth import KeyStore  # noqa: E402
from dpfusion_chains.serve.config import ServeConfig  # noqa: E402
from dpfusion_chains.serve.local import LocalBackend  # noqa: E402
from dpfusion_chains.serve.worker import EngineWorker  # noqa: E402
from dpfusion_chains.testing import tiny_engine  # noqa: E402

ACME_KEY = "acme-key-0123456789abcdef"
GLOBEX_KEY = "globex-key-0123456789abcdef"
SECRET = "Jane Roe, MRN 443-21, admitted 3 May"  # must never appear in a response or a log


def auth(key: str = ACME_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat_body(unit: str = "rec-7", secret: str = SECRET, **fields: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": "Record: "},
               {"type": "text", "text": secret, "private": {"unit": unit}},
               {"type": "text", "text": "\nWhen was she admitted?"}]
    return {"model": "dpfusion", "messages": [{"role": "user", "content": content}], "epsilon": 3.0, "seed": 0,
            **fields}


@pytest.fixture(scope="session")
def h() -> SimpleNamespace:
    """Helpers for the test modules (conftest cannot be imported under --import-mode=importlib)."""
    return SimpleNamespace(auth=auth, chat_body=chat_body, SECRET=SECRET, ACME_KEY=ACME_KEY, GLOBEX_KEY=GLOBEX_KEY)


@pytest.fixture(scope="session")
def engine() -> Any:
    return tiny_engine(seed=0, detector="whole")


@pytest.fixture(scope="session")
def keys() -> KeyStore:
    return KeyStore.from_pairs([("acme", ACME_KEY), ("globex", GLOBEX_KEY)])


@pytest.fixture
def make_server(engine: Any, keys: KeyStore) -> Callable[..., tuple[TestClient, PrivacyBudget, EngineWorker]]:
    """(TestClient, budget, worker) over a fresh memory ledger; keyword arguments go to ServeConfig."""
    clients: list[TestClient] = []

    def make(budget_epsilon: float = 10.0, **options: Any) -> tuple[TestClient, PrivacyBudget, EngineWorker]:
        options.setdefault("defaults", {"max_new_tokens": 6})
        config = ServeConfig(model="tiny", detector="whole", ledger="memory://", budget_epsilon=budget_epsilon, **options)
        budget = PrivacyBudget(epsilon=budget_epsilon, delta=config.budget_delta, alpha=config.budget_alpha,
                               ledger="memory://")
        worker = EngineWorker(config, engine=engine, budget=budget)
        client = TestClient(create_app(LocalBackend(worker), keys, config))
        clients.append(client)
        return client, budget, worker

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def server(make_server: Callable[..., Any]) -> tuple[TestClient, PrivacyBudget, EngineWorker]:
    return make_server()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (or $DPFUSION_TEST_POSTGRES_URL)."""
    external = os.environ.get("DPFUSION_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    from dpfusion_chains.budget.pgtemp import TemporaryPostgres, find_pg_bin

    if find_pg_bin() is None:
        pytest.skip("SERVE POSTGRESQL TESTS SKIPPED: no PostgreSQL server binaries (make test installs them)")
    server = TemporaryPostgres(fsync=False)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"SERVE POSTGRESQL TESTS SKIPPED: could not start a local server: {exc}")
    yield server.url
    server.stop()
