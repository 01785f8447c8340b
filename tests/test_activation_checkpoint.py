"""minilora.checkpoint: gradients equal the plain forward's, the frozen-input case, bad returns."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import F
from minilora.activation_checkpoint import Checkpoint
from minilora.nn import Linear


def _block(lin: Linear, x: ml.Tensor) -> ml.Tensor:
    return F.dropout(lin(x).tanh(), 0.4) * x  # x used twice: a fan-out inside the segment


def _grads(device: str, use_checkpoint: bool, x_requires_grad: bool) -> tuple[list, ml.Tensor]:
    ml.manual_seed(3)
    lin = Linear(4, 4).to(device, "float64")
    x = ml.tensor(np.random.default_rng(0).standard_normal((2, 3, 4)), dtype="float64", device=device,
                  requires_grad=x_requires_grad)
    h = x * 2.0  # a non-leaf input: gradients must reach x through it
    y = ml.checkpoint(_block, lin, h) if use_checkpoint else _block(lin, h)
    z = F.dropout(y, 0.3)  # a draw after the segment: the rerun must not shift it
    (z * z).sum().backward()
    return [lin.weight.grad, lin.bias.grad] + ([x.grad] if x_requires_grad else []), z


@pytest.mark.parametrize("x_requires_grad", [True, False])
def test_gradients_equal_plain_forward_bit_for_bit(device: str, x_requires_grad: bool) -> None:
    plain, z_plain = _grads(device, False, x_requires_grad)
    ckpt, z_ckpt = _grads(device, True, x_requires_grad)
    assert np.array_equal(z_plain.numpy(), z_ckpt.numpy())
    for a, b in zip(plain, ckpt, strict=True):
        assert b is not None
        assert np.array_equal(ml.Tensor(a).numpy(), ml.Tensor(b).numpy())


def test_frozen_input_still_trains_parameters_inside() -> None:
    """PyTorch's reentrant checkpoint gives lin no gradient here; minilora's must."""
    lin = Linear(4, 3)
    x = ml.tensor(np.ones((2, 4), np.float32))  # requires no grad (a frozen embedding's output)
    y = ml.checkpoint(lin, x)
    assert y.requires_grad and isinstance(y._ctx, Checkpoint)
    y.sum().backward()
    assert np.allclose(lin.weight.grad, np.full((3, 4), 2.0))
    assert np.allclose(lin.bias.grad, np.full(3, 2.0))


def test_keeps_no_graph_inside_the_segment() -> None:
    lin = Linear(4, 4)
    x = ml.tensor(np.ones((2, 4), np.float32), requires_grad=True)
    y = ml.checkpoint(lambda a: lin(lin(a).tanh()), x)
    assert isinstance(y._ctx, Checkpoint)
    assert {id(t) for t in y._ctx.inputs} == {id(x), id(lin.weight), id(lin.bias)}


def test_nothing_requiring_grad_gives_a_plain_result() -> None:
    y = ml.checkpoint(lambda a: a * 2.0, ml.tensor([1.0, 2.0]))
    assert not y.requires_grad and y._ctx is None
    with ml.no_grad():
        assert ml.checkpoint(lambda a: a + 1.0, ml.tensor([1.0], requires_grad=True)).tolist() == [2.0]


def test_identity_segment_and_unused_input() -> None:
    x = ml.tensor([1.0, 2.0], requires_grad=True)
    w = ml.tensor([3.0, 4.0], requires_grad=True)
    y = ml.checkpoint(lambda a, b: a * 1.0, x, w)  # w is an argument but never read
    (y * 3.0).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0] and w.grad is None


def test_non_tensor_return_is_a_one_line_error() -> None:
    x = ml.tensor([1.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"^checkpoint: .* returned a tuple; it must return one Tensor") as e:
        ml.checkpoint(lambda a: (a, a), x)
    assert "\n" not in str(e.value)
