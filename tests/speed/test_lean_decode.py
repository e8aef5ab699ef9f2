"""core.lean_decode: a decode step of transformers' Llama as its ops alone gives transformers'
logits bit for bit at every step (grouped heads, biases, scaled rotary phases, more rows than the
compiled products take, their own products, bfloat16), so the decode loop samples the same
tokens; it is used only where it applies (the model's class, eval mode, no hooks, the engine's
attention, the switch) and where a probe step agrees with transformers' forward (one that fails
leaves the request to transformers' forward)."""

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from dpfusion_chains.core import decode, lean_decode, native_linear
from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.core.models import default_tokenizer

MESSAGES = [[{"role": "user", "content": f"Summarise the report on patient {name}'s visit."}]
            for name in ("Ada", "Brook", "Cyril", "Dana", "Emil", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea",
                         "Mo")]


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


def llama_engine(tokenizer, dtype=torch.float32, seed=0, probe=True, **config):
    """A DPFusionEngine over a small random LlamaForCausalLM with these config overrides; with
    `probe`, core.lean_decode's probe step already run (so it is not counted as a step)."""
    settings = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                    pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    settings.update(config)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**settings))
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)   # spread the logits, as testing.tiny_model does
    engine = DPFusionEngine(model.to(dtype).eval(), tokenizer, device="cpu", detector="whole")
    if probe:
        lean_decode.for_model(engine.model)
    return engine


def step_logits(engine, monkeypatch, requests, lean: bool):
    """Every decode step's logits (the batch's, in its order) and every request's tokens, with
    core.lean_decode on or off; and how many steps it computed."""
    monkeypatch.setenv(lean_decode.ENVIRONMENT, "1" if lean else "0")
    logits, lean_steps = [], []
    forward, lean_forward = decode.DecodeBatch._forward, lean_decode.LeanDecoder.forward

    def recorded(self, ids):
        forward(self, ids)
        logits.append(self.logits.clone())

    def counted(self, *args):
        lean_steps.append(1)
        return lean_forward(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(decode.DecodeBatch, "_forward", recorded)
        patch.setattr(lean_decode.LeanDecoder, "forward", counted)
        tokens = [r.token_ids for r in engine.generate_batch(requests)]
    return logits, tokens, len(lean_steps)


def requests_for(count, tokens=6):
    return [{"messages": MESSAGES[i], "seed": i, "max_new_tokens": tokens} for i in range(count)]


@pytest.mark.parametrize("case, config, requests", [
    ("grouped heads", {}, 3),
    ("biases", {"attention_bias": True, "mlp_bias": True}, 2),
    ("llama3 rotary scaling", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                   "original_max_position_embeddings": 16}}, 2),
    ("rows past the compiled products", {}, 13),                 # 26 rows: each layer's own products
    ("one key head per query head", {"num_key_value_heads": 4}, 1),
])
def test_every_step_gives_transformers_logits_bit_for_bit(tokenizer, monkeypatch, case, config, requests):
    engine = llama_engine(tokenizer, **config)
    batch = requests_for(requests)
    expected, expected_tokens, none = step_logits(engine, monkeypatch, batch, lean=False)
    got, tokens, steps = step_logits(engine, monkeypatch, batch, lean=True)
    assert none == 0 and steps == len(got) == len(expected) > 0
    assert tokens == expected_tokens
    assert all(torch.equal(a, b) for a, b in zip(got, expected)), case


def test_with_the_layers_own_products_and_in_bfloat16(tokenizer, monkeypatch):
    engine = llama_engine(tokenizer)
    with native_linear.disabled():                               # packed and joint sibling products
        expected, _, _ = step_logits(engine, monkeypatch, requests_for(2), lean=False)
        got, _, steps = step_logits(engine, monkeypatch, requests_for(2), lean=True)
    assert steps and all(torch.equal(a, b) for a, b in zip(got, expected))
    engine = llama_engine(tokenizer, dtype=torch.bfloat16)
    expected, _, _ = step_logits(engine, monkeypatch, requests_for(2), lean=False)
    got, _, steps = step_logits(engine, monkeypatch, requests_for(2), lean=True)
    assert steps and got[0].dtype == torch.bfloat16 and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_it_is_used_only_where_it_applies(tokenizer, monkeypatch):
    engine = llama_engine(tokenizer)
    model = engine.model
    assert lean_decode.for_model(model) is not None
    monkeypatch.setenv(lean_decode.ENVIRONMENT, "0")
    assert lean_decode.for_model(model) is None
    monkeypatch.delenv(lean_decode.ENVIRONMENT)
    with lean_decode.disabled():
        assert lean_decode.for_model(model) is None
    assert lean_decode.for_model(model) is not None
    model.train()
    assert lean_decode.for_model(model) is None                  # dropout would apply
    model.eval()
    handle = model.model.layers[1].mlp.register_forward_hook(lambda *args: None)
    assert lean_decode.for_model(model) is None                  # it would skip the hook
    handle.remove()
    handle = nn.modules.module.register_module_forward_pre_hook(lambda *args: None)
    assert lean_decode.for_model(model) is None                  # a hook on every module
    handle.remove()
    assert lean_decode.for_model(model) is not None

    class OwnLlama(LlamaForCausalLM):                            # a subclass may compute otherwise
        pass

    own = OwnLlama(model.config).eval()
    assert lean_decode.for_model(own) is None
    unpacked = DPFusionEngine(llama_engine(tokenizer, seed=1).model, tokenizer, device="cpu", detector="whole",
                              packed_prefill=False)               # transformers' own SDPA attention
    assert lean_decode.for_model(unpacked.model) is None
    assert lean_decode.for_model("not a model") is None


def test_a_forward_that_computes_otherwise_keeps_its_own(tokenizer, monkeypatch, caplog):
    """The probe step: a Llama whose layers compute something else (as another transformers
    version might) is left to transformers' forward, and the loop samples what that computes."""
    from transformers.models.llama import modeling_llama

    engine = llama_engine(tokenizer, seed=2, probe=False)
    stock = modeling_llama.LlamaMLP.forward
    monkeypatch.setattr(modeling_llama.LlamaMLP, "forward", lambda self, x: stock(self, x) * 0.5)
    with caplog.at_level("INFO", logger=lean_decode.__name__):
        assert lean_decode.for_model(engine.model) is None
    assert "disagree on a probe step" in caplog.text
    _, tokens, steps = step_logits(engine, monkeypatch, requests_for(2), lean=True)
    assert steps == 0
    _, expected, _ = step_logits(engine, monkeypatch, requests_for(2), lean=False)
    assert tokens == expected


def test_a_probe_that_fails_leaves_the_model_to_transformers(tokenizer, monkeypatch, caplog):
    engine = llama_engine(tokenizer, seed=3, probe=False)

    def failing(*args, **kwargs):
        raise RuntimeError("a private detail that must not reach the log")

    monkeypatch.setattr(lean_decode, "_agrees", failing)
    with caplog.at_level("INFO", logger=lean_decode.__name__):
        assert lean_decode.for_model(engine.model) is None
        assert lean_decode.for_model(engine.model) is None       # decided once
    assert caplog.text.count("probe step failed (RuntimeError)") == 1 and "private detail" not in caplog.text
    _, tokens, steps = step_logits(engine, monkeypatch, requests_for(1), lean=True)
    assert steps == 0 and len(tokens) == 1 and tokens[0]                 # the request was answered
