"""Global-norm clipping and the non-finite guard."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.optim import NonFiniteError, check_finite, clip_grad_norm, grad_norm


def _with_grad(device, g):
    p = ml.tensor(np.zeros(len(g)), device=device, requires_grad=True)
    p.grad = ml.tensor(np.array(g, dtype=np.float64), device=device).data
    return p


def test_clip_scales_to_max_norm_and_returns_total(device):
    a, b = _with_grad(device, [3.0, 0.0]), _with_grad(device, [0.0, 4.0])
    shared = b.grad
    total = clip_grad_norm([a, b, ml.tensor([1.0], requires_grad=True)], max_norm=1.0)  # grad None: skipped
    assert total.item() == pytest.approx(5.0)
    np.testing.assert_allclose(ml.Tensor(a.grad).numpy(), [3 / (5 + 1e-6), 0.0], rtol=1e-12)
    np.testing.assert_allclose(ml.Tensor(b.grad).numpy(), [0.0, 4 / (5 + 1e-6)], rtol=1e-12)
    np.testing.assert_array_equal(ml.Tensor(shared).numpy(), [0.0, 4.0])  # out of place


def test_clip_leaves_small_gradients_alone(device):
    a = _with_grad(device, [0.3, 0.4])
    assert clip_grad_norm([a], max_norm=1.0).item() == pytest.approx(0.5)
    np.testing.assert_allclose(ml.Tensor(a.grad).numpy(), [0.3, 0.4], rtol=1e-12)


def test_clip_keeps_float32():
    p = ml.tensor(np.zeros(2, np.float32), requires_grad=True)
    p.grad = np.array([30.0, 40.0], np.float32)
    clip_grad_norm([p], 1.0)
    assert p.grad.dtype == np.float32
    assert grad_norm([p]).item() == pytest.approx(1.0, rel=1e-5)


def test_non_finite_guard_names_step_and_parameter(device):
    ok = _with_grad(device, [1.0, 2.0])
    bad = _with_grad(device, [1.0, np.nan])
    named = [("h.0.attn.weight", ok), ("h.1.mlp.bias", bad)]
    norm = grad_norm([ok, bad]).item()
    with pytest.raises(NonFiniteError, match=r"step 7: non-finite gradient in the gradient of h\.1\.mlp\.bias"):
        check_finite(7, 0.5, norm, named)
    with pytest.raises(NonFiniteError, match=r"step 3: the loss is inf"):
        check_finite(3, float("inf"), 1.0, [("h.0.attn.weight", ok)])
    check_finite(1, 0.5, 1.0, [("h.0.attn.weight", ok)])  # finite: no error


def test_clip_grad_norm_underscore_is_pytorchs_name():
    from minilora.optim import clip_grad_norm_

    assert clip_grad_norm_ is clip_grad_norm
