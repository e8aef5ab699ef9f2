"""A bfloat16 model on a CPU: its layers packed where oneDNN computes bfloat16 (core.matmul), its
prefill and decode attention computed in float32 (core.prefill_attention, core.shared_prefix),
every step's bound met in the float64 audit, alone and batched (float16 too, unpacked); and the
dtype reaching the loader from the command line and the adapters."""

import pytest
import torch
from torch import nn

from dpfusion_chains.core import matmul, prefill_attention, shared_prefix
from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.core.spans import private
from dpfusion_chains.testing import default_tokenizer, tiny_model

RECORD = ("Patient Maria Lopez, born 1961-03-04, was admitted to St Anne's ward 4 with chest pain; "
          "her cardiologist Dr. Ivo Berg noted a prior stent and prescribed clopidogrel.")


def half_engine(dtype: torch.dtype = torch.bfloat16, **kwargs) -> DPFusionEngine:
    tokenizer = default_tokenizer()
    model = tiny_model(tokenizer, seed=5).to(dtype)
    return DPFusionEngine(model, tokenizer, device="cpu", detector="whole", model_name="tiny-bf16", **kwargs)


def messages(i: int) -> list[dict]:
    return [{"role": "system", "content": "Answer from the record in one sentence. " * 4},
            {"role": "user", "content": [f"Question {i}: what happened to the patient?\n", private(RECORD)]}]


def test_layers_are_packed_where_onednn_computes_bfloat16():
    engine = half_engine()
    linears = [m for m in engine.model.modules() if isinstance(m, nn.Linear)]
    packed = [m for m in linears if isinstance(m, matmul.PackedLinear)]
    assert linears and len(packed) == (len(linears) if matmul.packs_bfloat16() else 0)
    assert all(m.weight.dtype == torch.bfloat16 for m in linears)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_engine_decodes_in_float32_attention_within_its_audited_bound(dtype, monkeypatch):
    monkeypatch.setattr(prefill_attention, "MIN_QUERIES", 1)   # every piece through the oneDNN products
    monkeypatch.setattr(shared_prefix, "MIN_ROWS", 2)          # the opening read once, also for 2 rows
    monkeypatch.setattr(shared_prefix, "MIN_SAVED", 1)
    monkeypatch.setattr(shared_prefix, "MIN_TOKENS", 1)
    pieces, steps = [], []
    original_piece, original_step = prefill_attention.piece_attention, shared_prefix.SharedPrefix.attention
    monkeypatch.setattr(prefill_attention, "piece_attention",
                        lambda query, *a, **k: (pieces.append(query.dtype), original_piece(query, *a, **k))[1])
    monkeypatch.setattr(shared_prefix.SharedPrefix, "attention",
                        lambda self, query, *a: (steps.append(query.dtype), original_step(self, query, *a))[1])
    engine = half_engine(dtype, audit=True)
    alone = [engine.generate(messages(i), seed=i, max_new_tokens=6, beta=0.5) for i in range(3)]
    assert set(pieces) == {dtype} and set(steps) == {dtype}
    for result in alone:
        assert len(result.token_ids) == 6 and result.epsilon > 0
        assert result.audit_margin is not None and result.audit_margin >= 0   # every step within its bound
    batched = engine.generate_batch([{"messages": messages(i), "seed": i, "max_new_tokens": 6} for i in range(3)],
                                    beta=0.5)
    assert [len(r.token_ids) for r in batched] == [6, 6, 6]
    assert all(r.audit_margin is not None and r.audit_margin >= 0 for r in batched)
    assert [r.epsilon for r in batched] == [r.epsilon for r in alone]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_openings_are_planned_with_a_float32_mask(dtype):
    mask = torch.ones(4, 300, dtype=torch.bool)
    plan = shared_prefix.SharedPrefix.plan([0] * 4, 200, mask, dtype)
    assert plan is not None and all(b.mask.dtype == torch.float32 for b in plan.buckets)


@pytest.mark.parametrize("model", [None, "/models/any"])
def test_the_command_line_loads_the_dtype_it_is_given(model, monkeypatch):
    import argparse

    from dpfusion_chains.commands import _common

    loaded = []
    monkeypatch.setattr(DPFusionEngine, "from_default", classmethod(lambda cls, **kw: loaded.append(kw)))
    monkeypatch.setattr(DPFusionEngine, "from_pretrained", classmethod(lambda cls, path, **kw: loaded.append(kw)))
    parser = argparse.ArgumentParser()
    _common.add_engine_options(parser)
    _common.add_privacy_options(parser)
    args = parser.parse_args(["--dtype", "bfloat16", "--detector", "whole"] + (["--model", model] if model else []))
    _common.build_engine(args)
    assert loaded == [{"device": "auto", "dtype": "bfloat16", "detector": "whole"}]
    assert parser.parse_args([]).dtype == "auto"


def test_the_adapters_load_the_dtype_they_are_given(monkeypatch):
    from pydantic import ValidationError

    from dpfusion_chains.llms import langchain_base
    from dpfusion_chains.llms.langchain import ChatDPFusion
    from dpfusion_chains.llms.langchain_llm import DPFusionLLM
    from dpfusion_chains.llms.llama_index import DPFusionLlamaLLM

    loaded = []

    def load(cls, path=None, **kw):
        loaded.append((path, kw["dtype"]))
        return object()

    monkeypatch.setattr(DPFusionEngine, "from_default", classmethod(lambda cls, **kw: load(cls, **kw)))
    monkeypatch.setattr(DPFusionEngine, "from_pretrained", classmethod(load))
    monkeypatch.setattr(langchain_base, "_engines", {})
    chat = ChatDPFusion(dtype="bfloat16")
    assert chat.get_engine() is ChatDPFusion(dtype="bfloat16").get_engine()  # one engine per model, device, dtype
    DPFusionLLM(model="/models/any", dtype="bfloat16").get_engine()
    ChatDPFusion().get_engine()
    DPFusionLlamaLLM(dtype="bfloat16").engine
    DPFusionLlamaLLM(model="/models/any").engine
    assert loaded == [(None, "bfloat16"), ("/models/any", "bfloat16"), (None, "auto"), (None, "bfloat16"),
                      ("/models/any", "auto")]
    for make in (ChatDPFusion, DPFusionLlamaLLM):
        with pytest.raises(ValidationError, match="dtype"):
            make(dtype="int8")
