"""Fixtures for the LangChain adapter tests: tiny engines (fast) and the embedded SmolLM2 (slow)."""

from __future__ import annotations

import pytest
import torch

from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.core.models import default_tokenizer
from dpfusion_chains.testing import tiny_engine

CANARIES = ("Zanzibar-7731 Quillfeather", "Okonkwo-5529 Brightwater")


def sensitive_tiny_engine(seed: int = 0) -> DPFusionEngine:
    """A tiny random Llama whose output depends on its context (untied embeddings, lm_head scaled
    alone), so that tests can observe whether private text influenced an answer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = default_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return DPFusionEngine(model.eval(), tok, device="cpu", detector="whole", model_name="tiny-sensitive")


@pytest.fixture(scope="session")
def engine() -> DPFusionEngine:
    return tiny_engine()


@pytest.fixture(scope="session")
def sensitive_engine() -> DPFusionEngine:
    return sensitive_tiny_engine()


@pytest.fixture(scope="session")
def smollm() -> DPFusionEngine:
    return DPFusionEngine.from_default(device="cpu", detector="whole")
