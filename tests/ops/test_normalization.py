"""F.layer_norm and F.rms_norm: NumPy references, finite differences, None weight/bias, dtype."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import F
from minilora.gradcheck import check_grad


def ln_ref(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4)])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_layer_norm(device, rng, shape, affine):
    C = shape[-1]
    x = rng.standard_normal(shape) * 3 + 1
    w = rng.standard_normal(C) if affine != "none" else None
    b = rng.standard_normal(C) if affine == "both" else None
    t = [ml.tensor(a, device=device, requires_grad=True) if a is not None else None for a in (x, w, b)]
    np.testing.assert_allclose(F.layer_norm(*t).numpy(), ln_ref(x, w, b), rtol=1e-10, atol=1e-12)
    live = [a for a in t if a is not None]
    n = len(live)
    check_grad(lambda *a: F.layer_norm(a[0], a[1] if n > 1 else None, a[2] if n > 2 else None), live)
    np.testing.assert_array_equal(t[0].numpy(), x)


def test_layer_norm_frozen_affine(device, rng):
    tx = ml.tensor(rng.standard_normal((2, 4)), device=device, requires_grad=True)
    tw, tb = ml.tensor(rng.standard_normal(4), device=device), ml.tensor(rng.standard_normal(4), device=device)
    check_grad(lambda x: F.layer_norm(x, tw, tb), [tx])


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4)])
def test_rms_norm(device, rng, shape):
    x, w = rng.standard_normal(shape), rng.standard_normal(shape[-1])
    tx, tw = ml.tensor(x, device=device, requires_grad=True), ml.tensor(w, device=device, requires_grad=True)
    ref = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(F.rms_norm(tx, tw).numpy(), ref, rtol=1e-10)
    check_grad(lambda a, b: F.rms_norm(a, b), [tx, tw])
    check_grad(lambda a: F.rms_norm(a, None), [tx])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept(device, rng, dtype):
    tx = ml.tensor(rng.standard_normal((2, 4)).astype(dtype), device=device, requires_grad=True)
    tw = ml.tensor(np.ones(4, dtype), device=device, requires_grad=True)
    tb = ml.tensor(np.zeros(4, dtype), device=device, requires_grad=True)
    for y in (F.layer_norm(tx, tw, tb), F.rms_norm(tx, tw)):
        assert y.dtype == dtype
        y.backward(ml.tensor(np.ones((2, 4), dtype), device=device))
        assert tx.grad.dtype == dtype and tw.grad.dtype == dtype


def test_shape_error(device):
    tx = ml.tensor(np.ones((2, 4)), device=device)
    with pytest.raises(ValueError, match=r"layer_norm: weight of shape \(3,\) does not match input of shape \(2, 4\)"):
        F.layer_norm(tx, ml.tensor(np.ones(3), device=device), None)


def test_rms_norm_16_bit_statistics_in_float32(device, rng):
    # transformers' LlamaRMSNorm: h = x.float(); h * rsqrt(mean(h^2) + eps), cast back, then weight * h
    x = (rng.standard_normal((3, 8)) * 300).astype(np.float16)  # x^2 overflows float16 (max 65504)
    w = rng.standard_normal(8).astype(np.float16)
    tx, tw = ml.tensor(x, device=device, requires_grad=True), ml.tensor(w, device=device, requires_grad=True)
    y = F.rms_norm(tx, tw, eps=1e-6)
    h = x.astype(np.float32)
    ref = w * (h / np.sqrt((h * h).mean(-1, keepdims=True) + np.float32(1e-6))).astype(np.float16)
    assert y.dtype == np.float16 and np.isfinite(y.numpy()).all()
    np.testing.assert_array_equal(y.numpy(), ref)
    y.backward(ml.tensor(np.ones((3, 8), np.float16), device=device))
    assert tx.grad.dtype == np.float16 and tw.grad.dtype == np.float16
    # the gradient agrees with the float64 one to float16 precision
    tx64, tw64 = (ml.tensor(a.astype(np.float64), device=device, requires_grad=True) for a in (x, w))
    F.rms_norm(tx64, tw64, eps=1e-6).backward(ml.tensor(np.ones((3, 8)), device=device))
    np.testing.assert_allclose(ml.backend.to_host(tx.grad), ml.backend.to_host(tx64.grad), rtol=2e-2, atol=1e-5)


def test_layer_norm_pooled_equals_inline(rng, monkeypatch):
    """Row blocks over two threads give the same bits as one thread, and match the reference."""
    from minilora import parallel  # noqa: PLC0415

    x = rng.standard_normal((2, 9, 6)).astype(np.float32) * 3 + 1
    w, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    g = rng.standard_normal((2, 9, 6)).astype(np.float32)
    monkeypatch.setattr(parallel, "CHUNK", 12)  # 2 rows a block
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SIZE", 1)
    out = {}
    for threads in ("1", "2"):
        monkeypatch.setenv(parallel.ENV_VAR, threads)
        tx, tw, tb = (ml.tensor(a, requires_grad=True) for a in (x, w, b))
        y = F.layer_norm(tx, tw, tb)
        y.backward(ml.tensor(g))
        out[threads] = (y.numpy(), tx.grad, tw.grad, tb.grad)
    for a, c in zip(out["1"], out["2"]):
        np.testing.assert_array_equal(a, c)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(out["1"][0], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["1"][3], g.reshape(-1, 6).sum(0), rtol=1e-5, atol=1e-5)


def test_layer_norm_no_rows(device):
    tx = ml.tensor(np.zeros((0, 4)), device=device, requires_grad=True)
    tw = ml.tensor(np.ones(4), device=device, requires_grad=True)
    tb = ml.tensor(np.zeros(4), device=device, requires_grad=True)
    y = F.layer_norm(tx, tw, tb)
    y.backward(ml.tensor(np.zeros((0, 4)), device=device))
    assert tx.grad.shape == (0, 4) and ml.backend.to_host(tw.grad).tolist() == [0, 0, 0, 0]
