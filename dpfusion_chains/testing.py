"""Test helpers for users and for this project's suite: a tiny random chat model that loads in
milliseconds, with the embedded model's real tokenizer and chat template (no network)."""

from __future__ import annotations

from typing import Any

import torch

from dpfusion_chains.core.detect import DetectedSpan, Detector
from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.core.models import default_tokenizer


def tiny_model(tokenizer: Any, seed: int = 0, hidden_size: int = 32, layers: int = 2) -> Any:
    """A randomly initialised Llama-architecture causal LM sized for unit tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # spread the logits so that sampling is not uniform noise
        model.lm_head.weight.mul_(20.0)
    return model.eval()


def tiny_engine(seed: int = 0, detector: str = "whole", **kwargs: Any) -> DPFusionEngine:
    """A DPFusionEngine over `tiny_model`; whole-segment detection by default (no spaCy)."""
    tokenizer = default_tokenizer()
    return DPFusionEngine(tiny_model(tokenizer, seed), tokenizer, device="cpu", detector=detector,
                          model_name="tiny-random-llama", **kwargs)


class FixedDetector(Detector):
    """Marks every occurrence of the given words (a deterministic stand-in for NER in unit tests)."""

    name = "fixed"

    def __init__(self, words: dict[str, str]):
        self.words = words

    def detect(self, text: str) -> list[DetectedSpan]:
        spans = []
        for word, kind in self.words.items():
            start = text.find(word)
            while start >= 0:
                spans.append(DetectedSpan(start, start + len(word), kind))
                start = text.find(word, start + 1)
        return spans
