"""Bottleneck adapters: placement, exact base outputs at init, gradients, LayerNorms trained as copies."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import GPT, GPTConfig, GPTForSequenceClassification
from minilora.nn.gradcheck import check_module_grad
from minilora.peft import AdapterConfig, BottleneckAdapter, get_peft_model

CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def tiny(device, cls=GPT, *args):
    ml.manual_seed(0)
    return cls(CFG, *args).to(device)


@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer"])
def test_placement_and_exact_init(device, rng, placement):
    model = tiny(device)
    x = backend.to_device(rng.integers(0, 11, (2, 5)), device)
    ref = model(x)[0].numpy()
    peft = get_peft_model(model, AdapterConfig(bottleneck=3, placement=placement))
    wrapped = [n for n, _ in peft.peft_layers()]
    subs = ("attn", "mlp") if placement == "houlsby" else ("mlp",)
    assert wrapped == [f"transformer.h.{i}.{s}" for i in range(2) for s in subs]
    assert all(isinstance(m, BottleneckAdapter) for _, m in peft.peft_layers())
    shapes = {n: p.shape for n, p in peft.named_parameters() if p.requires_grad}
    assert shapes["transformer.h.0.mlp.adapter_down.weight"] == (3, 8)
    assert shapes["transformer.h.0.mlp.adapter_up.weight"] == (8, 3)
    assert not peft.get_submodule("transformer.h.0.mlp.adapter_up").weight.numpy().any()
    np.testing.assert_array_equal(peft(x)[0].numpy(), ref)
    assert peft.transformer.h[0].attn.n_head == 2  # the wrapped sublayer's attributes stay reachable


def test_forward_is_residual_bottleneck(device, rng):
    peft = get_peft_model(tiny(device), AdapterConfig(bottleneck=3, placement="pfeiffer", activation="relu"))
    layer = peft.get_submodule("transformer.h.0.mlp")
    layer.adapter_up.weight.data = backend.to_device(rng.standard_normal((8, 3)), device, np.float32)
    h = ml.tensor(rng.standard_normal((2, 3, 8)), device=device, dtype=np.float32)
    inner = layer.base_layer(h).numpy()
    d, u = layer.adapter_down, layer.adapter_up
    ref = inner + np.maximum(inner @ d.weight.numpy().T + d.bias.numpy(), 0) @ u.weight.numpy().T + u.bias.numpy()
    np.testing.assert_allclose(layer(h).numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("classifier", [False, True])
def test_gradcheck_through_frozen_model(device, rng, classifier):
    model = (tiny(device, GPTForSequenceClassification, 3) if classifier else tiny(device)).double()
    peft = get_peft_model(model, AdapterConfig(bottleneck=2, train_layernorms=True, activation="tanh"))
    for n, p in peft.named_parameters():
        if "adapter_up" in n:
            p.data = backend.to_device(0.5 * rng.standard_normal(p.shape), device)
    x = backend.to_device(rng.integers(0, 11, (2, 4)), device)
    y = backend.to_device(rng.integers(0, 3, (2,) if classifier else (2, 4)), device)
    pe = backend.to_device(rng.standard_normal((2, 8)), device)
    check_module_grad(peft, lambda i, t, e: peft(i, t, prompt_embeds=e)[1], [x, y, pe], full_max=0)


def test_train_layernorms_trains_copies():
    peft = get_peft_model(tiny("cpu"), AdapterConfig(train_layernorms=True))
    trainable = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert "transformer.ln_f.modules_to_save.weight" in trainable
    assert "transformer.h.0.ln_1.modules_to_save.bias" in trainable
    assert "transformer.ln_f.base_layer.weight" not in trainable
