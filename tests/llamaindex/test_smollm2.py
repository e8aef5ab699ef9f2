"""One query end to end on the embedded SmolLM2 (slow: ~5-10 tokens/s on this CPU)."""

from __future__ import annotations

import math

import pytest

from dpfusion_chains.callbacks.leak_guard import LeakGuard
from dpfusion_chains.core.accounting import rdp_to_epsilon
from dpfusion_chains.retrievers.llama_index import PrivateNodePostprocessor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smollm():
    from dpfusion_chains.core.engine import DPFusionEngine

    return DPFusionEngine.from_default(device="cpu", detector="whole")


@pytest.mark.parametrize("mode", ["compact", "tree_summarize"])
def test_smollm2_query(mode, smollm, kit, make_llm, collector):
    cans = kit.canaries("SMOL", 2)
    index = kit.make_index({f"rec-{i}": kit.record_text(i, c, repeat=4) for i, c in enumerate(cans)})
    # A small window makes LlamaIndex split the two records over several calls.
    llm = make_llm(smollm, max_new_tokens=8, context_window=760, temperature=0.7)
    engine = index.as_query_engine(llm=llm, node_postprocessors=[PrivateNodePostprocessor()], response_mode=mode,
                                   similarity_top_k=2)
    response = engine.query("When was the patient admitted?")
    report = response.metadata["dpfusion"]
    calls = collector.calls_of(report["query_id"])
    assert len(calls) == report["calls"] >= 1 and report["calls_with_private"] == report["calls"]
    assert all(c.private_segments >= 1 and c.epsilon > 0 for c in calls)
    for unit in report["units"]:
        rdp = math.fsum(c.unit_rdp.get(unit, 0.0) for c in calls)
        assert report["unit_epsilon"][unit] == pytest.approx(rdp_to_epsilon(rdp, 2.0, 1e-5))
    guard = LeakGuard(cans, mode="record", markers=True)
    guard.check("metadata", response.metadata)
    guard.check("events", [c.model_dump() for c in calls])
    guard.check("answer", str(response))
    guard.assert_clean()
