"""F.embedding: gather forward, scatter-add backward (repeated ids), index checks, frozen tables."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import F
from minilora.gradcheck import check_grad


@pytest.mark.parametrize("shape", [(5,), (2, 3)])
def test_forward_and_grad(device, rng, shape):
    w = rng.standard_normal((6, 4))
    idx = rng.integers(0, 6, shape)
    tw = ml.tensor(w, device=device, requires_grad=True)
    tidx = ml.tensor(idx, device=device)
    np.testing.assert_array_equal(F.embedding(tidx, tw).numpy(), w[idx])
    check_grad(lambda t: F.embedding(tidx, t), [tw])
    np.testing.assert_array_equal(tw.numpy(), w)


def test_repeated_ids_accumulate(device, rng):
    w = rng.standard_normal((4, 3))
    idx = np.array([[1, 1, 2], [1, 0, 2]])
    tw = ml.tensor(w, device=device, requires_grad=True)
    g = rng.standard_normal((2, 3, 3))
    F.embedding(ml.tensor(idx, device=device), tw).backward(ml.tensor(g, device=device))
    ref = np.zeros_like(w)
    np.add.at(ref, idx.reshape(-1), g.reshape(-1, 3))
    np.testing.assert_allclose(tw.grad if device == "cpu" else ml.backend.to_host(tw.grad), ref, rtol=1e-12)
    check_grad(lambda t: F.embedding(ml.tensor(idx, device=device), t), [tw])


def test_raw_array_ids_and_dtype(device, rng):
    for dtype in (np.float32, np.float64):
        tw = ml.tensor(rng.standard_normal((5, 2)).astype(dtype), device=device)
        ids = ml.backend.to_device(np.array([0, 4]), device)
        assert F.embedding(ids, tw).dtype == dtype


def test_frozen_table_keeps_nothing(device, rng):
    tw = ml.tensor(rng.standard_normal((5, 2)), device=device)
    y = F.embedding(ml.tensor(np.array([1, 2]), device=device), tw)
    assert y._ctx is None and not y.requires_grad


def test_bad_ids_raise(device):
    tw = ml.tensor(np.ones((5, 2)), device=device)
    with pytest.raises(IndexError, match=r"embedding: index 5 is out of range \[0, 5\)"):
        F.embedding(ml.tensor(np.array([0, 5]), device=device), tw)
    with pytest.raises(IndexError, match=r"embedding: index -1"):
        F.embedding(ml.tensor(np.array([-1]), device=device), tw)
    with pytest.raises(TypeError, match="embedding: indices must be integers"):
        F.embedding(ml.tensor(np.array([0.0]), device=device), tw)
