"""Layers: forwards against NumPy references, float64 gradchecks of parameters and inputs, init, dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.gradcheck import check_grad
from minilora.nn import GELU, MLP, Block, Dropout, Embedding, GPTConfig, LayerNorm, Linear, RMSNorm, skip_init
from minilora.nn.gradcheck import check_module_grad


def _t(a, device, requires_grad=False):
    return ml.tensor(a, device=device, requires_grad=requires_grad)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(device, rng, bias):
    layer = Linear(4, 3, bias=bias).to(device)
    assert (layer.in_features, layer.out_features, layer.weight.shape) == (4, 3, (3, 4))
    assert (layer.bias is None) != bias and layer.weight.dtype == np.float32
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    y = layer(_t(x, device))
    ref = x @ layer.weight.numpy().T + (layer.bias.numpy() if bias else 0)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert y.dtype == np.float32
    bound = 1 / math.sqrt(4)
    assert np.abs(layer.weight.numpy()).max() <= bound  # PyTorch's default U(-1/sqrt(in), 1/sqrt(in))
    layer.double()
    check_module_grad(layer, lambda x: layer(x), [_t(x.astype(np.float64), device, True)])


def test_embedding(device):
    emb = Embedding(5, 3).to(device).double()
    ids = backend.to_device(np.array([[1, 3, 1], [4, 4, 0]]), device)
    y = emb(ids)
    np.testing.assert_array_equal(y.numpy(), emb.weight.numpy()[backend.to_host(ids)])
    check_module_grad(emb, lambda: emb(ids).tanh())  # repeated ids accumulate
    with pytest.raises(IndexError, match=r"Embedding: id 5 is out of range \[0, 5\)"):
        emb(backend.to_device(np.array([[0, 5]]), device))


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm(device, rng, bias):
    ln = LayerNorm(6, eps=1e-5, bias=bias).to(device)
    np.testing.assert_array_equal(ln.weight.numpy(), np.ones(6))
    x = rng.standard_normal((2, 3, 6)) * 3 + 1
    ln.double()
    ln.weight.data = ln.weight.data + backend.to_device(rng.standard_normal(6), device)
    if bias:
        ln.bias.data = ln.bias.data + backend.to_device(rng.standard_normal(6), device)
    y = ln(_t(x, device)).numpy()
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    ref = xhat * ln.weight.numpy() + (ln.bias.numpy() if bias else 0)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
    check_module_grad(ln, lambda x: ln(x), [_t(x, device, True)])


def test_rms_norm(device, rng):
    norm = RMSNorm(5, eps=1e-6).to(device).double()
    norm.weight.data = norm.weight.data + backend.to_device(rng.standard_normal(5), device)
    x = rng.standard_normal((3, 5))
    ref = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * norm.weight.numpy()
    np.testing.assert_allclose(norm(_t(x, device)).numpy(), ref, rtol=1e-10)
    check_module_grad(norm, lambda x: norm(x), [_t(x, device, True)])


def test_dropout(device):
    x = _t(np.ones((50, 40), dtype=np.float32), device)
    drop = Dropout(0.5)
    y = drop(x).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    assert y.dtype == np.float32
    drop.eval()
    assert drop(x) is x
    assert Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\)"):
        Dropout(1.5)


def test_dropout_and_gelu_gradcheck(device, rng):
    drop, gelu = Dropout(0.3), GELU()
    x = _t(rng.standard_normal((3, 5)), device, True)

    def fn(x):
        ml.manual_seed(0)  # the same mask at every finite-difference evaluation
        return gelu(drop(x))

    check_grad(fn, [x])  # no parameters: the input's gradient through both layers


def test_gelu(device, rng):
    x = rng.standard_normal((3, 4))
    ref = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(GELU()(_t(x, device)).numpy(), ref, rtol=1e-12)
    with pytest.raises(ValueError, match="approximate must be"):
        GELU("fast")


def test_mlp_and_block_gradcheck(device, rng):
    cfg = GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=2, n_embd=4)
    mlp = MLP(cfg).to(device).double()
    x = _t(rng.standard_normal((2, 3, 4)), device, True)
    check_module_grad(mlp, lambda x: mlp(x), [x])
    block = Block(cfg).to(device).double()
    check_module_grad(block, lambda x: block(x), [x], full_max=16)


def test_init_is_reproducible_and_identical_on_every_device(device):
    ml.manual_seed(3)
    cpu = Linear(4, 3)
    ml.manual_seed(3)
    moved = Linear(4, 3).to(device)
    np.testing.assert_array_equal(cpu.weight.numpy(), moved.weight.numpy())
    np.testing.assert_array_equal(cpu.bias.numpy(), moved.bias.numpy())


def test_repr():
    assert repr(Linear(2, 3, bias=False)) == "Linear(in_features=2, out_features=3, bias=False)"
    assert repr(LayerNorm(4)) == "LayerNorm(4, eps=1e-05, bias=True)"


def test_skip_init_draws_nothing():
    ml.manual_seed(0)
    with skip_init():
        layer = Linear(3, 2)
    assert not layer.weight.numpy().any() and not layer.bias.numpy().any()
    drawn_after_skip = Linear(3, 2).weight.numpy()
    ml.manual_seed(0)
    np.testing.assert_array_equal(Linear(3, 2).weight.numpy(), drawn_after_skip)  # the generator was not advanced
