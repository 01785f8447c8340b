"""SGD against hand-computed updates (PyTorch's rule, dampening 0)."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.optim import SGD


def _param(device, values, dtype=np.float64):
    return ml.tensor(np.array(values, dtype=dtype), device=device, requires_grad=True)


def _step(opt, p, g):
    p.grad = ml.tensor(np.array(g, dtype=p.dtype), device=p.device).data
    opt.step()


def test_plain_sgd_with_weight_decay(device):
    p = _param(device, [1.0, -2.0])
    opt = SGD([p], lr=0.1, weight_decay=0.5)
    _step(opt, p, [0.2, 0.4])
    # g' = g + 0.5 p = [0.7, -0.6]; p = p - 0.1 g'
    np.testing.assert_allclose(p.numpy(), [0.93, -1.94], rtol=1e-12)
    assert opt.state_size() == 0  # no momentum: no state


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_two_steps(device, nesterov):
    p = _param(device, [1.0])
    opt = SGD([p], lr=0.1, momentum=0.9, nesterov=nesterov)
    _step(opt, p, [1.0])  # b = 1; d = 1 + 0.9 (nesterov) or 1
    p1 = 1.0 - 0.1 * (1.9 if nesterov else 1.0)
    np.testing.assert_allclose(p.numpy(), [p1], rtol=1e-12)
    _step(opt, p, [0.5])  # b = 0.9 + 0.5 = 1.4; d = 0.5 + 0.9 * 1.4 = 1.76 (nesterov) or 1.4
    np.testing.assert_allclose(p.numpy(), [p1 - 0.1 * (1.76 if nesterov else 1.4)], rtol=1e-12)
    assert opt.state_size() == 1


def test_float32_stays_float32(device):
    p = _param(device, [1.0, 2.0], dtype=np.float32)
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    _step(opt, p, [0.1, 0.1])
    assert p.dtype == np.float32


def test_bad_hyperparameters():
    p = ml.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="nesterov"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        SGD([p], lr=-1.0)
