"""LoRA / rsLoRA layer: forward against NumPy, exact base outputs at init, gradients through a frozen tiny GPT."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import GPT, GPTConfig, GPTForSequenceClassification, Linear
from minilora.nn.gradcheck import check_module_grad
from minilora.peft import LoraConfig, LoraLinear, get_peft_model

CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def tiny(device, cls=GPT, **kw):
    ml.manual_seed(0)
    return (cls(CFG, **kw) if kw else cls(CFG)).to(device)


def ids(rng, *shape, device="cpu", high=11):
    return backend.to_device(rng.integers(0, high, shape), device)


def randomize_b(model, rng, scale=0.3):
    """Give every lora_B a nonzero value, so A's gradient is not trivially zero."""
    for name, p in model.named_parameters():
        if name.endswith("lora_B"):
            p.data = backend.to_device(scale * rng.standard_normal(p.shape), p.device, p.dtype)


@pytest.mark.parametrize("init", ["kaiming", "gaussian"])
def test_layer_matches_numpy_and_init(device, rng, init):
    ml.manual_seed(0)
    base = Linear(6, 5).to(device)
    layer = LoraLinear(base)
    layer.add_adapter("default", LoraConfig(r=3, lora_alpha=6, init_lora_weights=init), activate=True)
    A, B = layer.lora_A.numpy(), layer.lora_B.numpy()
    assert A.shape == (3, 6) and B.shape == (5, 3) and not B.any()
    if init == "kaiming":  # kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in))
        assert np.abs(A).max() <= 1 / math.sqrt(6) and np.abs(A).max() > 0.5 / math.sqrt(6)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    tx = ml.tensor(x, device=device)
    np.testing.assert_array_equal(layer(tx).numpy(), base(tx).numpy())  # B = 0: exactly the base
    layer.lora_B.data = backend.to_device(rng.standard_normal((5, 3)), device, np.float32)
    W, b, B = base.weight.numpy(), base.bias.numpy(), layer.lora_B.numpy()
    ref = x @ W.T + b + 2.0 * (x @ A.T) @ B.T  # s = alpha / r = 2
    np.testing.assert_allclose(layer(tx).numpy(), ref, rtol=1e-5, atol=1e-6)
    assert layer(tx).dtype == np.float32


def test_rslora_scaling():
    assert LoraConfig(r=4, lora_alpha=8).scaling == 2.0
    assert LoraConfig(r=4, lora_alpha=8, use_rslora=True).scaling == 4.0
    ml.manual_seed(0)
    layer = LoraLinear(Linear(4, 4))
    layer.add_adapter("default", LoraConfig(r=4, lora_alpha=8, use_rslora=True), activate=True)
    assert layer.settings["default"]["scaling"] == 4.0


def test_lora_only_wraps_linear_layers():
    with pytest.raises(TypeError, match="LoraLinear: expected a Linear or Linear4bit"):
        LoraLinear(GPT(CFG).transformer.ln_f)


@pytest.mark.parametrize("rslora", [False, True])
def test_gpt_at_init_equals_base_and_names(device, rng, rslora):
    model = tiny(device)
    x = ids(rng, 2, 5, device=device)
    ref = model(x)[0].numpy()
    peft = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", use_rslora=rslora))
    np.testing.assert_array_equal(peft(x)[0].numpy(), ref)
    names = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert names[:2] == ["transformer.h.0.attn.c_attn.lora_A", "transformer.h.0.attn.c_attn.lora_B"]
    assert len(names) == 2 * 4 * 2  # 4 Linear layers per block (lm_head excluded), 2 blocks
    assert "transformer.h.0.attn.c_attn.base_layer.weight" in dict(peft.named_parameters())
    assert peft.config is model.config  # attributes of the base model stay reachable


def test_gradcheck_through_frozen_gpt(device, rng):
    """Every LoRA tensor (B != 0) and the input embeddings (prompt_embeds) against finite differences."""
    model = tiny(device).double()
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=("c_attn", "mlp.c_fc"), lora_dropout=0.0))
    randomize_b(peft, rng)
    x, y = ids(rng, 2, 4, device=device), ids(rng, 2, 4, device=device)
    pe = backend.to_device(rng.standard_normal((2, 8)), device)  # (P, C): a float path into the whole GPT
    check_module_grad(peft, lambda i, t, e: peft(i, t, prompt_embeds=e)[1], [x, y, pe], full_max=0)
    loss = peft(x, y)[1]
    loss.backward()
    base = [p for n, p in peft.named_parameters() if "lora_" not in n]
    assert base and all(p.grad is None and not p.requires_grad for p in base)  # no work for frozen weights


