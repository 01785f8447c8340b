"""F.softmax and F.log_softmax: references, gradients, stability at logits ~1e4, dtype."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import F
from minilora.gradcheck import check_grad


def softmax_ref(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((4, 3), 0), ((2, 3, 4), 1)])
def test_forward_and_grad(device, rng, shape, axis):
    x = rng.standard_normal(shape)
    tx = ml.tensor(x, device=device, requires_grad=True)
    np.testing.assert_allclose(F.softmax(tx, axis).numpy(), softmax_ref(x, axis), rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(tx, axis).numpy(), np.log(softmax_ref(x, axis)), rtol=1e-12)
    check_grad(lambda t: F.softmax(t, axis), [tx])
    check_grad(lambda t: F.log_softmax(t, axis), [tx])
    np.testing.assert_array_equal(tx.numpy(), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_at_large_logits(device, rng, dtype):
    x = (1e4 + rng.standard_normal((3, 5))).astype(dtype)
    x[0, 0] = -1e4
    tx = ml.tensor(x, device=device, requires_grad=True)
    for f, ref in ((F.softmax, softmax_ref(x.astype(np.float64), -1)),
                   (F.log_softmax, np.log(softmax_ref(x.astype(np.float64), -1) + 1e-300))):
        y = f(tx)
        assert y.dtype == dtype
        got = y.numpy()
        assert np.isfinite(got).all()
        if f is F.softmax:
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
        else:
            np.testing.assert_allclose(got[:, 1:], ref[:, 1:], rtol=1e-4, atol=1e-4)
        tx.grad = None
        y.backward(ml.tensor(np.ones((3, 5), dtype), device=device))
        assert np.isfinite(ml.backend.to_host(tx.grad)).all() and tx.grad.dtype == dtype
    x64 = 1e4 + rng.standard_normal((2, 4))
    t64 = ml.tensor(x64, device=device, requires_grad=True)
    check_grad(lambda t: F.softmax(t), [t64])
    check_grad(lambda t: F.log_softmax(t), [t64])


def test_bad_axis(device):
    with pytest.raises(ValueError, match=r"softmax: axis 2 is out of range for a tensor of shape \(2, 3\)"):
        F.softmax(ml.tensor(np.ones((2, 3)), device=device), axis=2)
