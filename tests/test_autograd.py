"""The engine: deep graphs, fan-out, released graphs, no_grad, frozen inputs, errors, memory release."""

from __future__ import annotations

import gc
import sys
import weakref

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.autograd import Function
from minilora.gradcheck import check_grad
from minilora.testing import strict


def _leaf(a, device="cpu"):
    return ml.tensor(np.asarray(a, dtype=np.float64), device=device, requires_grad=True)


def test_chain_of_10000_ops_has_no_recursion_limit(device):
    x = _leaf([0.5, -0.25], device)
    y = x
    for _ in range(10_000):
        y = y * 1.0
    assert sys.getrecursionlimit() < 10_000 * 2  # the walk would need that many frames if it recursed
    y.sum().backward()
    np.testing.assert_array_equal(ml.tensor(x.grad).numpy(), [1.0, 1.0])
    del y  # dropping a long released chain must not crash either


def test_fan_out_accumulates(device):
    x = _leaf([1.0, 2.0, 3.0], device)
    a, b = x * 2.0, x.exp()
    (a + b + x).sum().backward()  # x feeds three branches
    np.testing.assert_allclose(ml.tensor(x.grad).numpy(), 2.0 + np.exp([1.0, 2.0, 3.0]) + 1.0)


def test_in_place_fan_out_sums_leave_shared_gradients_alone(device, rng):
    # Add hands one g_y array to both its inputs; GetItem, LayerNorm and GELU return fresh arrays that the
    # engine sums other branches into in place. Mixed fan-outs must still give exact sums and never write
    # into an array another tensor (or the caller) still holds.
    x = _leaf(rng.standard_normal((4, 3)), device)
    g = ml.tensor(rng.standard_normal((4, 3)), device=device)
    g_host = g.numpy()

    def f(x):
        s = x + x  # Add: the same gradient array reaches x twice
        h = s + ml.F.layer_norm(s, None, None) + ml.F.gelu(s)  # s fans out to Add (a view) and two fresh ops
        return ml.F.concat([h[:2] * 2.0, h[2:] * 3.0], axis=0) + s  # GetItem slices of h, s again

    check_grad(f, [x])
    y = f(x)
    y.backward(g)
    np.testing.assert_array_equal(g.numpy(), g_host)  # the caller's gradient is not mutated
    first = ml.tensor(x.grad).numpy()
    x.grad = None
    f(x).backward(g)
    np.testing.assert_array_equal(ml.tensor(x.grad).numpy(), first)


def test_tied_leaf_used_twice_gets_the_sum(device, rng):
    w = _leaf(rng.standard_normal((3, 3)), device)  # one weight used by two "layers", as GPT ties wte and lm_head
    x = ml.tensor(rng.standard_normal((2, 3)), device=device)
    h = x @ w
    (h @ w.T).sum().backward()
    x_, w_ = x.numpy(), w.numpy()
    g_h = np.ones((2, 3)) @ w_  # d/dh of sum(h w^T)
    expected = x_.T @ g_h + (np.ones((2, 3)).T @ (x_ @ w_))
    np.testing.assert_allclose(ml.tensor(w.grad).numpy(), expected, rtol=1e-12)


