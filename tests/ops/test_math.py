"""Elementwise math: forward against NumPy, float64 finite differences, stability, dtype kept, inputs untouched."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.gradcheck import check_grad
from minilora.ops import masked_fill, where


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


UNARY = {  # name -> (numpy reference, input sampler away from domain edges and kinks)
    "exp": (np.exp, lambda rng, s: rng.standard_normal(s)),
    "log": (np.log, lambda rng, s: rng.uniform(0.5, 3.0, s)),
    "sqrt": (np.sqrt, lambda rng, s: rng.uniform(0.5, 3.0, s)),
    "tanh": (np.tanh, lambda rng, s: rng.standard_normal(s)),
    "sigmoid": (_sigmoid, lambda rng, s: 3 * rng.standard_normal(s)),
    "relu": (lambda x: np.maximum(x, 0), lambda rng, s: np.where(rng.random(s) < 0.5, -1, 1) * rng.uniform(0.1, 2, s)),
}


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("shape", [(3, 4), (2, 1, 3), ()])
def test_unary_forward_and_grad(device, rng, name, shape):
    ref, sample = UNARY[name]
    x = sample(rng, shape)
    tx = ml.tensor(x, device=device, requires_grad=True)
    np.testing.assert_allclose(getattr(tx, name)().numpy(), ref(x), rtol=1e-12, atol=1e-15)
    check_grad(lambda t: getattr(t, name)(), [tx])


@pytest.mark.parametrize("name", UNARY)
def test_unary_non_contiguous(device, rng, name):
    ref, sample = UNARY[name]
    x = sample(rng, (4, 3)).T
    tx = ml.tensor(x, device=device, requires_grad=True)
    np.testing.assert_allclose(getattr(tx, name)().numpy(), ref(x), rtol=1e-12)
    check_grad(lambda t: getattr(t, name)(), [tx])


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept_and_input_untouched(device, rng, name, dtype):
    x = UNARY[name][1](rng, (3, 4)).astype(dtype)
    tx = ml.tensor(x, device=device, requires_grad=True)
    y = getattr(tx, name)()
    assert y.dtype == dtype
    y.sum().backward()
    assert tx.grad.dtype == dtype
    np.testing.assert_array_equal(tx.numpy(), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_for_large_inputs(device, dtype):
    x = ml.tensor(np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype), device=device, requires_grad=True)
    with np.errstate(over="raise"):  # an overflow inside would raise here on the CPU
        y = x.sigmoid()
    y.sum().backward()
    out = y.numpy()
    assert np.all(np.isfinite(out)) and out[0] == 0.0 and out[-1] == 1.0 and out[2] == 0.5
    assert np.all(np.isfinite(ml.tensor(x.grad).numpy()))


def test_log_of_negative_warns_instead_of_hiding():
    with pytest.warns(RuntimeWarning, match="invalid value"):
        y = ml.tensor(np.array([-1.0, 2.0])).log()
    assert np.isnan(y.numpy()[0])


def test_float_op_on_integer_tensor_names_op_and_dtype(device):
    with pytest.raises(TypeError, match=r"Exp: expected floating-point tensors, got dtype int64"):
        ml.tensor(np.array([1, 2]), device=device).exp()


@pytest.mark.parametrize("sa,sb,sc", [((3, 4), (3, 4), (3, 4)), ((2, 1, 4), (3, 4), (4,)), ((3, 1), (1,), (3, 5))])
def test_where(device, rng, sa, sb, sc):
    a, b, c = rng.standard_normal(sa), rng.standard_normal(sb), rng.random(sc) < 0.5
    ta, tb = ml.tensor(a, device=device, requires_grad=True), ml.tensor(b, device=device, requires_grad=True)
    cond = ml.tensor(c, device=device)
    np.testing.assert_array_equal(where(cond, ta, tb).numpy(), np.where(c, a, b))
    check_grad(lambda x, y: where(cond, x, y), [ta, tb])


def test_where_with_scalar_and_dtype(device, rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    ta = ml.tensor(a, device=device, requires_grad=True)
    y = where(ta > 0, ta, 0.0)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), np.where(a > 0, a, 0).astype(np.float32))
    y.sum().backward()
    np.testing.assert_array_equal(ml.tensor(ta.grad).numpy(), (a > 0).astype(np.float32))


def test_where_refuses_non_bool_condition(device):
    x = ml.tensor(np.ones(3), device=device)
    with pytest.raises(TypeError, match="where: the condition must have dtype bool, got float64"):
        where(x, x, x)


@pytest.mark.parametrize("sx,sm", [((3, 4), (3, 4)), ((2, 3, 4), (3, 1)), ((2, 2, 3, 3), (3, 3))])
def test_masked_fill(device, rng, sx, sm):
    x, m = rng.standard_normal(sx), rng.random(sm) < 0.4
    tx = ml.tensor(x, device=device, requires_grad=True)
    mask = ml.tensor(m, device=device)
    np.testing.assert_array_equal(masked_fill(tx, mask, -5.0).numpy(), np.where(m, -5.0, x))
    check_grad(lambda t: masked_fill(t, mask, -5.0), [tx])
    tx.grad = None
    masked_fill(tx, mask, -5.0).sum().backward()
    np.testing.assert_array_equal(ml.tensor(tx.grad).numpy(), np.broadcast_to(~m, sx).astype(float))


def test_masked_fill_neg_inf_keeps_float32(device):
    x = ml.tensor(np.zeros((2, 2), dtype=np.float32), device=device)
    causal = ml.tensor(np.triu(np.ones((2, 2), dtype=bool), k=1), device=device)
    y = masked_fill(x, causal, float("-inf"))
    assert y.dtype == np.float32 and np.isneginf(y.numpy()[0, 1]) and y.numpy()[1, 0] == 0


def test_masked_fill_refuses_bad_input_by_name(device):
    x = ml.tensor(np.zeros((3, 4)), device=device)
    with pytest.raises(ValueError, match=r"masked_fill: mask shape \(2, 4\) does not broadcast with x shape \(3, 4\)"):
        masked_fill(x, ml.tensor(np.ones((2, 4), bool), device=device), 0.0)
    with pytest.raises(TypeError, match=r"masked_fill: expected a floating-point x, got dtype int64"):
        masked_fill(ml.tensor(np.zeros((3, 4), np.int64), device=device), ml.tensor(np.ones(4, bool), device=device), 0)
    with pytest.raises(TypeError, match="masked_fill: the condition must have dtype bool"):
        masked_fill(x, x, 0.0)


def test_condition_on_another_device_is_refused(device):
    if device == "cpu":
        pytest.skip("needs a second device")
    x = ml.tensor(np.ones(3), device=device)
    with pytest.raises(RuntimeError, match="where: the condition is on cpu but the tensor is on cuda"):
        where(np.array([True, False, True]), x, x)
