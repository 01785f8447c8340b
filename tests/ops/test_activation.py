"""GELU (tanh and erf forms), erf itself, and SiLU."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minilora as ml
from minilora import F
from minilora.gradcheck import check_grad
from minilora.ops.activation import erf


def test_erf_matches_math_erf(device):
    x = np.concatenate([np.linspace(-7, 7, 4001), [0.0, 0.46875, -0.46875, 4.0, -4.0, 30.0, -30.0]])
    ref = np.array([math.erf(v) for v in x])
    got = ml.backend.to_host(erf(ml.backend.to_device(x, device)))
    assert np.abs(got - ref).max() < 1e-14


def gelu_tanh_ref(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def gelu_erf_ref(x):
    return 0.5 * x * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x.ravel()]).reshape(x.shape))


@pytest.mark.parametrize("shape", [(3, 4), (2, 2, 5)])
def test_gelu(device, rng, shape):
    x = rng.standard_normal(shape) * 2
    tx = ml.tensor(x, device=device, requires_grad=True)
    np.testing.assert_allclose(F.gelu(tx).numpy(), gelu_tanh_ref(x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(F.gelu(tx, approximate="none").numpy(), gelu_erf_ref(x), rtol=1e-12, atol=1e-15)
    check_grad(lambda t: F.gelu(t), [tx])
    check_grad(lambda t: F.gelu(t, approximate="none"), [tx], atol=1e-8, rtol=1e-7)  # tight: erf is exact
    np.testing.assert_array_equal(tx.numpy(), x)


def test_silu(device, rng):
    x = rng.standard_normal((3, 4)) * 3
    x[0, 0], x[0, 1] = -800.0, 800.0  # the stable sigmoid must not overflow
    tx = ml.tensor(x, device=device, requires_grad=True)
    with np.errstate(over="ignore"):
        ref = x / (1 + np.exp(-x))
    np.testing.assert_allclose(F.silu(tx).numpy(), ref, rtol=1e-12)
    check_grad(F.silu, [tx])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept(device, rng, dtype):
    tx = ml.tensor(rng.standard_normal((2, 3)).astype(dtype), device=device, requires_grad=True)
    for y in (F.gelu(tx), F.gelu(tx, approximate="none"), F.silu(tx), F.swiglu(tx, tx)):
        assert y.dtype == dtype
        tx.grad = None
        y.backward(ml.tensor(np.ones((2, 3), dtype), device=device))
        assert tx.grad.dtype == dtype


def test_bad_approximate(device):
    with pytest.raises(ValueError, match="gelu: approximate must be"):
        F.gelu(ml.tensor(np.ones(2), device=device), approximate="erf")


def test_swiglu(device, rng):
    gate, up = rng.standard_normal((2, 3, 4)) * 3, rng.standard_normal((2, 3, 4))
    gate[0, 0, 0], gate[0, 0, 1] = -800.0, 800.0  # the stable sigmoid again
    tg, tu = (ml.tensor(a, device=device, requires_grad=True) for a in (gate, up))
    with np.errstate(over="ignore"):
        ref = gate / (1 + np.exp(-gate)) * up
    np.testing.assert_allclose(F.swiglu(tg, tu).numpy(), ref, rtol=1e-12)
    check_grad(F.swiglu, [tg, tu])
    # the same as the composed silu(gate) * up, value and gradients
    g_y = ml.tensor(rng.standard_normal((2, 3, 4)), device=device)
    F.swiglu(tg, tu).backward(g_y)
    fused = [ml.backend.to_host(t.grad) for t in (tg, tu)]
    tg.grad = tu.grad = None
    (F.silu(tg) * tu).backward(g_y)
    for a, t in zip(fused, (tg, tu)):
        np.testing.assert_allclose(a, ml.backend.to_host(t.grad), rtol=1e-12, atol=1e-300)


def test_swiglu_frozen_input_and_errors(device, rng):
    tg = ml.tensor(rng.standard_normal((2, 3)), device=device, requires_grad=True)
    tu = ml.tensor(rng.standard_normal((2, 3)), device=device)
    check_grad(lambda g: F.swiglu(g, tu), [tg])
    check_grad(lambda u: F.swiglu(tu, u), [tg])
    y = F.swiglu(tu, tg)  # only up needs a gradient: up itself is not saved
    assert y._ctx.saved[1] is None
    with pytest.raises(ValueError, match=r"swiglu: gate of shape \(2, 3\) and up of shape \(3,\) differ"):
        F.swiglu(tg, ml.tensor(np.ones(3), device=device))
    with pytest.raises(TypeError, match="swiglu: gate has dtype float64, up has float32"):
        F.swiglu(tg, ml.tensor(np.ones((2, 3), np.float32), device=device))


@pytest.mark.parametrize("dtype, tol", [(np.float32, 3e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("exp_form", [False, True])
def test_gelu_block_forms_match_the_plain_formula(dtype, tol, exp_form):
    """Both ways to the sigmoid (tanh, or exp where NumPy's tanh is slow) against the float64 reference,
    out to |x| = 1e4 without a floating-point warning."""
    from minilora.ops.activation import _gelu_tanh_block  # noqa: PLC0415

    x = np.concatenate([np.linspace(-12, 12, 4001), [-1e4, -100.0, 100.0, 1e4]]).astype(dtype)
    xr = x.astype(np.float64)
    t = np.tanh(np.sqrt(2 / np.pi) * (xr + 0.044715 * xr**3))
    y_ref = 0.5 * xr * (1 + t)
    d_ref = 0.5 * (1 + t) + 0.5 * xr * (1 - t) * (1 + t) * np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * xr**2)
    y, d = np.empty_like(x), np.empty_like(x)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        _gelu_tanh_block(np, x, y, d, exp_form)
    assert np.abs(y - y_ref).max() / np.abs(y_ref).max() < tol
    assert (np.abs(y - y_ref) <= tol * np.maximum(1, np.abs(y_ref))).all()
    assert (np.abs(d - d_ref) <= 10 * tol).all()


def test_gelu_pooled_equals_inline(rng, monkeypatch):
    """Cache blocks over two threads give the very same bits as one thread."""
    from minilora import parallel  # noqa: PLC0415

    x = rng.standard_normal((7, 33)).astype(np.float32)
    g = rng.standard_normal((7, 33)).astype(np.float32)
    monkeypatch.setattr(parallel, "CHUNK", 16)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SIZE", 1)
    out = {}
    for threads in ("1", "2"):
        monkeypatch.setenv(parallel.ENV_VAR, threads)
        tx = ml.tensor(x, requires_grad=True)
        y = F.gelu(tx)
        y.backward(ml.tensor(g))
        out[threads] = (y.numpy(), tx.grad)
    for a, b in zip(out["1"], out["2"]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(out["1"][0], gelu_tanh_ref(x.astype(np.float64)), rtol=3e-6, atol=1e-7)
