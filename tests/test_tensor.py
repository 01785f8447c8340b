"""Tensor: the dtype policy of tensor(), devices, host copies, detach, repr and comparisons."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml


def test_python_floats_become_float32():
    assert ml.tensor([1.0, 2.5]).dtype == np.float32
    assert ml.tensor(3.0).dtype == np.float32
    assert ml.tensor([[1, 2]]).dtype == np.int64


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_])
def test_arrays_keep_their_dtype(device, dtype):
    t = ml.tensor(np.zeros((2, 2), dtype=dtype), device=device)
    assert t.dtype == dtype and t.device == device
    assert ml.tensor(np.float64(1.5), device=device).dtype == np.float64


def test_explicit_dtype(device):
    assert ml.tensor([1, 2], dtype=np.float64, device=device).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_upcast_from_python_or_numpy_scalars(device, dtype):
    x = ml.tensor(np.ones(3, dtype=dtype), device=device)
    for y in (x + 1.5, 2.5 * x, x - np.float64(0.5), x / 3, 1.0 / x, x * True, x ** 2.0):
        assert y.dtype == dtype


def test_to_moves_between_devices(device):
    x = ml.tensor(np.arange(6.0).reshape(2, 3), device="cpu", requires_grad=True)
    y = x.to(device)
    assert y.device == device and y.requires_grad
    assert x.to("cpu") is x
    np.testing.assert_array_equal(y.to("cpu").numpy(), x.numpy())


def test_numpy_is_a_host_copy(device):
    x = ml.tensor(np.arange(4.0), device=device)
    host = x.numpy()
    assert isinstance(host, np.ndarray)
    host[0] = 99.0
    assert x.numpy()[0] == 0.0


def test_item(device):
    assert ml.tensor(np.array([[2.5]]), device=device).item() == 2.5
    assert isinstance(ml.tensor(np.array(3), device=device).item(), int)
    with pytest.raises(ValueError, match="item\\(\\): tensor has 3 elements, expected 1"):
        ml.tensor(np.ones(3), device=device).item()


def test_detach(device):
    x = ml.tensor(np.ones(3), device=device, requires_grad=True)
    y = x * 2.0
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d.data is y.data


def test_repr(device):
    r = repr(ml.tensor(np.array([1.0, 2.0]), device=device, requires_grad=True))
    assert r.startswith("tensor([1., 2.]") and r.endswith("requires_grad=True)")
    assert ("device='cuda'" in r) == (device == "cuda")


def test_comparisons_are_boolean_and_not_differentiable(device):
    x = ml.tensor(np.array([1.0, 2.0, 3.0]), device=device, requires_grad=True)
    other = ml.tensor(np.array([3.0, 2.0, 1.0]), device=device)
    for got, ref in [(x < 2, [1, 0, 0]), (x <= 2, [1, 1, 0]), (x > 2, [0, 0, 1]), (x >= 2, [0, 1, 1]),
                     (x.eq(other), [0, 1, 0]), (x.ne(other), [1, 0, 1])]:
        assert got.dtype == np.bool_ and not got.requires_grad
        np.testing.assert_array_equal(got.numpy(), np.array(ref, dtype=bool))


def test_argmax_and_shape_properties(device):
    x = ml.tensor(np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 1.0]]), device=device)
    assert x.argmax(axis=1).numpy().tolist() == [1, 0]
    assert (x.shape, x.ndim, x.size, len(x)) == ((2, 3), 2, 6, 2)


def test_unsupported_operand_is_refused():
    with pytest.raises(TypeError, match="unsupported operand type str"):
        ml.tensor(np.ones(2)) + "a"


def test_pytorch_names_numel_dim_view_and_dim_keywords(device):
    x = ml.tensor(np.arange(12.0).reshape(3, 4), device=device, requires_grad=True)
    assert x.numel() == 12 and x.dim() == 2
    v = x.view(4, 3)
    assert v.shape == (4, 3) and x.view((2, 6)).shape == (2, 6)
    np.testing.assert_array_equal(x.sum(dim=1).numpy(), x.sum(axis=1).numpy())
    assert x.mean(dim=0, keepdim=True).shape == (1, 4)
    np.testing.assert_array_equal(x.max(dim=-1).numpy(), [3.0, 7.0, 11.0])
    np.testing.assert_array_equal(x.argmax(dim=1).numpy(), [3, 3, 3])
    v.sum().backward()  # view is differentiable like reshape
    np.testing.assert_array_equal(x.grad if device == "cpu" else ml.backend.to_host(x.grad), np.ones((3, 4)))
    with pytest.raises(TypeError, match="both axis=0 and dim=1"):
        x.sum(axis=0, dim=1)
    assert x.cpu().device == "cpu"


def test_size_is_numpys_count_and_pytorchs_call():
    x = ml.tensor(np.zeros((3, 4)))
    assert x.size == 12 and x.size * 2 == 24 and x.size() == (3, 4) and x.size(1) == 4 and x.size(-2) == 3
