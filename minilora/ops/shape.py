"""Shape ops: reshape, transpose, indexing, casts, concat, stack, split.

None of them does arithmetic, so they also work on integer tensors
(``float_only = False``): generation code indexes and reshapes token ids.
Their backward passes only move gradient values back to where they came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from minilora import backend
from minilora.autograd import Function
from minilora.gradcheck_cases import integers, register, spec
from minilora.tensor import Tensor


class Reshape(Function):
    """y = x viewed with a new shape (one entry may be -1);  g_x = g_y reshaped to x's shape."""

    float_only = False

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, x: Any) -> Any:
        self.x_shape = x.shape
        try:
            return x.reshape(self.shape)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} ({x.size} elements) "
                f"into shape {tuple(self.shape)}"
            ) from exc

    def backward(self, g_y: Any) -> tuple[Any]:
        return (g_y.reshape(self.x_shape),)


register(Reshape, lambda x: x.reshape(4, 3), (3, 4))
register(Reshape, lambda x: x.reshape(-1, 2) * x.reshape(-1, 2), (2, 3, 2), name="Reshape (-1, fan-out)")


class Transpose(Function):
    """y = x with its axes permuted (None reverses them);  g_x = g_y permuted back by the inverse permutation."""

    float_only = False

    def __init__(self, axes: Sequence[int] | None = None) -> None:
        self.axes = None if axes is None else tuple(axes)

    def forward(self, x: Any) -> Any:
        if self.axes is None:
            return x.transpose()
        n = x.ndim
        if len(self.axes) != n or sorted(a % n for a in self.axes if -n <= a < n) != list(range(n)):
            raise ValueError(f"transpose: axes {self.axes} are not a permutation of the axes of shape {tuple(x.shape)}")
        return x.transpose(self.axes)

    def backward(self, g_y: Any) -> tuple[Any]:
        if self.axes is None:
            return (g_y.transpose(),)
        n = g_y.ndim
        inverse = [0] * n
        for i, a in enumerate(self.axes):
            inverse[a % n] = i
        return (g_y.transpose(tuple(inverse)),)


register(Transpose, lambda x: x.T, (3, 4), name="Transpose (.T)")
register(Transpose, lambda x: x.transpose(2, 0, 1), (2, 3, 4), name="Transpose (2, 0, 1)")
register(Transpose, lambda x: x.transpose(0, -1, 1), (2, 3, 4), name="Transpose (negative axis)")


# ----------------------------------------------------------------------------- indexing
def _unwrap_key(key: Any, xp: Any) -> tuple[Any, bool]:
    """The key with Tensors unwrapped and host index arrays moved to xp; and whether it holds integer arrays."""
    if isinstance(key, (int, slice)) or key is None or key is Ellipsis:
        return key, False  # the common case, kept fast
    parts = key if isinstance(key, tuple) else (key,)
    device = "cpu" if xp is np else "cuda"
    out, has_int = [], False
    for k in parts:
        if isinstance(k, Tensor):
            if k.device != device:  # a Tensor has a device: mixing is refused, as in every op
                raise RuntimeError(f"getitem: the index tensor is on {k.device} but the tensor is on {device}")
            k = k.data
        elif isinstance(k, list):
            k = backend.to_device(k, device)  # host data, like a Python int: uploaded
        elif isinstance(k, np.ndarray) and xp is not np:
            k = xp.asarray(k)  # host -> device (an upload, not a hidden sync)
        elif backend.is_array(k) and backend.device_of(k) != device:
            raise RuntimeError(f"getitem: the index array is on {backend.device_of(k)} but the tensor is on {device}")
        if backend.is_array(k) and k.dtype.kind in "iu":
            has_int = True
        out.append(k)
    return (tuple(out) if isinstance(key, tuple) else out[0]), has_int


class GetItem(Function):
    """y = x[key] (slices, ints, None, ..., integer arrays, boolean masks);  g_x = zeros_like(x), g_x[key] += g_y.

    Basic indexing (and boolean masks) touch each x element at most once, so
    the backward assigns. Integer-array indexing may pick an element several
    times; its backward scatter-adds (backend.scatter_add) so repeats accumulate.
    Index Tensors and device arrays are unwrapped.
    """

    float_only = False
    fresh_grads = True  # backward scatters into a new zeros array

    def __init__(self, key: Any) -> None:
        self.key = key

    def forward(self, x: Any) -> Any:
        self.key, self.scatter = _unwrap_key(self.key, self.xp)
        self.x_shape, self.x_dtype = x.shape, x.dtype
        try:
            return x[self.key]
        except IndexError as exc:
            raise IndexError(f"getitem: {exc} (tensor shape {tuple(x.shape)})") from exc

    def backward(self, g_y: Any) -> tuple[Any]:
        g_x = self.xp.zeros(self.x_shape, dtype=g_y.dtype)
        if self.scatter:
            backend.scatter_add(g_x, self.key, g_y)
        else:
            g_x[self.key] = g_y
        return (g_x,)


def _index_spec(label: str, *idx: int) -> Any:
    return spec(label, lambda rng: np.array(idx))  # host: a gradcheck input, moved to the device by the checker


register(GetItem, lambda x: x[1:, ::2], (3, 4), name="GetItem (slices)")
register(GetItem, lambda x: x[..., 1, None], (2, 3, 4), name="GetItem (int, None, ...)")
register(GetItem, lambda x, i: x[i], (4, 3), _index_spec("idx [0 2 0 3]", 0, 2, 0, 3), name="GetItem (repeats)")
register(GetItem, lambda x, i: x[:, i], (2, 4), integers(4, 6), name="GetItem (int array on axis 1)")
register(GetItem, lambda x: x[x.data > 0], (3, 4), name="GetItem (boolean mask)")


