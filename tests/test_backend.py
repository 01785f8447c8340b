"""The backend: array modules, devices, transfers, scatter-add, seeded generators, the CUDA switch."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from minilora import backend
from minilora.tensor import Tensor
from minilora.testing import strict


def test_get_array_module_and_device_of():
    a = np.ones(3)
    assert backend.get_array_module(a) is np
    assert backend.get_array_module(None, 1.0, a) is np
    assert backend.device_of(a) == "cpu" and backend.device_of(np.float32(1)) == "cpu"
    with backend.use_cuda_module(strict):
        d = strict.asarray(a)
        assert backend.get_array_module(a, 2, d) is strict
        assert backend.device_of(d) == "cuda"
    with pytest.raises(TypeError, match="expected a NumPy or CuPy array, got list"):
        backend.device_of([1, 2])


def test_get_array_module_unwraps_a_tensor(device):
    t = Tensor(backend.to_device(np.ones(3), device))
    xp = backend.module_for(device)
    assert backend.get_array_module(t) is xp
    assert backend.get_array_module(None, 2.0, t) is xp
    assert backend.get_array_module(Tensor(np.ones(2))) is np


def test_to_device_and_to_host(device):
    a = np.arange(6.0).reshape(2, 3)
    d = backend.to_device(a, device)
    assert backend.device_of(d) == device
    back = backend.to_host(d)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, a)
    assert backend.to_device([1.0, 2.0], device, dtype=np.float32).dtype == np.float32
    np.testing.assert_array_equal(backend.to_device(d, "cpu"), a)  # device -> cpu goes through the host


def test_unknown_device():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        backend.module_for("tpu")


def test_scatter_add_accumulates_repeated_indices(device):
    dst = backend.to_device(np.zeros((4, 2)), device)
    idx = backend.to_device(np.array([0, 2, 0, 0]), device)
    vals = backend.to_device(np.ones((4, 2)), device)
    backend.scatter_add(dst, idx, vals)
    np.testing.assert_array_equal(backend.to_host(dst)[:, 0], [3, 0, 1, 0])


def test_manual_seed_reproduces_host_and_device_generators(device):
    backend.manual_seed(123)
    h1 = backend.host_rng().standard_normal(4)
    d1 = backend.to_host(backend.device_rng(device).standard_normal(4))
    backend.manual_seed(123)
    np.testing.assert_array_equal(backend.host_rng().standard_normal(4), h1)
    np.testing.assert_array_equal(backend.to_host(backend.device_rng(device).standard_normal(4)), d1)
    backend.manual_seed(124)
    assert not np.array_equal(backend.host_rng().standard_normal(4), h1)


def test_rng_state_round_trip():
    backend.manual_seed(7)
    backend.host_rng().random(3)
    backend.device_rng("cpu").random(3)
    state = backend.rng_state()
    a, b = backend.host_rng().random(3), backend.device_rng("cpu").random(3)
    backend.set_rng_state(state)
    np.testing.assert_array_equal(backend.host_rng().random(3), a)
    np.testing.assert_array_equal(backend.device_rng("cpu").random(3), b)


def test_use_cuda_module_restores_state():
    before = (backend.cuda_available(), backend._cuda_module)
    with backend.use_cuda_module(strict):
        assert backend.cuda_available() and backend.module_for("cuda") is strict
        backend.device_rng("cuda")
    assert (backend.cuda_available(), backend._cuda_module) == before
    assert "cuda" not in backend._generators


def test_cuda_unavailable_here_with_a_reason():
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed on this machine")
    assert not backend.cuda_available()
    assert "CuPy is not installed" in backend.cuda_unavailable_reason()
    with pytest.raises(RuntimeError, match="device 'cuda' requested but CuPy is not installed"):
        backend.module_for("cuda")


def test_scalar_like_keeps_dtype(device):
    x = backend.to_device(np.ones(2, dtype=np.float32), device)
    s = backend.scalar_like(0.1, x)
    assert s.dtype == np.float32 and s.ndim == 0 and backend.device_of(s) == device
