"""F.cross_entropy: NumPy reference (with ignore_index and label smoothing), gradients, stability, errors."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import F
from minilora.gradcheck import check_grad


def ce_ref(x, t, ignore_index=-100, eps=0.0):
    x2, t2 = x.reshape(-1, x.shape[-1]), t.reshape(-1)
    z = x2 - x2.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    valid = t2 != ignore_index
    if not valid.any():
        return 0.0
    rows = np.nonzero(valid)[0]
    nll = -logp[rows, t2[rows]]
    smooth = -logp[rows].mean(-1)
    return ((1 - eps) * nll + eps * smooth).mean()


CASES = [((4, 5), 0.0), ((2, 3, 5), 0.0), ((4, 5), 0.1), ((2, 3, 5), 0.25)]


@pytest.mark.parametrize("shape,eps", CASES)
def test_forward_and_grad(device, rng, shape, eps):
    x = rng.standard_normal(shape)
    t = rng.integers(0, shape[-1], shape[:-1])
    t.flat[1] = -100
    tx, tt = ml.tensor(x, device=device, requires_grad=True), ml.tensor(t, device=device)
    loss = F.cross_entropy(tx, tt, label_smoothing=eps)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), ce_ref(x, t, eps=eps), rtol=1e-12)
    check_grad(lambda a: F.cross_entropy(a, tt, label_smoothing=eps), [tx])
    np.testing.assert_array_equal(tx.numpy(), x)
    np.testing.assert_array_equal(tt.numpy(), t)


def test_custom_ignore_index(device, rng):
    x, t = rng.standard_normal((5, 3)), np.array([0, 2, 1, 2, 1])
    tx = ml.tensor(x, device=device, requires_grad=True)
    tt = ml.tensor(t, device=device)
    np.testing.assert_allclose(F.cross_entropy(tx, tt, ignore_index=2).item(), ce_ref(x, t, 2), rtol=1e-12)
    check_grad(lambda a: F.cross_entropy(a, tt, ignore_index=2), [tx])


def test_all_ignored_gives_zero_loss_and_gradient(device, rng):
    tx = ml.tensor(rng.standard_normal((3, 4)), device=device, requires_grad=True)
    loss = F.cross_entropy(tx, ml.tensor(np.full(3, -100), device=device))
    assert loss.item() == 0.0
    loss.backward()
    assert np.all(ml.backend.to_host(tx.grad) == 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_at_large_logits_and_dtype(device, rng, dtype):
    x = (1e4 * rng.standard_normal((4, 6))).astype(dtype)
    t = np.array([0, 3, 5, 1])
    tx = ml.tensor(x, device=device, requires_grad=True)
    loss = F.cross_entropy(tx, ml.tensor(t, device=device), label_smoothing=0.1)
    assert loss.dtype == dtype
    np.testing.assert_allclose(loss.item(), ce_ref(x.astype(np.float64), t, eps=0.1), rtol=1e-5)
    loss.backward()
    g = ml.backend.to_host(tx.grad)
    assert g.dtype == dtype and np.isfinite(g).all()
    x64 = 1e4 + rng.standard_normal((3, 4))
    t64 = ml.tensor(np.array([1, 0, 3]), device=device)
    check_grad(lambda a: F.cross_entropy(a, t64), [ml.tensor(x64, device=device, requires_grad=True)])


def test_bad_targets_raise(device):
    tx = ml.tensor(np.zeros((2, 3)), device=device)
    with pytest.raises(IndexError, match=r"cross_entropy: target 3 is out of range \[0, 3\) or -100"):
        F.cross_entropy(tx, ml.tensor(np.array([0, 3]), device=device))
    with pytest.raises(ValueError, match=r"cross_entropy: logits of shape \(2, 3\) need targets of shape \(2,\)"):
        F.cross_entropy(tx, ml.tensor(np.array([0, 1, 2]), device=device))
    with pytest.raises(TypeError, match="cross_entropy: indices must be integers"):
        F.cross_entropy(tx, ml.tensor(np.array([0.0, 1.0]), device=device))
    # the check can be switched off (no host sync); then nothing is verified
    F.cross_entropy(tx, ml.tensor(np.array([0, 1]), device=device), check_targets=False)
