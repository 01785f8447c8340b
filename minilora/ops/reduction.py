"""Reductions: sum, mean, max over an axis (or several, or all), with or without keepdims.

Each backward spreads g_y back over the reduced axes: it first reshapes g_y to
the keepdims shape (``kshape``, a 1 at every reduced axis) so that it
broadcasts against x, whatever ``keepdims`` was in the forward.
"""

from __future__ import annotations

from typing import Any

from minilora.autograd import Function
from minilora.gradcheck_cases import away_from_zero, register, spec

Axis = int | tuple[int, ...] | None


def _keepdims_shape(op: str, shape: tuple[int, ...], axis: Axis) -> tuple[tuple[int, ...] | None, tuple[int, ...]]:
    """(normalised axes or None for all, the output shape with keepdims=True)."""
    ndim = len(shape)
    if axis is None:
        return None, (1,) * ndim
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    norm = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{op}: axis {axis} is out of range for a tensor of shape {shape}")
        norm.append(a % ndim)
    if len(set(norm)) != len(norm):
        raise ValueError(f"{op}: repeated axis in {axis} (shape {shape})")
    return tuple(norm), tuple(1 if i in norm else n for i, n in enumerate(shape))


class Sum(Function):
    """y = sum_{axis} x;  g_x = broadcast(g_y) to x's shape (each x element feeds y once)."""

    float_only = False  # counting a boolean/int mask is fine; ints never get gradients anyway

    def __init__(self, axis: Axis = None, keepdims: bool = False) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x: Any) -> Any:
        self.axes, self.kshape = _keepdims_shape("sum", x.shape, self.axis)
        self.x_shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, g_y: Any) -> tuple[Any]:
        # copy: the gradient must own its memory (a broadcast view would alias every element)
        return (self.xp.broadcast_to(g_y.reshape(self.kshape), self.x_shape).copy(),)


register(Sum, lambda x: x.sum(), (3, 4), name="Sum (all)")
register(Sum, lambda x: x.sum(axis=1), (2, 3, 4), name="Sum (axis=1)")
register(Sum, lambda x: x.sum(axis=(0, -1), keepdims=True), (2, 3, 4), name="Sum (axes, keepdims)")


class Mean(Function):
    """y = sum_{axis} x / n, n = number of reduced elements;  g_x = broadcast(g_y) / n."""

    def __init__(self, axis: Axis = None, keepdims: bool = False) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x: Any) -> Any:
        self.axes, self.kshape = _keepdims_shape("mean", x.shape, self.axis)
        self.x_shape = x.shape
        self.n = _prod(x.shape) if self.axes is None else _prod(tuple(x.shape[a] for a in self.axes))
        return x.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, g_y: Any) -> tuple[Any]:
        g = g_y.reshape(self.kshape)
        return (self.xp.broadcast_to(g, self.x_shape) * self.xp.asarray(1.0 / max(self.n, 1), dtype=g.dtype),)


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


register(Mean, lambda x: x.mean(), (3, 4), name="Mean (all)")
register(Mean, lambda x: x.mean(axis=-1, keepdims=True), (2, 3, 4), name="Mean (axis=-1, keepdims)")
register(Mean, lambda x: x.mean(axis=(0, 2)), (2, 3, 4), name="Mean (axes)")


class Max(Function):
    """y = max_{axis} x;  g_x = g_y * [x == y] / (number of maxima in the slice).

    Ties: the gradient is split equally among the tied maxima (so it still sums
    to g_y over each slice), a subgradient that keeps finite differences honest
    away from ties. Saves x and the keepdims maxima.
    """

    float_only = False

    def __init__(self, axis: Axis = None, keepdims: bool = False) -> None:
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x: Any) -> Any:
        if x.size == 0:
            raise ValueError(f"max: cannot reduce an empty tensor of shape {tuple(x.shape)}")
        self.axes, self.kshape = _keepdims_shape("max", x.shape, self.axis)
        y_k = x.max(axis=self.axes, keepdims=True)  # (kshape)
        self.save_for_backward(x, y_k)
        return y_k if self.keepdims else y_k.reshape(_drop(y_k.shape, self.axes))

    def backward(self, g_y: Any) -> tuple[Any]:
        x, y_k = self.saved
        is_max = x == y_k
        count = is_max.sum(axis=self.axes, keepdims=True, dtype=x.dtype)  # (kshape) >= 1
        return (is_max * (g_y.reshape(self.kshape) / count),)


def _drop(shape: tuple[int, ...], axes: tuple[int, ...] | None) -> tuple[int, ...]:
    if axes is None:
        return ()
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def _distinct(*shape: int) -> Any:
    """A random permutation of well-separated values: no ties, so max is differentiable."""
    n = _prod(shape)
    return spec(
        "x".join(map(str, shape)), lambda rng: rng.permutation(n).reshape(shape) * 0.5 + rng.uniform(0, 0.1, shape)
    )


register(Max, lambda x: x.max(), _distinct(3, 4), name="Max (all)")
register(Max, lambda x: x.max(axis=1), _distinct(2, 3, 4), name="Max (axis=1)")
register(Max, lambda x: x.max(axis=-1, keepdims=True), away_from_zero(4, 5), name="Max (axis=-1, keepdims)")
