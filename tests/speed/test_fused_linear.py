"""Sibling projections as one product (core.fused_linear): each sibling gets what its own product
gives, from one joint product, only when called in order on the same tensor in the same thread;
stock behaviour outside the engine; repacked when a weight changes; only transformers' attention
and MLP modules grouped; the engine samples the same tokens either way."""

import threading

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from dpfusion_chains.core import fused_linear, matmul
from dpfusion_chains.core.fused_linear import FusedLinear
from dpfusion_chains.core.matmul import PackedLinear, active


pytestmark = [pytest.mark.skipif(not matmul.onednn_available(), reason="this torch has no oneDNN linear op"),
              pytest.mark.usefixtures("own_linear_products")]


def tiny_llama(bias: bool = False, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(model with packed, grouped layers, an untouched copy)."""
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attention_bias=bias, mlp_bias=bias)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    reference = LlamaForCausalLM(config).eval()
    reference.load_state_dict(model.state_dict())
    matmul.install(model, pack=True)
    assert fused_linear.install(model) == 2 * 2  # attention and MLP of each layer
    return model, reference


def siblings(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    layer = model.model.layers[0]
    attention, mlp = layer.self_attn, layer.mlp
    return [attention.q_proj, attention.k_proj, attention.v_proj], [mlp.gate_proj, mlp.up_proj]


def count_products(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    real = fused_linear.onednn_linear

    def counted(rows, weight, bias=None):
        out = real(rows, weight, bias)
        calls.append(tuple(out.shape))
        return out

    monkeypatch.setattr(fused_linear, "onednn_linear", counted)
    return calls


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(2, 32), (3, 5, 32), (1, 700, 32)])
def test_each_sibling_gets_its_own_product_from_one_joint_product(bias, shape, monkeypatch):
    model, reference = tiny_llama(bias)
    calls = count_products(monkeypatch)
    x = torch.randn(shape)
    for group, twins in zip(siblings(model), siblings(reference)):
        with torch.inference_mode(), active():
            outs = [member(x) for member in group]
        for out, twin in zip(outs, twins):
            assert out.shape == shape[:-1] + (twin.out_features,)
            assert torch.allclose(out, twin(x), atol=1e-5)
    rows = x.numel() // 32
    assert calls == [(rows, 32 + 16 + 16), (rows, 48 + 48)]  # query 32, key and value 2·8; gate and up 48


def test_no_member_packs_a_copy_of_its_own_weight(monkeypatch):
    model, _ = tiny_llama()
    packed = []
    real = matmul.pack_weight
    monkeypatch.setattr(matmul, "pack_weight", lambda weight: packed.append(tuple(weight.shape)) or real(weight))
    with torch.no_grad(), active():
        for x in (torch.randn(2, 32), torch.randn(1, 700, 32)):  # a decode step, a prefill
            for group in siblings(model):
                for member in group:
                    member(x)
    assert packed == []  # only the stacked weights, packed by their groups


def test_a_sibling_in_another_thread_computes_its_own(monkeypatch):
    model, reference = tiny_llama()
    (query, key, value), _ = siblings(model)
    (_, key_twin, value_twin), _ = siblings(reference)
    calls = count_products(monkeypatch)
    x = torch.randn(4, 32)
    seen = []

    def in_thread():
        with torch.no_grad(), active():
            seen.append(torch.allclose(key(x), key_twin(x), atol=1e-5))

    with torch.no_grad(), active():
        query(x)
        worker = threading.Thread(target=in_thread)
        worker.start()
        worker.join()
        assert seen == [True] and len(calls) == 1
        assert torch.allclose(key(x), key_twin(x), atol=1e-5) and torch.allclose(value(x), value_twin(x), atol=1e-5)
        query(x), key(x), value(x)
    assert len(calls) == 2  # the other thread's key computed its own; ours took their slices


@pytest.mark.parametrize("misstep", ["other tensor", "out of order", "skipped"])
def test_siblings_whose_slices_go_untaken_compute_apart_from_then_on(misstep, monkeypatch, caplog):
    model, reference = tiny_llama()
    (query, key, value), _ = siblings(model)
    twins = siblings(reference)[0]
    calls = count_products(monkeypatch)
    x, other = torch.randn(4, 32), torch.randn(4, 32)
    with caplog.at_level("INFO", logger=fused_linear.__name__), torch.no_grad(), active():
        query(x)
        if misstep == "other tensor":
            assert torch.allclose(key(other), twins[1](other), atol=1e-5)
        elif misstep == "out of order":
            assert torch.allclose(value(x), twins[2](x), atol=1e-5)
        assert torch.allclose(query(x), twins[0](x), atol=1e-5)   # "skipped": query again, key never came
        for member, twin in zip((key, value), twins[1:]):
            assert torch.allclose(member(x), twin(x), atol=1e-5)
    assert len(calls) == 1 and "compute apart" in caplog.text


def test_outside_the_engine_every_layer_computes_exactly_as_nn_linear(monkeypatch):
    model, reference = tiny_llama(bias=True)
    calls = count_products(monkeypatch)
    x = torch.randn(3, 32)
    for group, twins in zip(siblings(model), siblings(reference)):
        for member, twin in zip(group, twins):
            assert torch.equal(member(x), twin(x))
    assert calls == []


def test_a_changed_weight_is_packed_again(monkeypatch):
    model, reference = tiny_llama()
    (query, key, value), _ = siblings(model)
    (_, _, value_twin), _ = siblings(reference)
    calls = count_products(monkeypatch)
    x = torch.randn(2, 32)
    with torch.no_grad(), active():
        query(x), key(x), value(x)
        value.weight.mul_(-2.0)
        value_twin.weight.mul_(-2.0)
        query(x), key(x)
        assert torch.allclose(value(x), value_twin(x), atol=1e-5)
    assert len(calls) == 2


def test_with_gradients_every_layer_computes_its_own_product(monkeypatch):
    model, reference = tiny_llama()
    calls = count_products(monkeypatch)
    x = torch.randn(2, 32)
    with active():
        for member, twin in zip(siblings(model)[0], siblings(reference)[0]):
            assert torch.allclose(member(x), twin(x), atol=1e-5)
    assert calls == []


def test_the_model_computes_the_same_logits_with_grouped_layers():
    model, reference = tiny_llama(bias=True)
    ids = torch.randint(0, 64, (3, 9))
    with torch.inference_mode(), active():
        logits = model(input_ids=ids).logits
    assert torch.allclose(logits, reference(input_ids=ids).logits.detach(), atol=1e-4)


def test_only_packed_siblings_of_transformers_modules_of_one_input_size_and_bias_are_grouped():
    class Attention(nn.Module):  # not transformers' code: its use of the outputs is unknown
        def __init__(self):
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj = nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(8, 4)

    custom = Attention()
    matmul.install(custom, pack=True)
    assert fused_linear.install(custom) == 0 and type(custom.q_proj) is PackedLinear

    model, _ = tiny_llama()
    assert fused_linear.install(model) == 0  # grouped once
    mixed = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2))
    mixed.model.layers[0].self_attn.k_proj = nn.Linear(32, 16, bias=True)  # biases not all alike
    matmul.install(mixed, pack=True)
    assert fused_linear.install(mixed) == 1  # the MLP only
    assert type(mixed.model.layers[0].self_attn.q_proj) is PackedLinear
    unpacked = LlamaForCausalLM(mixed.config)
    matmul.install(unpacked, pack=False)
    assert fused_linear.install(unpacked) == 0


def test_uninstall_gives_every_layer_its_own_product_back(monkeypatch):
    model, reference = tiny_llama()
    fused_linear.uninstall(model)
    assert not any(type(m) is FusedLinear for m in model.modules())
    calls = count_products(monkeypatch)
    x = torch.randn(2, 32)
    with torch.no_grad(), active():
        for member, twin in zip(siblings(model)[0], siblings(reference)[0]):
            assert torch.allclose(member(x), twin(x), atol=1e-5)
    assert calls == []


def test_the_engine_samples_the_same_tokens_with_and_without_joint_products(draws):
    from dpfusion_chains.testing import tiny_engine

    engine = tiny_engine(seed=3)
    assert any(type(m) is FusedLinear for m in engine.model.modules())
    msgs = [{"role": "user", "content": "Summarise the weather report for Tuesday."}]
    requests = [{"messages": msgs, "seed": s, "max_new_tokens": 8} for s in range(3)]
    with draws.run("joint"):
        joint = [r.token_ids for r in engine.generate_batch(requests)]
    fused_linear.uninstall(engine.model)
    with draws.run("apart"):
        assert [r.token_ids for r in engine.generate_batch(requests)] == joint
    draws.assert_close("joint", "apart")


def test_where_onednn_cannot_pack_the_stacked_weight_every_layer_computes_its_own(monkeypatch, caplog):
    model, reference = tiny_llama()

    def refuse(weight):
        raise RuntimeError("unsupported")

    monkeypatch.setattr(fused_linear, "pack_weight", refuse)
    calls = count_products(monkeypatch)
    x = torch.randn(2, 32)
    with caplog.at_level("INFO", logger=fused_linear.__name__), torch.no_grad(), active():
        for member, twin in zip(siblings(model)[0], siblings(reference)[0]):
            assert torch.allclose(member(x), twin(x), atol=1e-5)
    assert calls == [] and "they compute apart" in caplog.text and "unsupported" not in caplog.text


def test_computing_apart_keeps_the_stacked_weights_for_afterwards(monkeypatch):
    model, reference = tiny_llama()
    packs = []
    real = fused_linear.pack_weight
    monkeypatch.setattr(fused_linear, "pack_weight", lambda weight: packs.append(tuple(weight.shape)) or real(weight))
    calls = count_products(monkeypatch)
    x = torch.randn(2, 32)
    with torch.no_grad(), active():
        for member in siblings(model)[0]:
            member(x)
        with fused_linear.computing_apart(model):
            for member, twin in zip(siblings(model)[0], siblings(reference)[0]):
                assert torch.allclose(member(x), twin(x), atol=1e-5)
        for member in siblings(model)[0]:
            member(x)
    assert len(calls) == 2 and packs == [(64, 32)]  # one joint product before, one after; packed once


def test_computing_apart_gives_an_engine_one_product_each_for_its_duration(monkeypatch):
    from dpfusion_chains.testing import tiny_engine

    engine = tiny_engine(seed=2)
    fused = [m for m in engine.model.modules() if type(m) is FusedLinear]
    assert len(fused) == 2 * 5  # two layers: query, key, value; gate, up
    joint = []
    real = fused_linear.onednn_linear
    monkeypatch.setattr(fused_linear, "onednn_linear", lambda *a: joint.append(1) or real(*a))
    msgs = [{"role": "user", "content": "Summarise the weather report for Tuesday."}]
    text = engine.generate(msgs, seed=1, max_new_tokens=6).text
    assert joint
    joint.clear()
    with fused_linear.computing_apart(engine.model):
        assert engine.generate(msgs, seed=1, max_new_tokens=6).text == text
    assert joint == []
    assert engine.generate(msgs, seed=1, max_new_tokens=6).text == text and joint  # joint again after
