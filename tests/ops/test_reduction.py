"""Reductions: forward against NumPy, float64 finite differences, dtype kept, inputs untouched, tie handling."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.gradcheck import check_grad

CASES = [
    ((3, 4), None, False),
    ((3, 4), 0, False),
    ((2, 3, 4), -1, True),
    ((2, 3, 4), (0, 2), False),
    ((2, 3, 4), (1,), True),
    ((5,), 0, False),
]


def _distinct(rng, shape):
    """Well-separated values in random order: no ties, so max has a gradient finite differences can see."""
    n = int(np.prod(shape))
    return rng.permutation(n).reshape(shape) * 0.5 + rng.uniform(0, 0.1, shape)


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@pytest.mark.parametrize("shape,axis,keepdims", CASES)
def test_forward_and_grad(device, rng, name, shape, axis, keepdims):
    x = _distinct(rng, shape)
    tx = ml.tensor(x, device=device, requires_grad=True)
    y = getattr(tx, name)(axis=axis, keepdims=keepdims)
    ref = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12)
    check_grad(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), [tx])


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_non_contiguous_input(device, rng, name):
    x = _distinct(rng, (4, 3)).T  # a transposed view
    tx = ml.tensor(x, device=device, requires_grad=True)
    np.testing.assert_allclose(getattr(tx, name)(axis=1).numpy(), getattr(np, name)(x, axis=1), rtol=1e-12)
    check_grad(lambda t: getattr(t, name)(axis=1), [tx])


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept_and_input_untouched(device, rng, name, dtype):
    x = rng.standard_normal((3, 4)).astype(dtype)
    tx = ml.tensor(x, device=device, requires_grad=True)
    y = getattr(tx, name)(axis=0)
    assert y.dtype == dtype
    y.sum().backward()
    assert tx.grad.dtype == dtype
    np.testing.assert_array_equal(tx.numpy(), x)


def test_max_splits_gradient_among_ties(device):
    x = ml.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), device=device, requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(ml.tensor(x.grad).numpy(), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_sum_gradient_owns_its_memory(device):
    x = ml.tensor(np.ones((2, 3)), device=device, requires_grad=True)
    x.sum().backward()
    g = x.grad
    g[0, 0] = 5.0  # an optimizer may update .grad in place: the other elements must not follow
    assert ml.tensor(g).numpy()[1, 2] == 1.0


def test_bad_axis_names_op_and_shape(device):
    x = ml.tensor(np.ones((2, 3)), device=device)
    with pytest.raises(ValueError, match=r"sum: axis 2 is out of range for a tensor of shape \(2, 3\)"):
        x.sum(axis=2)
    with pytest.raises(ValueError, match=r"mean: repeated axis"):
        x.mean(axis=(1, -1))


def test_sum_of_integer_and_bool_tensors(device):
    m = ml.tensor(np.array([[True, False], [True, True]]), device=device)
    assert m.sum().item() == 3
    assert ml.tensor(np.array([4, 1, 7]), device=device).max().item() == 7
