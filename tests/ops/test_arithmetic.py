"""Arithmetic ops: forward against NumPy, float64 finite differences, dtype kept, inputs untouched."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.gradcheck import check_grad

BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
}
SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((4, 1), (1, 5)), ((), (2, 3))]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("sa,sb", SHAPES)
def test_binary_forward_and_grad(device, rng, name, sa, sb):
    op, ref = BINARY[name]
    a = rng.standard_normal(sa)
    b = rng.uniform(0.5, 2.0, sb)
    ta, tb = ml.tensor(a, device=device, requires_grad=True), ml.tensor(b, device=device, requires_grad=True)
    np.testing.assert_allclose(op(ta, tb).numpy(), ref(a, b), rtol=1e-12)
    check_grad(op, [ta, tb])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_with_python_scalars(device, dtype):
    x = ml.tensor(np.ones((2, 2), dtype=dtype), device=device)
    for y in (x + 1.5, 2.0 * x, x / 3.0, x**2, -x, 1.0 - x, x @ x):
        assert y.dtype == dtype


def test_inputs_are_not_mutated(device, rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    ta, tb = ml.tensor(a, device=device, requires_grad=True), ml.tensor(b, device=device, requires_grad=True)
    ((ta @ tb) * 2.0).backward(ml.tensor(np.ones((3, 2)), device=device))
    np.testing.assert_array_equal(ta.numpy(), a)
    np.testing.assert_array_equal(tb.numpy(), b)


@pytest.mark.parametrize(
    "sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((4,), (4, 5)), ((2, 3, 4), (4,))]
)
def test_matmul(device, rng, sa, sb):
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    ta, tb = ml.tensor(a, device=device, requires_grad=True), ml.tensor(b, device=device, requires_grad=True)
    np.testing.assert_allclose((ta @ tb).numpy(), a @ b, rtol=1e-12)
    check_grad(lambda x, y: x @ y, [ta, tb])


def test_matmul_non_contiguous(device, rng):
    a = rng.standard_normal((5, 3)).T  # a transposed view
    b = rng.standard_normal((5, 2))
    ta, tb = ml.tensor(a, device=device, requires_grad=True), ml.tensor(b, device=device, requires_grad=True)
    np.testing.assert_allclose((ta @ tb).numpy(), a @ b, rtol=1e-12)
    check_grad(lambda x, y: x @ y, [ta, tb])


def test_matmul_shape_mismatch_names_shapes(device):
    a, b = ml.tensor(np.ones((2, 3)), device=device), ml.tensor(np.ones((4, 5)), device=device)
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\)"):
        a @ b


def test_broadcast_mismatch_names_op_and_shapes(device):
    a, b = ml.tensor(np.ones((2, 3)), device=device), ml.tensor(np.ones((4,)), device=device)
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\)"):
        a + b


def test_pow(device, rng):
    x = rng.uniform(0.5, 2.0, (3, 4))
    tx = ml.tensor(x, device=device, requires_grad=True)
    for p in (2, 3.5, -0.5):
        np.testing.assert_allclose((tx**p).numpy(), x**p, rtol=1e-12)
        check_grad(lambda t, p=p: t**p, [tx])


def test_frozen_input_gets_no_gradient_work(device, rng):
    w = ml.tensor(rng.standard_normal((4, 3)), device=device)  # frozen
    x = ml.tensor(rng.standard_normal((2, 4)), device=device, requires_grad=True)
    y = x @ w
    assert y._ctx.saved[0] is None  # x is not saved: w's gradient (which needs x) is never computed
    y.backward(ml.tensor(np.ones((2, 3)), device=device))
    assert w.grad is None and x.grad is not None
