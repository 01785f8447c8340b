"""A strict CPU stand-in for CuPy: code that would break on a GPU breaks here too.

CI has no GPU. The tests serve this module as the "cuda" array module
(``backend.use_cuda_module(strict)``), and every op and model test runs on it.
Its ``ndarray`` wraps a NumPy array but behaves like CuPy's where CuPy differs
from NumPy, and is stricter where a GPU would be slow:

- ``np.asarray(x)`` / ``__array__`` raise: no implicit device-to-host copy;
- float(), int(), bool(), .item() and .tolist() raise: each is a hidden sync;
  use ``.get()`` or ``minilora.backend.to_host`` explicitly;
- a host NumPy array as an operand, index or assigned value is refused;
- NumPy functions called on it (``np.exp(x)``, ``np.add.at``) raise: take the
  module from ``backend.get_array_module``; ufunc ``.at`` does not exist;
- reductions return 0-d arrays, never NumPy scalars;
- NumPy-only names (errstate, einsum_path, ...) are missing.
"""

from __future__ import annotations

import operator
import sys
import types
from typing import Any

import numpy as np

__all__ = ["ndarray", "asarray", "asnumpy", "get_array_module"]

_NUMPY_ONLY = {
    "errstate", "seterr", "geterr", "nditer", "vectorize", "frompyfunc", "einsum_path", "testing",
    "lib", "ma", "char", "rec", "ctypeslib", "frombuffer", "fromiter", "memmap", "load", "save", "savez",
}


class StrictDeviceError(TypeError):
    """Something that CuPy (or a GPU-friendly program) would not do."""


def _unwrap(v: Any, what: str = "operand") -> Any:
    if isinstance(v, ndarray):
        return v._a
    if isinstance(v, np.ndarray):
        raise StrictDeviceError(
            f"strict CuPy stand-in: a host NumPy array of shape {v.shape} was used as a device {what}; "
            "move it explicitly (backend.to_device) or build it with the array module"
        )
    if isinstance(v, (list, tuple)):
        return type(v)(_unwrap(e, what) for e in v)
    return v


