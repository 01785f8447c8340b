"""F.linear: forward against NumPy, float64 finite differences, dtype, frozen weights skip work, errors."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import F
from minilora.gradcheck import check_grad


@pytest.mark.parametrize("xshape", [(4,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_grad(device, rng, xshape, bias):
    x, w, b = rng.standard_normal(xshape), rng.standard_normal((5, 4)), rng.standard_normal(5)
    tx, tw = ml.tensor(x, device=device, requires_grad=True), ml.tensor(w, device=device, requires_grad=True)
    tb = ml.tensor(b, device=device, requires_grad=True) if bias else None
    ref = x @ w.T + (b if bias else 0.0)
    np.testing.assert_allclose(F.linear(tx, tw, tb).numpy(), ref, rtol=1e-12, atol=1e-12)
    inputs = [tx, tw] + ([tb] if bias else [])
    check_grad(lambda *a: F.linear(*a), inputs)
    np.testing.assert_array_equal(tx.numpy(), x)  # inputs not mutated
    np.testing.assert_array_equal(tw.numpy(), w)


def test_non_contiguous_input(device, rng):
    x = rng.standard_normal((4, 2, 3)).transpose(1, 0, 2)  # (2, 4, 3) view
    w = rng.standard_normal((2, 3))
    tx, tw = ml.tensor(x, device=device, requires_grad=True), ml.tensor(w, device=device, requires_grad=True)
    np.testing.assert_allclose(F.linear(tx, tw).numpy(), x @ w.T, rtol=1e-12)
    check_grad(lambda a, b: F.linear(a, b), [tx, tw])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept(device, rng, dtype):
    tx = ml.tensor(rng.standard_normal((2, 3)).astype(dtype), device=device, requires_grad=True)
    tw = ml.tensor(rng.standard_normal((4, 3)).astype(dtype), device=device, requires_grad=True)
    tb = ml.tensor(np.zeros(4, dtype), device=device, requires_grad=True)
    y = F.linear(tx, tw, tb)
    assert y.dtype == dtype
    y.backward(ml.tensor(np.ones((2, 4), dtype), device=device))
    assert tx.grad.dtype == tw.grad.dtype == tb.grad.dtype == dtype


def test_frozen_weight_costs_nothing(device, rng):
    tx = ml.tensor(rng.standard_normal((2, 3)), device=device, requires_grad=True)
    tw = ml.tensor(rng.standard_normal((4, 3)), device=device)  # frozen (LoRA's W0)
    tb = ml.tensor(rng.standard_normal(4), device=device)
    y = F.linear(tx, tw, tb)
    assert y._ctx.saved[0] is None  # x not saved: no g_W GEMM will run
    y.backward(ml.tensor(np.ones((2, 4)), device=device))
    assert tw.grad is None and tb.grad is None and tx.grad is not None


def test_frozen_input_saves_no_weight(device, rng):
    tx = ml.tensor(rng.standard_normal((2, 3)), device=device)
    tw = ml.tensor(rng.standard_normal((4, 3)), device=device, requires_grad=True)
    y = F.linear(tx, tw)
    assert y._ctx.saved[1] is None


def test_errors_name_op_shapes_dtypes(device):
    x = ml.tensor(np.ones((2, 3)), device=device)
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\) does not fit weight of shape \(4, 5\)"):
        F.linear(x, ml.tensor(np.ones((4, 5)), device=device))
    with pytest.raises(ValueError, match=r"linear: bias of shape \(3,\)"):
        F.linear(x, ml.tensor(np.ones((4, 3)), device=device), ml.tensor(np.ones(3), device=device))
    with pytest.raises(TypeError, match=r"(?i)linear: .*float64.*float32"):
        F.linear(x, ml.tensor(np.ones((4, 3), np.float32), device=device))
