"""Elementwise math: exp, log, sqrt, tanh, sigmoid, relu, where, masked_fill.

Each unary op saves whichever of x or y makes its backward cheapest (often y:
d exp(x)/dx = exp(x)). NumPy's domain warnings (log of a negative number, sqrt
of a negative) are deliberately not silenced: a NaN should announce itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minilora import backend
from minilora.autograd import Function, unbroadcast
from minilora.gradcheck_cases import away_from_zero, register, spec, uniform
from minilora.tensor import Tensor


class Exp(Function):
    """y = exp(x);  g_x = g_y * y."""

    def forward(self, x: Any) -> Any:
        y = self.xp.exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, g_y: Any) -> tuple[Any]:
        (y,) = self.saved
        return (g_y * y,)


register(Exp, lambda x: x.exp(), (3, 4))


class Log(Function):
    """y = log(x);  g_x = g_y / x."""

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return self.xp.log(x)

    def backward(self, g_y: Any) -> tuple[Any]:
        (x,) = self.saved
        return (g_y / x,)


register(Log, lambda x: x.log(), uniform(0.5, 3.0, 3, 4))


class Sqrt(Function):
    """y = sqrt(x);  g_x = g_y / (2 y)."""

    def forward(self, x: Any) -> Any:
        y = self.xp.sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, g_y: Any) -> tuple[Any]:
        (y,) = self.saved
        return (g_y / (y + y),)


register(Sqrt, lambda x: x.sqrt(), uniform(0.5, 3.0, 3, 4))


class Tanh(Function):
    """y = tanh(x);  g_x = g_y * (1 - y^2)."""

    def forward(self, x: Any) -> Any:
        y = self.xp.tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, g_y: Any) -> tuple[Any]:
        (y,) = self.saved
        return (g_y * (1 - y * y),)


register(Tanh, lambda x: x.tanh(), (3, 4))


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x));  g_x = g_y * y * (1 - y).

    Stable for large |x|: with e = exp(-|x|) <= 1, y = 1 / (1 + e) for x >= 0
    and e / (1 + e) for x < 0, so exp never overflows.
    """

    def forward(self, x: Any) -> Any:
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        r = 1 / (1 + e)
        y = xp.where(x >= 0, r, e * r)
        self.save_for_backward(y)
        return y

    def backward(self, g_y: Any) -> tuple[Any]:
        (y,) = self.saved
        return (g_y * y * (1 - y),)


register(Sigmoid, lambda x: x.sigmoid(), (3, 4))
register(Sigmoid, lambda x: (x * 8.0).sigmoid(), (2, 5), name="Sigmoid (large |x|)")


class ReLU(Function):
    """y = max(x, 0);  g_x = g_y * [x > 0] (the subgradient 0 at x = 0)."""

    def forward(self, x: Any) -> Any:
        y = self.xp.maximum(x, 0)
        self.save_for_backward(y)
        return y

    def backward(self, g_y: Any) -> tuple[Any]:
        (y,) = self.saved
        return (g_y * (y > 0),)


register(ReLU, lambda x: x.relu(), away_from_zero(3, 4))


# ----------------------------------------------------------------------------- selection
def _condition(op: str, cond: Any, like: Tensor) -> Any:
    """cond as a boolean array on like's device."""
    c = cond.data if isinstance(cond, Tensor) else cond
    if not backend.is_array(c):
        raise TypeError(f"{op}: the condition must be a boolean Tensor or array, got {type(cond).__name__}")
    if c.dtype.kind != "b":
        raise TypeError(f"{op}: the condition must have dtype bool, got {c.dtype} with shape {tuple(c.shape)}")
    if backend.device_of(c) != like.device:
        raise RuntimeError(f"{op}: the condition is on {backend.device_of(c)} but the tensor is on {like.device}")
    return c


class Where(Function):
    """y = a where cond else b (broadcasting);  g_a = g_y * cond,  g_b = g_y * (not cond), no gradient to cond."""

    float_only = False

    def __init__(self, cond: Any) -> None:
        self.cond = cond

    def forward(self, a: Any, b: Any) -> Any:
        self.shapes = a.shape, b.shape
        try:
            return self.xp.where(self.cond, a, b)
        except ValueError as exc:
            raise ValueError(
                f"where: shapes cond {tuple(self.cond.shape)}, a {tuple(a.shape)} and b {tuple(b.shape)} "
                "cannot be broadcast together"
            ) from exc

    def backward(self, g_y: Any) -> tuple[Any, Any]:
        xp, cond = self.xp, self.cond
        zero = xp.zeros((), dtype=g_y.dtype)
        ga, gb = self.needs_input_grad
        g_a = unbroadcast(xp.where(cond, g_y, zero), self.shapes[0]) if ga else None
        g_b = unbroadcast(xp.where(cond, zero, g_y), self.shapes[1]) if gb else None
        return g_a, g_b

    def release(self) -> None:
        super().release()
        self.cond = None


def _operand(v: Any, like: Tensor) -> Tensor:
    return v if isinstance(v, Tensor) else like._wrap(v)


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """Elementwise a where cond is True, else b (cond: bool Tensor or array; a, b: Tensors or scalars)."""
    like = a if isinstance(a, Tensor) else b
    if not isinstance(like, Tensor):
        raise TypeError("where: at least one of a and b must be a Tensor")
    c = _condition("where", cond, like)
    return Where.apply(_operand(a, like), _operand(b, like), cond=c)


def masked_fill(x: Tensor, mask: Any, value: float) -> Tensor:
    """x with ``value`` written where mask is True (mask broadcasts; e.g. -inf above the causal diagonal).

    It is where(mask, value, x) with a constant ``value`` (x's dtype, no gradient): Where's backward gives
    g_x = g_y where not mask else 0, summed over the axes the mask broadcast x along.
    """
    if not backend.is_floating(x.dtype):
        raise TypeError(f"masked_fill: expected a floating-point x, got dtype {x.dtype} with shape {tuple(x.shape)}")
    c = _condition("masked_fill", mask, x)
    try:
        np.broadcast_shapes(tuple(c.shape), tuple(x.shape))  # host: shapes only
    except ValueError:
        raise ValueError(
            f"masked_fill: mask shape {tuple(c.shape)} does not broadcast with x shape {tuple(x.shape)}"
        ) from None
    return Where.apply(_operand(value, x), x, cond=c)


def _mask(*shape: int) -> Any:
    return spec("mask " + "x".join(map(str, shape)), lambda rng: rng.random(shape) < 0.5)


register(Where, lambda a, b: where(a.data > 0, a, b), (3, 4), (3, 4), name="Where")
register(Where, lambda a, b: where(b.data[0] > 0, a, b), (2, 1, 4), (3, 4), name="Where (broadcast)")
register(Where, lambda a: where(a.data > 0, a, 0.5), (3, 4), name="Where (scalar b)")
register(Where, lambda x: masked_fill(x, x.data > 0.3, -3.0), (3, 4), name="masked_fill")
register(Where, lambda x: masked_fill(x, x.data[0, :, :1] > 0, 0.0), (2, 3, 4), name="masked_fill (broadcast mask)")
