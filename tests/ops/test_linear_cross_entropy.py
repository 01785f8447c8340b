"""F.linear_cross_entropy: equals cross_entropy(linear(...)) in value and gradients, keeps nothing (N, V)-sized."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import F
from minilora.nn import GPT, GPTConfig
from minilora.ops.linear_cross_entropy import LinearCrossEntropy


def _inputs(device: str, dtype: str, bias: bool):
    rng = np.random.default_rng(0)
    h = ml.tensor(rng.standard_normal((2, 7, 5)), dtype=dtype, device=device, requires_grad=True)
    w = ml.tensor(rng.standard_normal((11, 5)), dtype=dtype, device=device, requires_grad=True)
    b = ml.tensor(rng.standard_normal(11), dtype=dtype, device=device, requires_grad=True) if bias else None
    t = rng.integers(0, 11, (2, 7))
    t[0, :3] = -100
    return h, w, b, ml.tensor(t, device=device)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("bias, smoothing, chunk", [(False, 0.0, 3), (True, 0.1, 1), (True, 0.0, None)])
def test_equals_the_composed_head_and_loss(device, dtype, tol, bias, smoothing, chunk):
    h, w, b, t = _inputs(device, dtype, bias)
    ref = F.cross_entropy(F.linear(h, w, b), t, label_smoothing=smoothing)
    ref.backward()
    expected = [ref.numpy()] + [x.grad.copy() for x in (h, w, b) if x is not None]
    for x in (h, w, b):
        if x is not None:
            x.grad = None
    loss = F.linear_cross_entropy(h, w, t, b, label_smoothing=smoothing, chunk_size=chunk)
    assert loss.dtype == np.dtype(dtype) and loss.shape == ()
    (loss * 3.0).backward()  # g_loss is applied in backward
    got = [loss.numpy()] + [ml.Tensor(x.grad).numpy() / 3.0 for x in (h, w, b) if x is not None]
    for e, g in zip(expected, got, strict=True):
        assert np.allclose(ml.Tensor(e).numpy(), g, rtol=tol, atol=tol)


def test_keeps_nothing_of_size_tokens_by_vocab():
    h, w, _, t = _inputs("cpu", "float64", False)
    loss = F.linear_cross_entropy(h, w, t, chunk_size=2)
    saved = [a for a in loss._ctx.saved if a is not None]
    assert sorted(a.shape for a in saved) == sorted([(14, 5), (11, 5)])  # g_h (N, C) and g_W (V, C) only
    w.requires_grad = False  # a frozen (tied) embedding keeps no g_W
    assert [a.shape for a in F.linear_cross_entropy(h, w, t)._ctx.saved if a is not None] == [(14, 5)]
    with ml.no_grad():
        assert F.linear_cross_entropy(h, w, t)._ctx is None


def test_all_targets_ignored_gives_zero():
    h, w, _, t = _inputs("cpu", "float64", False)
    loss = F.linear_cross_entropy(h, w, ml.tensor(np.full((2, 7), -100)))
    loss.backward()
    assert loss.item() == 0.0 and not h.grad.any()


def test_bad_input_is_one_line():
    h, w, _, t = _inputs("cpu", "float32", False)
    with pytest.raises(ValueError, match="do not fit"):
        F.linear_cross_entropy(h, w[:, :3], t)
    with pytest.raises(IndexError, match="target 11 is out of range"):
        F.linear_cross_entropy(h, w, ml.tensor(np.full((2, 7), 11)))
    with pytest.raises(ValueError, match="chunk_size"):
        F.linear_cross_entropy(h, w, t, chunk_size=0)
    with pytest.raises(TypeError, match="LinearCrossEntropy: inputs mix dtypes"):
        F.linear_cross_entropy(h, w.astype("float64"), t)


@pytest.mark.parametrize("tied_frozen", [False, True])
def test_lm_uses_it_above_the_threshold_with_the_same_loss_and_gradients(device, tied_frozen):
    ml.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8)).to(device, "float64")
    if tied_frozen:
        model.transformer.wte.weight.requires_grad_(False)
    idx = np.random.default_rng(1).integers(0, 13, (2, 8))
    results = []
    for threshold in (1 << 62, 0):
        model.chunked_loss_threshold = threshold
        model.zero_grad()
        logits, loss = model(idx, targets=np.roll(idx, -1, axis=1))
        assert (logits is None) == (threshold == 0)
        assert isinstance(loss._ctx, LinearCrossEntropy) == (threshold == 0)
        loss.backward()
        results.append([loss.numpy()] + [ml.Tensor(p.grad).numpy() for p in model.parameters() if p.requires_grad])
    for a, b in zip(*results, strict=True):
        assert np.allclose(a, b, rtol=0, atol=1e-12)