def test_gradcheck_classifier_with_trained_head(device, rng):
    model = tiny(device, GPTForSequenceClassification, num_classes=3).double()
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=("c_attn",), modules_to_save=("score",)))
    randomize_b(peft, rng)
    trainable = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert "score.modules_to_save.weight" in trainable and "score.base_layer.weight" not in trainable
    x, labels = ids(rng, 2, 4, device=device), ids(rng, 2, device=device, high=3)
    pe = backend.to_device(rng.standard_normal((2, 8)), device)
    check_module_grad(peft, lambda i, t, e: peft(i, t, prompt_embeds=e)[1], [x, labels, pe], full_max=0)


def test_dropout_only_on_the_lora_branch(device, rng):
    ml.manual_seed(0)
    base = Linear(6, 4).to(device)
    layer = LoraLinear(base)
    layer.add_adapter("default", LoraConfig(r=2, lora_dropout=0.5), activate=True)
    x = ml.tensor(rng.standard_normal((3, 6)), device=device, dtype=np.float32)
    np.testing.assert_array_equal(layer(x).numpy(), base(x).numpy())  # B = 0: dropout changes nothing yet
    layer.lora_B.data = layer.lora_B.xp.ones((4, 2), dtype=np.float32)
    train_out = layer(x).numpy()
    layer.eval()
    eval_out = layer(x).numpy()
    assert not np.allclose(train_out, eval_out)
    ref = x.numpy() @ base.weight.numpy().T + base.bias.numpy() + 8.0 * (x.numpy() @ layer.lora_A.numpy().T).sum(
        axis=1, keepdims=True)
    np.testing.assert_allclose(eval_out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dora", [False, True])
def test_qlora_lora_on_nf4_base(device, rng, dora):
    """quantize=True stores every Linear but the head as NF4; LoRA trains through it; merge_and_unload gives floats."""
    from minilora.peft.qlora import Linear4bit

    model = tiny(device).double()
    peft = get_peft_model(model, LoraConfig(r=2, quantize=True, quant_block_size=8, use_dora=dora))
    layer = peft.get_submodule("transformer.h.0.attn.c_attn")
    assert isinstance(layer.base_layer, Linear4bit)
    assert isinstance(peft.get_submodule("transformer.h.0.mlp.c_fc"), Linear4bit)  # the whole base is 4-bit
    x, y = ids(rng, 2, 4, device=device), ids(rng, 2, 4, device=device)
    quantized_out = peft(x)[0].numpy()
    randomize_b(peft, rng)
    for m in (m for _, m in peft.peft_layers()):
        m.dora_fixed_norm = m._dora_norm() if dora else None
    pe = backend.to_device(rng.standard_normal((2, 8)), device)
    check_module_grad(peft, lambda i, t, e: peft(i, t, prompt_embeds=e)[1], [x, y, pe], full_max=0)
    for m in (m for _, m in peft.peft_layers()):
        m.dora_fixed_norm = None
    adapted = peft(x)[0].numpy()
    assert not np.allclose(adapted, quantized_out)
    with pytest.raises(NotImplementedError, match="NF4-quantised and cannot be updated in place"):
        peft.merge()
    merged = peft.merge_and_unload()
    assert isinstance(merged.transformer.h[0].attn.c_attn, Linear)
    np.testing.assert_allclose(merged(x)[0].numpy(), adapted, rtol=1e-9, atol=1e-9)


def test_fused_lora_op(device, rng):
    """The fused op: forward against NumPy, float64 gradients of every input; W0 is a constant (no gradient)."""
    from minilora.gradcheck import check_grad
    from minilora.peft.lora import lora_linear
    from minilora.peft.nf4 import quantize_nf4

    x, h = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    w, a, b, bias = (rng.standard_normal(s) for s in [(5, 4), (2, 4), (5, 2), (5,)])
    ts = [ml.tensor(v, device=device, requires_grad=True) for v in (x, h, a, b, bias)]
    w0 = ml.tensor(w, device=device)
    y = lora_linear(ts[0], ts[1], w0, ts[2], ts[3], 0.7, ts[4])
    np.testing.assert_allclose(y.numpy(), x @ w.T + bias + 0.7 * (h @ a.T) @ b.T, rtol=1e-12)
    check_grad(lambda *t: lora_linear(t[0], t[1], w0, t[2], t[3], 0.7, t[4]), ts)
    y.backward(ml.tensor(np.ones(y.shape), device=device))
    assert w0.grad is None
    q = quantize_nf4(w0.data, block_size=4)  # an NF4 base: dequantised on the fly
    y = lora_linear(ts[0], ts[0], q, ts[2], ts[3], 0.7)
    wq = backend.to_host(q.dequantize(np.float64))
    np.testing.assert_allclose(y.numpy(), x @ wq.T + 0.7 * (x @ a.T) @ b.T, rtol=1e-12)
    check_grad(lambda *t: lora_linear(t[0], t[0], q, t[1], t[2], 0.7), [ts[0], ts[2], ts[3]])
    with pytest.raises(ValueError, match=r"lora_linear: shapes do not fit.*A \(2, 4\), B \(5, 3\)"):
        lora_linear(ts[0], ts[1], w0, ts[2], ml.tensor(np.ones((5, 3)), device=device), 1.0)