def test_second_backward_through_released_graph_raises(device):
    x = _leaf([1.0, 2.0], device)
    y = (x.exp() * 3.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"backward through the graph a second time .*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward(device):
    x = _leaf([1.0, 2.0], device)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(ml.tensor(x.grad).numpy(), 2 * 2 * np.array([1.0, 2.0]))


def test_no_grad_records_nothing(device):
    x = _leaf([1.0, 2.0], device)
    with ml.no_grad():
        assert not ml.is_grad_enabled()
        y = (x * 2.0).exp()
    assert ml.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_non_scalar_backward_names_the_shape(device):
    y = _leaf(np.ones((2, 3)), device) * 2.0
    with pytest.raises(RuntimeError, match=r"the output has shape \(2, 3\); pass grad="):
        y.backward()
    with pytest.raises(ValueError, match=r"grad shape \(3,\) does not match output shape \(2, 3\)"):
        y.backward(ml.tensor(np.ones(3), device=device))


def test_float_op_on_integer_tensor_names_op_and_dtype(device):
    i = ml.tensor(np.array([[1, 2]]), device=device)
    with pytest.raises(TypeError, match=r"Tanh: expected floating-point tensors, got dtype int64 with shape \(1, 2\)"):
        i.tanh()
    with pytest.raises(TypeError, match="only floating-point tensors can require grad, got dtype int64"):
        ml.tensor(np.array([1]), device=device, requires_grad=True)


def test_device_mixing_names_both_devices():
    with backend.use_cuda_module(strict):
        a = ml.tensor(np.ones(2))
        b = ml.tensor(np.ones(2), device="cuda")
        with pytest.raises(RuntimeError, match=r"Add: inputs are on different devices \(cpu and cuda\)"):
            a + b
        with pytest.raises(RuntimeError, match=r"MatMul: inputs are on different devices \(cuda and cpu\)"):
            b @ a


class _Spy(Function):
    """y = x * w with a backward that records which gradients it was asked for (not registered: leading _)."""

    calls: list[tuple[bool, ...]] = []

    def forward(self, x, w):
        self.save_for_backward(x, w)
        return x * w

    def backward(self, g_y):
        x, w = self.saved
        _Spy.calls.append(self.needs_input_grad)
        g_x = g_y * w if self.needs_input_grad[0] else None
        g_w = g_y * x if self.needs_input_grad[1] else None
        return g_x, g_w


def test_grad_modes_nest_and_restore_even_on_error():
    from minilora.autograd import enable_grad, set_grad_enabled

    x = _leaf([1.0, 2.0])
    with ml.no_grad():
        with enable_grad():
            assert (x * x).requires_grad
        assert not (x * x).requires_grad
        with pytest.raises(RuntimeError), set_grad_enabled(True):
            raise RuntimeError("inside")
        assert not ml.is_grad_enabled()
    assert ml.is_grad_enabled() and (x * x).requires_grad


def test_frozen_inputs_get_no_gradient_computed(device):
    _Spy.calls.clear()
    x = _leaf([1.0, 2.0], device)
    w = ml.tensor(np.array([3.0, 4.0]), device=device)  # frozen
    _Spy.apply(x, w).sum().backward()
    assert _Spy.calls == [(True, False)]
    assert w.grad is None
    np.testing.assert_array_equal(ml.tensor(x.grad).numpy(), [3.0, 4.0])
    w.requires_grad_(True)
    w.requires_grad_(False)
    out = _Spy.apply(ml.tensor(np.ones(2), device=device), w)
    assert not out.requires_grad and out._ctx is None  # nothing needs a gradient: no graph, nothing saved


def _graph_refs(device):
    """A graph y = sum(log(exp(x))) whose middle tensor h is referenced only by the graph."""
    x = _leaf(np.linspace(0.5, 1.5, 4), device)
    h = x.exp()  # h.data is saved by Exp (as y) and by Log (as x)
    refs = [weakref.ref(h), weakref.ref(h._ctx)]
    if device == "cpu":
        refs.append(weakref.ref(h.data))  # the strict stand-in's arrays take no weak references
    return h.log().sum(), refs


def test_saved_arrays_are_released_after_backward(device):
    y, refs = _graph_refs(device)
    gc.collect()
    assert refs[0]() is None  # the graph holds h's producer (a node), not the Tensor h itself
    assert all(r() is not None for r in refs[1:])  # ... and what backward saved: Exp's output
    y.backward()
    gc.collect()
    assert all(r() is None for r in refs)


def test_graph_keeps_no_activation_that_backward_did_not_save():
    x = _leaf(np.linspace(0.5, 1.5, 4), "cpu")
    h = x * 2.0  # Mul by a constant saves the constant, not h; Sum saves only a shape
    data = weakref.ref(h.data)
    y = h.sum()
    del h
    gc.collect()
    assert data() is None  # freed at once, as in PyTorch: only saved arrays outlive the forward
    y.backward()
    np.testing.assert_allclose(x.grad, np.full(4, 2.0))


def test_retained_graph_keeps_saved_arrays(device):
    y, refs = _graph_refs(device)
    y.backward(retain_graph=True)
    gc.collect()
    assert all(r() is not None for r in refs[1:])  # h's producer and its saved output


def test_leaf_gradients_never_alias(device):
    a = _leaf(np.zeros((2, 3)), device)
    c = _leaf(np.zeros((3, 2)), device)
    (a + c.T).backward(ml.tensor(np.ones((2, 3)), device=device))
    a.grad *= 5.0  # an in-place update of one .grad (gradient clipping) must not reach the other
    np.testing.assert_array_equal(ml.tensor(c.grad).numpy(), np.ones((3, 2)))


def test_gradient_accumulates_across_backward_calls(device):
    x = _leaf([1.0, -1.0], device)
    for _ in range(3):
        (x * 2.0).sum().backward()
    np.testing.assert_array_equal(ml.tensor(x.grad).numpy(), [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None
