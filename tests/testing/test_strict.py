"""The strict CuPy stand-in refuses what CuPy refuses (and what a GPU program should not do)."""

from __future__ import annotations

import numpy as np
import pytest

from minilora.testing import strict
from minilora.testing.strict import StrictDeviceError


@pytest.fixture
def a():
    return strict.asarray(np.arange(6.0).reshape(2, 3))


def test_refuses_implicit_host_copies(a):
    with pytest.raises(StrictDeviceError, match="__array__"):
        np.asarray(a)
    with pytest.raises(StrictDeviceError, match=r"float\(\)"):
        float(a[0, 0])
    with pytest.raises(StrictDeviceError, match=r"bool\(\)"):
        bool(a[0, 0] > 0)
    with pytest.raises(StrictDeviceError, match=r"\.item\(\)"):
        a[0, 0].item()
    with pytest.raises(StrictDeviceError, match="iteration"):
        list(a)


def test_refuses_host_operands_indices_and_values(a):
    with pytest.raises(StrictDeviceError, match="host NumPy array of shape \\(3,\\)"):
        a + np.ones(3)
    with pytest.raises(StrictDeviceError, match="device index"):
        a[np.array([0, 1])]
    with pytest.raises(StrictDeviceError, match="assigned value"):
        a[0] = np.zeros(3)


def test_refuses_numpy_functions_and_ufunc_at(a):
    with pytest.raises(StrictDeviceError, match="np.exp"):
        np.exp(a)
    with pytest.raises(StrictDeviceError, match="np.add.at"):
        np.add.at(a, strict.asarray(np.array([0])), 1.0)
    with pytest.raises(StrictDeviceError, match="np.concatenate"):
        np.concatenate([a, a])
    assert not hasattr(strict.add, "at")


@pytest.mark.parametrize("name", ["errstate", "seterr", "vectorize", "testing"])
def test_numpy_only_names_are_missing(name):
    with pytest.raises(AttributeError, match="NumPy-only"):
        getattr(strict, name)


def test_reductions_are_0d_device_arrays(a):
    for r in (a.sum(), a.max(), strict.mean(a), a[0, 0]):
        assert isinstance(r, strict.ndarray) and r.ndim == 0


def test_module_functions_and_explicit_transfers_work(a):
    y = strict.exp(a) + strict.zeros((2, 3))
    assert isinstance(y, strict.ndarray)
    np.testing.assert_allclose(strict.asnumpy(y), np.exp(np.arange(6.0).reshape(2, 3)))
    np.testing.assert_array_equal(a.get(), np.arange(6.0).reshape(2, 3))
    assert strict.get_array_module(a) is strict and strict.get_array_module(np.ones(1)) is np


def test_scatter_add_through_cupyx(a):
    dst = strict.zeros(3)
    strict.cupyx.scatter_add(dst, strict.asarray(np.array([1, 1, 2])), strict.ones(3))
    np.testing.assert_array_equal(dst.get(), [0.0, 2.0, 1.0])
