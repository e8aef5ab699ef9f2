"""Fixtures of the bad-input sweep: the tiny engine every case runs on, and each case's world."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpfusion_chains import PrivacyBudget
from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.testing import tiny_engine

from audit_cases import Ctx, charges, spent


@pytest.fixture(scope="module")
def engine() -> DPFusionEngine:
    return tiny_engine(seed=11, detector="whole")


@pytest.fixture
def ctx(engine: DPFusionEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Ctx]:
    caplog.set_level(logging.DEBUG)
    budget = PrivacyBudget(epsilon=50.0, delta=1e-5, alpha=8.0, ledger="memory://")
    with budget.reserve({"doc-1"}, rdp=0.25, call_id="earlier-call") as r:  # spent ε must stay as it is
        r.settle(rdp=0.25, tokens=3)
    c = Ctx(engine, budget, f"Quillonbrae Vashti {secrets.token_hex(5)}", f"pw{secrets.token_hex(8)}", tmp_path,
            caplog)
    c.before, c.spent_before = charges(budget), spent(budget)
    yield c
    budget.close()
