"""F.dropout: identity when off, inverted scaling, mask saved for backward, reproducible from the seed."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import F
from minilora.gradcheck import check_grad


def test_identity_when_off(device):
    x = ml.tensor(np.ones((2, 3)), device=device, requires_grad=True)
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.5, training=False) is x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_scale_and_backward(device, dtype):
    x = ml.tensor(np.full((50, 40), 2.0, dtype), device=device, requires_grad=True)
    y = F.dropout(x, 0.25)
    assert y.dtype == dtype
    out = y.numpy()
    kept = out != 0
    np.testing.assert_allclose(out[kept], 2.0 / 0.75, rtol=1e-6)
    assert 0.65 < kept.mean() < 0.85
    y.backward(ml.tensor(np.ones((50, 40), dtype), device=device))
    g = ml.backend.to_host(x.grad)
    assert g.dtype == dtype
    np.testing.assert_allclose(g, kept / 0.75, rtol=1e-6)  # the same mask as the forward
    np.testing.assert_array_equal(x.numpy(), 2.0)


def test_seeded_masks_repeat(device):
    x = ml.tensor(np.ones((4, 5)), device=device)
    ml.manual_seed(3)
    a = F.dropout(x, 0.5).numpy()
    ml.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), a)


def test_gradcheck_with_reseeding(device, rng):
    tx = ml.tensor(rng.standard_normal((3, 4)), device=device, requires_grad=True)

    def fn(t):
        ml.manual_seed(0)  # a fixed mask across the finite-difference evaluations
        return F.dropout(t, 0.4)

    check_grad(fn, [tx])


def test_p_one_and_bad_p(device):
    x = ml.tensor(np.ones(3), device=device)
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(), 0.0)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\], got 1.5"):
        F.dropout(x, 1.5)