class Cast(Function):
    """y = x.astype(dtype);  g_x = g_y.astype(x.dtype).

    A cast to a non-floating dtype has no gradient: its result is a new leaf
    (rounding to integers is piecewise constant).
    """

    float_only = False

    def __init__(self, dtype: Any) -> None:
        self.dtype = backend.resolve_dtype(dtype)

    @classmethod
    def apply(cls, x: Tensor, dtype: Any = None, **params: Any) -> Tensor:  # type: ignore[override]
        dt = backend.resolve_dtype(dtype)
        if not backend.is_floating(dt):
            return Tensor(x.data.astype(dt))
        return super().apply(x, dtype=dt, **params)

    def forward(self, x: Any) -> Any:
        self.x_dtype = x.dtype
        return x.astype(self.dtype, copy=False)

    def backward(self, g_y: Any) -> tuple[Any]:
        return (g_y.astype(self.x_dtype),)


# float64 -> float64 only: through float32 the finite differences would measure float32 rounding, not the op
register(Cast, lambda x: x.astype("float64") * x, (3, 4), name="Cast")


# ----------------------------------------------------------------------------- joining and splitting
def _normalise_axis(op: str, axis: int, ndim: int, shapes: Any) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for shapes {shapes}")
    return axis % ndim


class Concat(Function):
    """y = concatenate([x_0, ..., x_n], axis);  g_x_i = the slice of g_y that x_i filled."""

    float_only = False

    def __init__(self, axis: int = 0) -> None:
        self.axis = axis

    def forward(self, *xs: Any) -> Any:
        shapes = [tuple(x.shape) for x in xs]
        ndim = xs[0].ndim
        if ndim == 0:
            raise ValueError(f"concat: zero-dimensional tensors cannot be concatenated (shapes {shapes})")
        ax = self.axis = _normalise_axis("concat", self.axis, ndim, shapes)
        for s in shapes:
            if len(s) != ndim or s[:ax] + s[ax + 1 :] != shapes[0][:ax] + shapes[0][ax + 1 :]:
                raise ValueError(f"concat: shapes {shapes} differ outside axis {ax}")
        self.sizes = [s[ax] for s in shapes]
        return self.xp.concatenate(xs, axis=ax)

    def backward(self, g_y: Any) -> tuple[Any, ...]:
        lead = (slice(None),) * self.axis
        grads, start = [], 0
        for need, n in zip(self.needs_input_grad, self.sizes):
            grads.append(g_y[lead + (slice(start, start + n),)] if need else None)
            start += n
        return tuple(grads)


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (all shapes equal except along ``axis``)."""
    if not tensors:
        raise ValueError("concat: expected at least one tensor")
    return Concat.apply(*tensors, axis=axis)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis: each gets a size-1 axis there, then they are concatenated.

    That is how numpy.stack is written, and the gradient needs nothing more: Concat's backward hands each
    input its (..., 1, ...) slice of g_y and Reshape's drops the axis again.
    """
    if not tensors:
        raise ValueError("stack: expected at least one tensor")
    shapes = [tuple(t.shape) for t in tensors]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"stack: all tensors must have the same shape, got {shapes}")
    ax = _normalise_axis("stack", axis, len(shapes[0]) + 1, shapes)
    new_shape = shapes[0][:ax] + (1,) + shapes[0][ax:]
    return Concat.apply(*(t.reshape(new_shape) for t in tensors), axis=ax)


def split(x: Tensor, sections_or_sizes: int | Sequence[int], axis: int = -1) -> list[Tensor]:
    """Split ``x`` along ``axis``: an int n gives n equal parts (as np.split); a list gives parts of those sizes.

    Each part is a GetItem slice, so gradients flow back into the right place of x.
    """
    n = x.shape[axis] if -x.ndim <= axis < x.ndim else None
    if n is None:
        raise ValueError(f"split: axis {axis} is out of range for shape {x.shape}")
    if isinstance(sections_or_sizes, int):
        k = sections_or_sizes
        if k <= 0 or n % k:
            raise ValueError(f"split: axis {axis} of shape {x.shape} (size {n}) cannot be split into {k} equal parts")
        sizes = [n // k] * k
    else:
        sizes = [int(s) for s in sections_or_sizes]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise ValueError(f"split: sizes {sizes} do not add up to {n}, the size of axis {axis} of shape {x.shape}")
    lead = (slice(None),) * (axis % x.ndim)
    parts, start = [], 0
    for s in sizes:
        parts.append(x[lead + (slice(start, start + s),)])
        start += s
    return parts


register(Concat, lambda a, b: concat([a, b], axis=1), (2, 3), (2, 2), name="Concat (axis=1)")
register(Concat, lambda a, b, c: concat([a, b, c], axis=-1), (2, 1, 2), (2, 1, 1), (2, 1, 3), name="Concat (3 inputs)")
register(Concat, lambda a, b: stack([a, b], axis=0), (3, 4), (3, 4), name="stack (axis=0)")
register(Concat, lambda a, b, c: stack([a, b, c], axis=-1), (2, 3), (2, 3), (2, 3), name="stack (axis=-1)")
register(GetItem, lambda x: concat(split(x, [1, 3, 2], axis=1)[::-1], axis=1), (2, 6), name="split (sizes) + concat")