def _wrap(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return ndarray(v)
    if isinstance(v, np.generic):
        return ndarray(np.asarray(v))  # host: the stand-in wraps NumPy
    if isinstance(v, tuple):
        return tuple(_wrap(e) for e in v)
    if isinstance(v, list):
        return [_wrap(e) for e in v]
    return v


def _host_sync(name: str) -> Any:
    def refuse(self: ndarray, *args: Any, **kwargs: Any) -> Any:
        raise StrictDeviceError(
            f"strict CuPy stand-in: {name} on a device array is an implicit device-to-host transfer; "
            "use .get() or minilora.backend.to_host explicitly"
        )

    return refuse


class ndarray:  # noqa: N801  (mirrors cupy.ndarray)
    """A device array: a NumPy array that refuses host interop."""

    __slots__ = ("_a",)

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    # attributes that need no transfer
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))

    def __len__(self) -> int:
        return len(self._a)

    def __repr__(self) -> str:
        return f"strict.ndarray({self._a!r})"

    def get(self) -> np.ndarray:
        """The explicit device-to-host copy (as cupy.ndarray.get)."""
        return self._a.copy()

    __array__ = _host_sync("np.asarray / __array__")
    __float__ = _host_sync("float()")
    __int__ = _host_sync("int()")
    __index__ = _host_sync("use as a Python index")
    __bool__ = _host_sync("bool()")
    __complex__ = _host_sync("complex()")
    item = _host_sync(".item()")
    tolist = _host_sync(".tolist()")
    __iter__ = _host_sync("iteration")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        raise StrictDeviceError(
            f"strict CuPy stand-in: NumPy ufunc np.{ufunc.__name__}{'' if method == '__call__' else '.' + method} "
            "called on a device array; use the module from backend.get_array_module "
            "(and backend.scatter_add for np.add.at)"
        )

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise StrictDeviceError(
            f"strict CuPy stand-in: NumPy function np.{func.__name__} called on a device array; "
            "use the module from backend.get_array_module"
        )

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._a[_unwrap(key, "index")])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_unwrap(key, "index")] = _unwrap(value, "assigned value")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # __array_interface__, __array_struct__: NumPy would read the memory directly
            raise AttributeError(f"strict CuPy stand-in: device arrays have no {name}")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args: Any, **kwargs: Any) -> Any:
            return _wrap(attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

        return method

    def __deepcopy__(self, memo: Any) -> ndarray:
        return ndarray(self._a.copy())

    def __copy__(self) -> ndarray:
        return ndarray(self._a.copy())

    def __reduce__(self) -> Any:
        raise StrictDeviceError("strict CuPy stand-in: device arrays are not pickled")


def _binary(op: Any, reflected: bool = False) -> Any:
    if reflected:
        return lambda self, other: _wrap(op(_unwrap(other), self._a))
    return lambda self, other: _wrap(op(self._a, _unwrap(other)))


def _inplace(op: Any) -> Any:
    def method(self: ndarray, other: Any) -> ndarray:
        self._a = op(self._a, _unwrap(other))
        return self

    return method


for _name, _op in {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow, "matmul": operator.matmul,
    "and": operator.and_, "or": operator.or_, "xor": operator.xor,
    "lshift": operator.lshift, "rshift": operator.rshift,
}.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
    setattr(ndarray, f"__r{_name}__", _binary(_op, reflected=True))
    _iop = getattr(operator, f"i{_name}")
    setattr(ndarray, f"__i{_name}__", _inplace(_iop))
for _name, _op in {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
                   "eq": operator.eq, "ne": operator.ne}.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
ndarray.__hash__ = None  # type: ignore[assignment]
for _name, _op in {"neg": operator.neg, "pos": operator.pos, "abs": operator.abs, "invert": operator.invert}.items():
    setattr(ndarray, f"__{_name}__", (lambda op: lambda self: _wrap(op(self._a)))(_op))


# ----------------------------------------------------------------------------- module-level API
def asarray(a: Any, dtype: Any = None, order: Any = None) -> ndarray:
    """Host data onto the device: the explicit transfer (as cupy.asarray)."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else ndarray(a._a.astype(dtype))
    return ndarray(np.array(a, dtype=dtype, order=order or "K"))  # host: explicit upload


array = asarray


def asnumpy(a: Any) -> np.ndarray:
    return a.get() if isinstance(a, ndarray) else np.asarray(a)  # host


def get_array_module(*args: Any) -> types.ModuleType:
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


class _Ufunc:
    """A device ufunc: like NumPy's, but with no ``.at`` (use backend.scatter_add)."""

    def __init__(self, uf: Any) -> None:
        self._uf = uf
        self.__name__ = uf.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _wrap(self._uf(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

    def reduce(self, *args: Any, **kwargs: Any) -> Any:
        return _wrap(self._uf.reduce(*_unwrap(args), **kwargs))

    def accumulate(self, *args: Any, **kwargs: Any) -> Any:
        return _wrap(self._uf.accumulate(*_unwrap(args), **kwargs))

    def outer(self, *args: Any, **kwargs: Any) -> Any:
        return _wrap(self._uf.outer(*_unwrap(args), **kwargs))


def _device_function(f: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        return _wrap(f(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

    call.__name__ = getattr(f, "__name__", "function")
    return call


class _Generator:
    """cupy.random.Generator's subset: random, standard_normal, integers, uniform."""

    def __init__(self, seed: Any) -> None:
        self._g = np.random.default_rng(seed)  # host: the stand-in's "device" is the host

    def random(self, size: Any = None, dtype: Any = np.float64) -> ndarray:
        return _wrap(self._g.random(size, dtype=dtype))

    def standard_normal(self, size: Any = None, dtype: Any = np.float64) -> ndarray:
        return _wrap(self._g.standard_normal(size, dtype=dtype))

    def integers(self, low: int, high: int | None = None, size: Any = None, dtype: Any = np.int64) -> ndarray:
        return _wrap(self._g.integers(low, high, size, dtype=dtype))

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None) -> ndarray:
        return _wrap(self._g.uniform(low, high, size))


def _scatter_add(a: ndarray, indices: Any, values: Any) -> None:
    np.add.at(a._a, _unwrap(indices, "index"), _unwrap(values))  # host: the stand-in's own scatter-add


random = types.SimpleNamespace(default_rng=_Generator)
cupyx = types.SimpleNamespace(scatter_add=_scatter_add)
linalg = types.SimpleNamespace(norm=_device_function(np.linalg.norm), svd=_device_function(np.linalg.svd),
                               qr=_device_function(np.linalg.qr))


def __getattr__(name: str) -> Any:
    if name in _NUMPY_ONLY or name.startswith("_"):
        raise AttributeError(f"strict CuPy stand-in: '{name}' is NumPy-only and has no CuPy equivalent")
    attr = getattr(np, name)
    if isinstance(attr, np.ufunc):
        return _Ufunc(attr)
    if isinstance(attr, (type, np.dtype)) or not callable(attr):
        return attr  # dtypes (float32, ...), constants (pi, newaxis, inf)
    return _device_function(attr)
