"""Softmax and log-softmax along one axis, max-subtracted so logits around 1e4 stay finite.

exp(x - max) is at most 1, so nothing overflows, and the sum is at least 1,
so log(sum) never sees 0. Each op saves only its output y.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minilora.autograd import Function
from minilora.gradcheck_cases import register, spec

if TYPE_CHECKING:
    from minilora.tensor import Tensor


def _check_axis(op: str, x: Any, axis: int) -> None:
    if not -x.ndim <= axis < max(x.ndim, 1) or x.ndim == 0:
        raise ValueError(f"{op}: axis {axis} is out of range for a tensor of shape {tuple(x.shape)}")


class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max));  g_x = y * (g_y - sum(g_y * y))  (sums along the axis)."""

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x: Any) -> Any:
        _check_axis("softmax", x, self.axis)
        y = x - x.max(axis=self.axis, keepdims=True)
        self.xp.exp(y, out=y)
        y /= y.sum(axis=self.axis, keepdims=True)
        self.save_for_backward(y)
        return y

    def backward(self, g_y: Any) -> tuple[Any]:
        (y,) = self.saved
        g_x = g_y * y
        g_x -= y * g_x.sum(axis=self.axis, keepdims=True)
        return (g_x,)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis`` (max-subtracted)."""
    return Softmax.apply(x, axis=axis)


class LogSoftmax(Function):
    """y = x - max - log(sum(exp(x - max)));  g_x = g_y - exp(y) * sum(g_y)  (sums along the axis)."""

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def forward(self, x: Any) -> Any:
        _check_axis("log_softmax", x, self.axis)
        xp = self.xp
        y = x - x.max(axis=self.axis, keepdims=True)
        y -= xp.log(xp.exp(y).sum(axis=self.axis, keepdims=True))
        self.save_for_backward(y)
        return y

    def backward(self, g_y: Any) -> tuple[Any]:
        (y,) = self.saved
        return (g_y - self.xp.exp(y) * g_y.sum(axis=self.axis, keepdims=True),)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) along ``axis``, computed as x - max - log(sum(exp(x - max)))."""
    return LogSoftmax.apply(x, axis=axis)


_large = spec("3x5 (~1e4)", lambda rng: 1e4 + rng.standard_normal((3, 5)))

register(Softmax, lambda x: softmax(x), (3, 5), name="Softmax")
register(Softmax, lambda x: softmax(x, axis=0), (4, 3), name="Softmax (axis 0)")
register(Softmax, lambda x: softmax(x), (2, 3, 4), name="Softmax (3-D)")
register(Softmax, lambda x: softmax(x), _large, name="Softmax (logits ~1e4)")
register(LogSoftmax, lambda x: log_softmax(x), (3, 5), name="LogSoftmax")
register(LogSoftmax, lambda x: log_softmax(x, axis=1), (2, 3, 4), name="LogSoftmax (axis 1)")
register(LogSoftmax, lambda x: log_softmax(x), _large, name="LogSoftmax (logits ~1e4)")
