"""Decode steps over left-padded rows give every row the logits of its own tokens, with the
engine's additive mask (sdpa and eager attention) and with transformers' own cache on a model
with sliding-window layers."""

import pytest
import torch

from dpfusion_chains.core.decode import DecodeBatch, DecodeRequest
from dpfusion_chains.core.spans import private


def padded_steps_match_each_row_alone(model, rows):
    """One request of `rows` (left-padded) in a DecodeBatch, two decode steps over the padded cache
    (each row given tokens 6, then 7): every row's logits are those of its tokens alone. The batch."""
    with torch.inference_mode():
        batch = DecodeBatch(model, None, torch.device("cpu"), pad_id=0)
        batch.add([DecodeRequest(rows=rows, bound=0.05, order=4.0, max_new_tokens=3,
                                 generator=torch.Generator().manual_seed(4))])
        assert batch.padded
        for token in (6, 7):
            batch._forward(torch.tensor([[token]] * len(rows)))
        for row, logits in zip(rows, batch.logits):
            alone = model(input_ids=torch.tensor([row + [6, 7]])).logits[0, -1]
            assert torch.allclose(logits, alone, atol=1e-4)
    return batch


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_padded_decode_step_gives_every_row_the_logits_of_its_tokens_alone(attention):
    from dpfusion_chains.core.kvcache import additive_mask
    from dpfusion_chains.core.models import default_tokenizer
    from dpfusion_chains.testing import tiny_model

    model = tiny_model(default_tokenizer(), seed=6)
    model.set_attn_implementation(attention)  # eager attention adds the mask to its scores
    rows = [[1, 77, 300, 301, 302], [1, 77, 300, 9, 9, 9], [1, 77, 5]]  # a public view and two groups
    assert not padded_steps_match_each_row_alone(model, rows).mask.all()
    mask = torch.tensor([[False, True, True]])
    assert additive_mask(mask, torch.float32).tolist() == [[[[float("-inf"), 0.0, 0.0]]]]


def tiny_mistral(vocab_size=256, pad_token_id=0):
    """A model with sliding-window layers (a 16-token window): transformers' own cache keeps only
    the window, so the decode loop cannot assemble it (core.kvcache)."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=16, pad_token_id=pad_token_id)
    torch.manual_seed(7)
    return MistralForCausalLM(config).eval()


def test_a_sliding_window_model_decodes_each_padded_row_as_it_would_alone():
    """Rows prefilled whole and left-padded (no padding inside a row's window), and decode steps
    giving transformers the 2-D mask to build each layer type's mask from."""
    from dpfusion_chains.core.kvcache import supports_reserved_cache

    model = tiny_mistral()
    assert not supports_reserved_cache(model)
    rows = [[1, *range(100, 130)], [1, *range(100, 120), *range(200, 215)], [1, *range(100, 110)]]
    padded_steps_match_each_row_alone(model, rows)


def test_the_cache_layout_is_probed_once_per_model_and_again_for_a_new_config(monkeypatch):
    from transformers import MistralConfig

    from dpfusion_chains.core import kvcache

    probes = []
    probe = kvcache._probe_layers
    monkeypatch.setattr(kvcache, "_probe_layers", lambda config: probes.append(config) or probe(config))
    model = tiny_mistral()
    assert not kvcache.supports_reserved_cache(model) and kvcache.new_cache(model) is None
    assert len(probes) == 1
    model.config = MistralConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, sliding_window=None)  # no window
    assert kvcache.supports_reserved_cache(model) and isinstance(kvcache.new_cache(model), kvcache.ReservedCache)
    assert len(probes) == 2


def test_an_engine_on_a_sliding_window_model_decodes_past_the_window():
    """It once failed at its first decode step, the prompt being longer than the window: a 4-D
    mask of the whole row against a layer's window-sized keys."""
    from dpfusion_chains.core.engine import DPFusionEngine
    from dpfusion_chains.core.models import default_tokenizer

    tokenizer = default_tokenizer()
    engine = DPFusionEngine(tiny_mistral(len(tokenizer), tokenizer.pad_token_id), tokenizer, device="cpu",
                            detector="whole")
    messages = [{"role": "system", "content": "Answer from the record."},
                {"role": "user", "content": ["Record: ", private("Jane Roe, admitted 3 May", unit="rec-7"),
                                             "\nWhen was she admitted?"]}]
    results = [engine.generate(messages, beta=0.05, max_new_tokens=40, seed=2) for _ in range(2)]
    assert len(results[0].token_ids) > 1 and results[0].token_ids == results[1].token_ids
