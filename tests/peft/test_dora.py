"""DoRA: W' = m (W0 + s B A) / ||W0 + s B A||_row, exact base at init, gradients with the norm held constant."""

from __future__ import annotations

import numpy as np

import minilora as ml
from minilora import backend
from minilora.nn import GPT, GPTConfig, Linear
from minilora.nn.gradcheck import check_module_grad
from minilora.peft import LoraConfig, LoraLinear, get_peft_model

CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def dora_layer(device, rng):
    ml.manual_seed(0)
    base = Linear(6, 5).to(device)
    layer = LoraLinear(base)
    layer.add_adapter("default", LoraConfig(r=2, lora_alpha=4, use_dora=True), activate=True)
    return base, layer


def test_forward_matches_the_formula(device, rng):
    base, layer = dora_layer(device, rng)
    W0, b = base.weight.numpy(), base.bias.numpy()
    np.testing.assert_allclose(layer.lora_magnitude.numpy(), np.linalg.norm(W0, axis=1), rtol=1e-6)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    tx = ml.tensor(x, device=device)
    np.testing.assert_array_equal(layer(tx).numpy(), base(tx).numpy())  # m = ||W0||, B = 0: exactly the base
    layer.lora_B.data = backend.to_device(rng.standard_normal((5, 2)), device, np.float32)
    layer.lora_magnitude.data = backend.to_device(rng.uniform(0.5, 2.0, 5), device, np.float32)
    V = W0 + 2.0 * layer.lora_B.numpy() @ layer.lora_A.numpy()
    W = layer.lora_magnitude.numpy()[:, None] * V / np.linalg.norm(V, axis=1, keepdims=True)
    np.testing.assert_allclose(layer(tx).numpy(), x @ W.T + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.to_host(layer.delta_weight() + base.weight.data), W, rtol=1e-5, atol=1e-6)


def test_gradcheck_with_the_norm_held_constant(device, rng):
    """The paper detaches ||V||: backward is the exact gradient of the function with the norm fixed."""
    ml.manual_seed(0)
    model = GPT(CFG).to(device).double()
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=("c_attn", "mlp.c_proj"), use_dora=True))
    layers = [m for _, m in peft.peft_layers()]
    for layer in layers:
        layer.lora_B.data = backend.to_device(0.3 * rng.standard_normal(layer.lora_B.shape), device)
        layer.lora_magnitude.data = layer.lora_magnitude.data * 1.3
        layer.dora_fixed_norm = layer._dora_norm()
    x, y = (backend.to_device(rng.integers(0, 11, (2, 4)), device) for _ in range(2))
    pe = backend.to_device(rng.standard_normal((2, 8)), device)
    check_module_grad(peft, lambda i, t, e: peft(i, t, prompt_embeds=e)[1], [x, y, pe], full_max=0)
    for layer in layers:
        layer.dora_fixed_norm = None
    # the magnitude's gradient does not involve the norm's dependence: exact for the real function too
    check_module_grad(peft, lambda i, t: peft(i, t)[1], [x, y], full_max=0,
                      params=[n for n, _ in peft.named_parameters() if n.endswith("lora_magnitude")])


def test_fused_and_composed_paths_agree(device, rng):
    """The fused ops serve frozen bases; a base weight unfrozen by hand takes the composed ops: same outputs."""
    for dora in (False, True):
        base, layer = dora_layer(device, rng)
        layer.settings["default"]["use_dora"] = dora
        layer.lora_B.data = backend.to_device(rng.standard_normal((5, 2)), device, np.float32)
        x = ml.tensor(rng.standard_normal((3, 6)), device=device, dtype=np.float32)
        fused = layer(x).numpy()
        base.weight.requires_grad_(True)
        composed = layer(x)
        np.testing.assert_allclose(composed.numpy(), fused, rtol=1e-5, atol=1e-6)
        composed.sum().backward()
        assert base.weight.grad is not None
