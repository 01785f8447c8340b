"""Shape ops: forward against NumPy, float64 finite differences, integer tensors, errors naming shapes."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.gradcheck import check_grad
from minilora.ops import concat, split, stack


def _t(a, device, grad=True):
    return ml.tensor(a, device=device, requires_grad=grad)


@pytest.mark.parametrize("shape,new", [((3, 4), (4, 3)), ((2, 3, 4), (6, -1)), ((2, 3), (-1,)), ((6,), (1, 2, 3))])
def test_reshape(device, rng, shape, new):
    x = rng.standard_normal(shape)
    tx = _t(x, device)
    np.testing.assert_array_equal(tx.reshape(*new).numpy(), x.reshape(new))
    np.testing.assert_array_equal(tx.reshape(new).numpy(), x.reshape(new))
    check_grad(lambda t: t.reshape(new), [tx])


def test_reshape_non_contiguous(device, rng):
    x = rng.standard_normal((4, 3)).T
    tx = _t(x, device)
    np.testing.assert_array_equal(tx.reshape(12).numpy(), x.reshape(12))
    check_grad(lambda t: t.reshape(2, 6), [tx])


def test_reshape_error_names_both_shapes(device):
    with pytest.raises(ValueError, match=r"reshape: .* shape \(2, 3\) \(6 elements\) into shape \(4, 2\)"):
        ml.tensor(np.ones((2, 3)), device=device).reshape(4, 2)


@pytest.mark.parametrize("shape,axes", [((3, 4), ()), ((2, 3, 4), (2, 0, 1)), ((2, 3, 4), (0, -1, 1)), ((2, 3, 4), ())])
def test_transpose(device, rng, shape, axes):
    x = rng.standard_normal(shape)
    tx = _t(x, device)
    np.testing.assert_array_equal(tx.transpose(*axes).numpy(), x.transpose(*axes))
    check_grad(lambda t: t.transpose(*axes), [tx])
    if not axes:
        np.testing.assert_array_equal(tx.T.numpy(), x.T)


def test_transpose_bad_axes(device):
    with pytest.raises(ValueError, match=r"transpose: axes \(0, 0\) are not a permutation .* \(2, 3\)"):
        ml.tensor(np.ones((2, 3)), device=device).transpose(0, 0)


KEYS = [
    (slice(1, None), (4, 3)),
    ((slice(None), slice(None, None, 2)), (3, 5)),
    ((Ellipsis, 1, None), (2, 3, 4)),
    (2, (4, 3)),
    ((-1, slice(0, 2)), (4, 3)),
]


@pytest.mark.parametrize("key,shape", KEYS)
def test_getitem_basic(device, rng, key, shape):
    x = rng.standard_normal(shape)
    tx = _t(x, device)
    np.testing.assert_array_equal(tx[key].numpy(), x[key])
    check_grad(lambda t: t[key], [tx])


@pytest.mark.parametrize("as_tensor", [True, False])
def test_getitem_integer_array_accumulates_repeats(device, rng, as_tensor):
    x = rng.standard_normal((4, 3))
    idx = np.array([0, 2, 0, 0, 3])
    key = ml.tensor(idx, device=device) if as_tensor else ml.tensor(idx, device=device).data
    tx = _t(x, device)
    np.testing.assert_array_equal(tx[key].numpy(), x[idx])
    tx[key].sum().backward()
    np.testing.assert_array_equal(ml.tensor(tx.grad).numpy()[:, 0], [3, 0, 1, 1])
    check_grad(lambda t: t[key] * 2.0, [tx])


def test_getitem_mixed_advanced_and_list(device, rng):
    x = rng.standard_normal((3, 4))
    rows, cols = ml.tensor(np.array([0, 2, 2]), device=device), [1, 1, 3]
    tx = _t(x, device)
    np.testing.assert_array_equal(tx[rows, cols].numpy(), x[[0, 2, 2], cols])
    check_grad(lambda t: t[rows, cols], [tx])
    np.testing.assert_array_equal(tx[[2, 0]].numpy(), x[[2, 0]])


def test_getitem_boolean_mask(device, rng):
    x = rng.standard_normal((3, 4))
    tx = _t(x, device)
    mask = tx > 0.2
    np.testing.assert_array_equal(tx[mask].numpy(), x[x > 0.2])
    check_grad(lambda t: t[mask], [tx])


def test_getitem_on_integer_tensor_and_error(device):
    idx = ml.tensor(np.arange(12).reshape(3, 4), device=device)
    last = idx[:, -1]
    assert last.dtype == np.int64 and last.numpy().tolist() == [3, 7, 11] and not last.requires_grad
    with pytest.raises(IndexError, match=r"getitem: .*\(3, 4\)"):
        idx[5]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept_and_input_untouched(device, rng, dtype):
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    tx = _t(x, device)
    outs = [tx.reshape(6, 4), tx.transpose(1, 0, 2), tx[:, 1], tx[ml.tensor(np.array([1, 1]), device=device)],
            concat([tx, tx], axis=1), stack([tx, tx]), *split(tx, 2, axis=-1)]
    loss = outs[0].sum()
    for o in outs:
        assert o.dtype == dtype
        loss = loss + o.sum()
    loss.backward()
    assert tx.grad.dtype == dtype
    np.testing.assert_array_equal(tx.numpy(), x)


def test_cast(device, rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    tx = _t(x, device)
    y = tx.astype(np.float64)
    assert y.dtype == np.float64
    (y * y).sum().backward()
    assert tx.grad.dtype == np.float32
    np.testing.assert_allclose(ml.tensor(tx.grad).numpy(), 2 * x, rtol=1e-6)
    check_grad(lambda t: t.astype("float64") ** 2, [_t(rng.standard_normal(3), device)])


def test_cast_to_integer_is_not_differentiable(device):
    tx = _t(np.array([1.7, -2.2]), device)
    i = tx.astype("int64")
    assert i.dtype == np.int64 and not i.requires_grad and i.numpy().tolist() == [1, -2]
    f = ml.tensor(np.array([1, 2]), device=device).astype("float32")  # int -> float is fine, a new leaf
    assert f.dtype == np.float32 and not f.requires_grad


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(device, rng, axis):
    shapes = [(2, 3), (2, 3), (2, 3)]
    shapes = [tuple(s + k if i == axis % 2 else s for i, s in enumerate(sh)) for k, sh in enumerate(shapes)]
    xs = [rng.standard_normal(s) for s in shapes]
    ts = [_t(x, device) for x in xs]
    np.testing.assert_array_equal(concat(ts, axis=axis).numpy(), np.concatenate(xs, axis=axis))
    check_grad(lambda *t: concat(t, axis=axis), ts)


def test_concat_with_frozen_input(device, rng):
    a, b = _t(rng.standard_normal((2, 2)), device), _t(rng.standard_normal((3, 2)), device, grad=False)
    concat([a, b]).sum().backward()
    assert b.grad is None and a.grad.shape == (2, 2)


def test_concat_errors(device):
    a, b = ml.tensor(np.ones((2, 3)), device=device), ml.tensor(np.ones((3, 3)), device=device)
    with pytest.raises(ValueError, match=r"concat: shapes \[\(2, 3\), \(3, 3\)\] differ outside axis 1"):
        concat([a, b], axis=1)
    with pytest.raises(ValueError, match="concat: expected at least one tensor"):
        concat([])


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack(device, rng, axis):
    xs = [rng.standard_normal((2, 3)) for _ in range(3)]
    ts = [_t(x, device) for x in xs]
    np.testing.assert_array_equal(stack(ts, axis=axis).numpy(), np.stack(xs, axis=axis))
    check_grad(lambda *t: stack(t, axis=axis), ts)


def test_stack_error_names_shapes(device):
    a, b = ml.tensor(np.ones((2, 3)), device=device), ml.tensor(np.ones((3, 2)), device=device)
    with pytest.raises(ValueError, match=r"stack: all tensors must have the same shape, got \[\(2, 3\), \(3, 2\)\]"):
        stack([a, b])


def test_split(device, rng):
    x = rng.standard_normal((2, 6))
    tx = _t(x, device)
    for got, ref in zip(split(tx, 3), np.split(x, 3, axis=-1), strict=True):
        np.testing.assert_array_equal(got.numpy(), ref)
    parts = split(tx, [1, 0, 5], axis=1)
    assert [p.shape for p in parts] == [(2, 1), (2, 0), (2, 5)]
    check_grad(lambda t: concat(split(t, [4, 2])[::-1], axis=1), [tx])
    check_grad(lambda t: split(t, 2, axis=0)[1], [tx])


def test_split_errors(device):
    x = ml.tensor(np.ones((2, 6)), device=device)
    with pytest.raises(ValueError, match=r"split: axis -1 of shape \(2, 6\) \(size 6\) cannot be split into 4"):
        split(x, 4)
    with pytest.raises(ValueError, match=r"split: sizes \[2, 2\] do not add up to 6"):
        split(x, [2, 2])


def test_getitem_index_on_another_device_is_refused(device):
    if device == "cpu":
        pytest.skip("needs a second device")
    x = ml.tensor(np.arange(4.0), device="cpu")
    with pytest.raises(RuntimeError, match="getitem: the index tensor is on cuda but the tensor is on cpu"):
        x[ml.tensor(np.array([0, 1]), device=device)]
    y = ml.tensor(np.arange(4.0), device=device)
    np.testing.assert_array_equal(y[np.array([3, 1])].numpy(), [3.0, 1.0])  # host index data is uploaded
