"""Adam and AdamW against hand-computed values: bias correction, coupled L2 vs decoupled decay."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minilora as ml
from minilora.optim import Adam, AdamW


def _step(opt, p, g):
    p.grad = ml.tensor(np.array(g, dtype=p.dtype), device=p.device).data
    opt.step()


def _reference(p, grads, lr, b1, b2, eps, wd, decoupled):
    """PyTorch's Adam/AdamW on one scalar, in plain Python floats."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p *= 1 - lr * wd
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p -= lr / (1 - b1**t) * m / (math.sqrt(v) / math.sqrt(1 - b2**t) + eps)
    return p


def test_adam_first_step_is_lr_times_sign(device):
    # bias correction makes the first step m_hat / sqrt(v_hat) = g / |g|
    p = ml.tensor(np.array([1.0, 1.0]), device=device, requires_grad=True)
    opt = Adam([p], lr=0.1, eps=0.0)
    _step(opt, p, [0.5, -3.0])
    np.testing.assert_allclose(p.numpy(), [0.9, 1.1], rtol=1e-12)


@pytest.mark.parametrize("cls,wd", [(Adam, 0.0), (Adam, 0.1), (AdamW, 0.1), (AdamW, 0.0)])
def test_two_steps_against_hand_computation(device, cls, wd):
    grads = [0.3, -0.2, 0.05]
    p = ml.tensor(np.array([2.0]), device=device, requires_grad=True)
    opt = cls([p], lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=wd)
    for g in grads:
        _step(opt, p, [g])
    expected = _reference(2.0, grads, 0.01, 0.8, 0.9, 1e-6, wd, decoupled=cls is AdamW)
    np.testing.assert_allclose(p.numpy(), [expected], rtol=1e-13)


def test_adamw_decay_is_decoupled():
    # with zero gradient, Adam's L2 term still moves p through the adaptive ratio (a full lr step),
    # AdamW only shrinks p by (1 - lr wd)
    for cls, expected in ((AdamW, 4.0 * (1 - 0.1 * 0.5)), (Adam, 4.0 - 0.1)):
        p = ml.tensor(np.array([4.0]), requires_grad=True)
        opt = cls([p], lr=0.1, weight_decay=0.5, eps=1e-12)
        _step(opt, p, [0.0])
        np.testing.assert_allclose(p.numpy(), [expected], rtol=1e-12)


def test_adamw_default_weight_decay():
    p = ml.tensor([1.0], requires_grad=True)
    assert AdamW([p]).param_groups[0]["weight_decay"] == 0.01
    assert Adam([p]).param_groups[0]["weight_decay"] == 0.0


def test_float32_kept_and_state_size(device):
    p = ml.tensor(np.ones((3, 4), np.float32), device=device, requires_grad=True)
    q = ml.tensor(np.ones(5, np.float32), device=device, requires_grad=True)
    opt = AdamW([p, q], lr=1e-2)
    _step(opt, p, np.full((3, 4), 0.1))
    _step(opt, q, np.full(5, 0.1))
    assert p.dtype == np.float32 and q.dtype == np.float32
    assert opt.state_size() == 2 * (12 + 5)


def test_bad_betas():
    with pytest.raises(ValueError, match="betas"):
        Adam([ml.tensor([1.0], requires_grad=True)], betas=(1.0, 0.9))
