"""Tensor: an array on a device, plus what autograd needs (requires_grad, .grad, the op that made it).

Every method that computes something is one Function from minilora.ops (see
autograd.py for how the graph is built and walked).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minilora import backend

Axes = int | tuple[int, ...] | None


def resolve_dim(op: str, axis: Any, dim: Any) -> Any:
    """``axis``, or PyTorch's ``dim=`` keyword for it (minilora's functions take either, not both)."""
    if dim is None:
        return axis
    if axis is not None:
        raise TypeError(f"{op}: got both axis={axis!r} and dim={dim!r}; pass one (dim is PyTorch's name for axis)")
    return dim


def _keep(keepdims: bool, keepdim: bool | None) -> bool:
    return keepdims if keepdim is None else keepdim


class _Size(int):
    """An element count that is also PyTorch's ``size()``: ``t.size`` is an int, ``t.size()`` the shape."""

    def __new__(cls, n: int, shape: tuple[int, ...]) -> _Size:
        obj = super().__new__(cls, n)
        obj.shape = shape
        return obj

    def __call__(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]


class Tensor:
    """An n-dimensional array with reverse-mode autodiff. ``.data`` is the raw NumPy/CuPy array."""

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "__weakref__")
    __array_ufunc__ = None  # numpy_array + tensor defers to Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        if isinstance(data, Tensor):
            data = data.data
        elif not backend.is_array(data):
            data = np.asarray(data)  # host
        self.data = data
        self.grad: Any = None
        self._ctx: Any = None
        if requires_grad and not backend.is_floating(data.dtype):
            raise TypeError(f"only floating-point tensors can require grad, got dtype {data.dtype}")
        self.requires_grad = requires_grad

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        """The number of elements (an int, as NumPy's ``size``); called, PyTorch's: ``size()`` the shape,
        ``size(d)`` one axis."""
        return _Size(int(self.data.size), tuple(self.data.shape))

    def numel(self) -> int:
        """The number of elements (as torch.Tensor.numel)."""
        return int(self.data.size)

    def dim(self) -> int:
        """The number of axes (as torch.Tensor.dim; the same as ``ndim``)."""
        return self.data.ndim

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def xp(self) -> Any:
        return backend.get_array_module(self.data)

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        host = backend.to_host(self.data)
        grad = ", requires_grad=True" if self.requires_grad else ""
        dev = "" if self.device == "cpu" else f", device='{self.device}'"
        return f"tensor({np.array2string(host, separator=', ', precision=4)}{dev}{grad})"  # host

    # ------------------------------------------------------------------ autograd
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Gradients of this tensor w.r.t. every leaf that requires grad, accumulated into .grad."""
        from minilora.autograd import backward

        backward(self, grad, retain_graph)

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and not backend.is_floating(self.data.dtype):
            raise TypeError(f"only floating-point tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = flag
        return self

    def zero_grad(self) -> None:
        self.grad = None

    # ------------------------------------------------------------------ devices and host
    def to(self, device: str) -> Tensor:
        """A copy on ``device`` ("cpu" or "cuda"); the same tensor when it is already there."""
        if device == self.device:
            return self
        return Tensor(backend.to_device(self.data, device), requires_grad=self.requires_grad)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def numpy(self) -> np.ndarray:
        """A host NumPy copy (an explicit device-to-host transfer)."""
        return backend.to_host(self.data).copy()

    def item(self) -> float | int | bool:
        """The single value as a Python number (an explicit host transfer)."""
        if self.data.size != 1:
            raise ValueError(f"item(): tensor has {self.data.size} elements, expected 1")
        return backend.to_host(self.data).reshape(()).item()  # host

    def tolist(self) -> Any:
        return backend.to_host(self.data).tolist()  # host

    # ------------------------------------------------------------------ operand coercion
    def _wrap(self, other: Any) -> Tensor:
        """Python scalars become 0-d arrays of this tensor's dtype and device (no silent upcast)."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (int, float, bool, np.generic)):
            kind = self.data.dtype
            if isinstance(other, float) and not backend.is_floating(kind):
                kind = np.dtype(np.float32)
            return Tensor(self.xp.asarray(other, dtype=kind))
        if backend.is_array(other):
            if backend.device_of(other) != self.device:
                raise RuntimeError(
                    f"operand array is on {backend.device_of(other)} but the tensor is on {self.device}; "
                    "move it with minilora.tensor(..., device=...) first"
                )
            return Tensor(other)
        raise TypeError(f"unsupported operand type {type(other).__name__} for a Tensor")

    # ------------------------------------------------------------------ arithmetic (ops/arithmetic.py)
    def add(self, other: Any) -> Tensor:
        return _ops.Add.apply(self, self._wrap(other))

    def sub(self, other: Any) -> Tensor:
        return _ops.Sub.apply(self, self._wrap(other))

    def mul(self, other: Any) -> Tensor:
        return _ops.Mul.apply(self, self._wrap(other))

    def div(self, other: Any) -> Tensor:
        return _ops.Div.apply(self, self._wrap(other))

    def neg(self) -> Tensor:
        return _ops.Neg.apply(self)

    def pow(self, exponent: float) -> Tensor:
        if isinstance(exponent, Tensor) or backend.is_array(exponent):
            raise TypeError("pow: only a scalar exponent is supported")
        return _ops.Pow.apply(self, exponent=exponent)

    def matmul(self, other: Any) -> Tensor:
        return _ops.MatMul.apply(self, self._wrap(other))

    __add__ = add
    __sub__ = sub
    __mul__ = mul
    __truediv__ = div
    __neg__ = neg
    __pow__ = pow
    __matmul__ = matmul

    def __radd__(self, other: Any) -> Tensor:
        return _ops.Add.apply(self._wrap(other), self)

    def __rsub__(self, other: Any) -> Tensor:
        return _ops.Sub.apply(self._wrap(other), self)

    def __rmul__(self, other: Any) -> Tensor:
        return _ops.Mul.apply(self._wrap(other), self)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _ops.Div.apply(self._wrap(other), self)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _ops.MatMul.apply(self._wrap(other), self)

    # comparisons: no gradient, boolean tensors
    def __lt__(self, other: Any) -> Tensor:
        return Tensor(self.data < self._wrap(other).data)

    def __le__(self, other: Any) -> Tensor:
        return Tensor(self.data <= self._wrap(other).data)

    def __gt__(self, other: Any) -> Tensor:
        return Tensor(self.data > self._wrap(other).data)

    def __ge__(self, other: Any) -> Tensor:
        return Tensor(self.data >= self._wrap(other).data)

    def eq(self, other: Any) -> Tensor:
        return Tensor(self.data == self._wrap(other).data)

    def ne(self, other: Any) -> Tensor:
        return Tensor(self.data != self._wrap(other).data)

    __hash__ = object.__hash__  # tensors are graph nodes: identity, not value, decides equality

    # ------------------------------------------------------------------ reductions (ops/reduction.py)
    # ``dim=`` / ``keepdim=`` are PyTorch's spellings of NumPy's ``axis=`` / ``keepdims=``
    def sum(
        self, axis: Axes = None, keepdims: bool = False, *, dim: Axes = None, keepdim: bool | None = None
    ) -> Tensor:
        return _ops.Sum.apply(self, axis=resolve_dim("sum", axis, dim), keepdims=_keep(keepdims, keepdim))

    def mean(
        self, axis: Axes = None, keepdims: bool = False, *, dim: Axes = None, keepdim: bool | None = None
    ) -> Tensor:
        return _ops.Mean.apply(self, axis=resolve_dim("mean", axis, dim), keepdims=_keep(keepdims, keepdim))

    def max(
        self, axis: Axes = None, keepdims: bool = False, *, dim: Axes = None, keepdim: bool | None = None
    ) -> Tensor:
        """The maxima (a Tensor; PyTorch's max(dim=) also returns indices: use argmax for those)."""
        return _ops.Max.apply(self, axis=resolve_dim("max", axis, dim), keepdims=_keep(keepdims, keepdim))

    def argmax(self, axis: int | None = None, *, dim: int | None = None) -> Tensor:
        """Indices of the maxima (no gradient)."""
        return Tensor(self.data.argmax(axis=resolve_dim("argmax", axis, dim)))

    # ------------------------------------------------------------------ shapes (ops/shape.py)
    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops.Reshape.apply(self, shape=shape)

    def view(self, *shape: Any) -> Tensor:
        """``reshape`` (as torch.Tensor.view; the result may be a copy, gradients flow either way)."""
        return self.reshape(*shape)

    def transpose(self, *axes: Any) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _ops.Transpose.apply(self, axes=axes or None)

    @property
    def T(self) -> Tensor:  # noqa: N802
        return self.transpose()

    def __getitem__(self, key: Any) -> Tensor:
        return _ops.GetItem.apply(self, key=key)

    def astype(self, dtype: Any) -> Tensor:
        """A cast; the gradient is cast back to this tensor's dtype."""
        return _ops.Cast.apply(self, dtype=dtype)

    # ------------------------------------------------------------------ elementwise math (ops/math.py)
    def exp(self) -> Tensor:
        return _ops.Exp.apply(self)

    def log(self) -> Tensor:
        return _ops.Log.apply(self)

    def sqrt(self) -> Tensor:
        return _ops.Sqrt.apply(self)

    def tanh(self) -> Tensor:
        return _ops.Tanh.apply(self)

    def sigmoid(self) -> Tensor:
        return _ops.Sigmoid.apply(self)

    def relu(self) -> Tensor:
        return _ops.ReLU.apply(self)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, device: str = "cpu") -> Tensor:
    """Make a Tensor on ``device``. Python floats become float32; arrays keep their dtype."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is None and not backend.is_array(data) and not isinstance(data, np.generic):
        host = np.asarray(data)  # host: Python data, not a device array
        dtype = np.float32 if host.dtype == np.float64 else host.dtype
        data = host
    return Tensor(backend.to_device(data, device, dtype), requires_grad=requires_grad)


from minilora import ops as _ops  # noqa: E402  (ops need the Tensor class defined above)
