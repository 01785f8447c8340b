"""F.self_attention (fused split_heads + attention + merge_heads) against the composed ops and a NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import F
from minilora.gradcheck import check_grad


def composed(qkv, nh, **kw):
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (p.reshape(B, T, nh, C // nh).transpose(0, 2, 1, 3) for p in F.split(qkv, 3, axis=2))
    y = F.scaled_dot_product_attention(q, k, v, **kw)
    return y.transpose(0, 2, 1, 3).reshape(B, T, C)


def reference(qkv, nh, causal):
    B, T, C3 = qkv.shape
    q, k, v = (a.reshape(B, T, nh, -1).transpose(0, 2, 1, 3) for a in np.split(qkv, 3, axis=2))
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    return ((e / e.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(B, T, -1)


@pytest.mark.parametrize("shape,nh", [((2, 3, 12), 2), ((1, 4, 6), 1), ((2, 5, 18), 3)])
@pytest.mark.parametrize("causal", [False, True])
def test_forward_matches_reference_and_grad(device, rng, shape, nh, causal):
    a = rng.standard_normal(shape)
    x = ml.tensor(a, device=device, requires_grad=True)
    y = F.self_attention(x, nh, causal=causal)
    np.testing.assert_allclose(y.numpy(), reference(a, nh, causal), rtol=1e-10)
    check_grad(lambda t: F.self_attention(t, nh, causal=causal), [x])
    np.testing.assert_array_equal(x.numpy(), a)  # input not mutated


def test_gradient_equals_the_composed_ops(device, rng):
    a, g = rng.standard_normal((2, 4, 12)), rng.standard_normal((2, 4, 4))
    grads = []
    for fn in (F.self_attention, composed):
        x = ml.tensor(a, device=device, requires_grad=True)
        fn(x, 2, causal=True).backward(ml.tensor(g, device=device))
        grads.append(ml.tensor(x.grad).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10, atol=1e-14)


def test_non_contiguous_input_and_padding_mask(device, rng):
    a = rng.standard_normal((12, 3, 2))  # transposed below: qkv is a strided view
    x = ml.tensor(a, device=device, requires_grad=True)
    keys = np.array([[True, True, False], [True, True, True]])[:, None, None, :]  # (B, 1, 1, T)
    mask = ml.backend.to_device(keys, device)
    got = F.self_attention(x.transpose(2, 1, 0), 2, mask=mask, causal=True)
    want = composed(x.transpose(2, 1, 0), 2, mask=mask, causal=True)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10)
    check_grad(lambda t: F.self_attention(t.transpose(2, 1, 0), 2, mask=mask, causal=True), [x])


def test_dropout_is_reproducible_and_checked(device, rng):
    x = ml.tensor(rng.standard_normal((1, 3, 6)), device=device, requires_grad=True)

    def fn(t):
        ml.manual_seed(0)
        return F.self_attention(t, 1, causal=True, dropout_p=0.3)

    check_grad(fn, [x])
    ml.manual_seed(0)
    got = F.self_attention(x, 1, causal=True, dropout_p=0.3).numpy()
    ml.manual_seed(0)
    np.testing.assert_allclose(got, composed(x, 1, causal=True, dropout_p=0.3).numpy(), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept(device, rng, dtype):
    x = ml.tensor(rng.standard_normal((2, 3, 12)).astype(dtype), device=device, requires_grad=True)
    y = F.self_attention(x, 2, causal=True)
    assert y.dtype == dtype
    y.backward(ml.tensor(np.ones((2, 3, 4), dtype), device=device))
    assert x.grad.dtype == dtype


def test_errors(device):
    x = ml.tensor(np.ones((1, 2, 12)), device=device)
    with pytest.raises(ValueError, match=r"self_attention: qkv must be \(B, T, 3C\) with C divisible by n_head=3"):
        F.self_attention(x, 3)
    with pytest.raises(ValueError, match=r"self_attention: qkv must be"):
        F.self_attention(ml.tensor(np.ones((2, 12)), device=device), 2)
    with pytest.raises(ValueError, match=r"self_attention: mask of shape \(3, 3\) does not broadcast"):
        F.self_attention(x, 2, mask=ml.tensor(np.ones((3, 3), bool), device=device))
    with pytest.raises(ValueError, match="dropout_p"):
        F.self_attention(x, 2, dropout_p=1.0)


def test_causal_query_blocks(device, rng, monkeypatch):
    from minilora.ops import attention

    monkeypatch.setattr(attention, "BLOCK_ROWS", 2)
    a = rng.standard_normal((2, 5, 12))
    x = ml.tensor(a, device=device, requires_grad=True)
    np.testing.assert_allclose(F.self_attention(x, 2, causal=True).numpy(), reference(a, 2, True), rtol=1e-10)
    check_grad(lambda t: F.self_attention(t, 2, causal=True), [x])
