"""One place that decides where arrays live: NumPy on the CPU, CuPy on the GPU.

Every op asks this module for its array module (``xp``) instead of importing
NumPy, so the same code runs on both. CuPy is imported lazily and is optional.

The "cuda" module can be replaced (``use_cuda_module``) by the strict stand-in
in ``minilora.testing.strict``: CI has no GPU, yet every op runs on an array
type that refuses what CuPy refuses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

DEVICES = ("cpu", "cuda")

_cuda_module: ModuleType | None = None  # cupy, or a stand-in; resolved lazily
_cuda_checked = False
_seed = 0
_generators: dict[str, Any] = {}


# ----------------------------------------------------------------------------- modules
def _cuda() -> ModuleType | None:
    """The CUDA array module, or None when CuPy or a GPU is missing."""
    global _cuda_module, _cuda_checked
    if not _cuda_checked:
        _cuda_checked = True
        try:
            import cupy  # noqa: PLC0415  (optional dependency)

            if cupy.cuda.runtime.getDeviceCount() > 0:
                _cuda_module = cupy
        except Exception:  # ImportError, or a CUDA driver error without a GPU
            _cuda_module = None
    return _cuda_module


def cuda_available() -> bool:
    """True when tensors can be placed on device "cuda"."""
    return _cuda() is not None


def cuda_unavailable_reason() -> str:
    try:
        import cupy  # noqa: F401, PLC0415
    except ImportError:
        return "CuPy is not installed (pip install 'minilora[gpu]')"
    return "CuPy is installed but no CUDA device was found"


@contextlib.contextmanager
def use_cuda_module(module: ModuleType) -> Iterator[None]:
    """Temporarily serve ``module`` as the "cuda" array module (tests use the strict stand-in)."""
    global _cuda_module, _cuda_checked
    saved = (_cuda_module, _cuda_checked, _generators.pop("cuda", None))
    _cuda_module, _cuda_checked = module, True
    try:
        yield
    finally:
        _cuda_module, _cuda_checked = saved[0], saved[1]
        _generators.pop("cuda", None)
        if saved[2] is not None:
            _generators["cuda"] = saved[2]


def module_for(device: str) -> ModuleType:
    """The array module of a device name."""
    if device == "cpu":
        return np
    if device == "cuda":
        xp = _cuda()
        if xp is None:
            raise RuntimeError(f"device 'cuda' requested but {cuda_unavailable_reason()}")
        return xp
    raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")


def device_of(a: Any) -> str:
    """"cpu" for NumPy arrays and scalars, "cuda" for arrays of the CUDA module."""
    if isinstance(a, (np.ndarray, np.generic)):
        return "cpu"
    xp = _cuda_module
    if xp is not None and isinstance(a, xp.ndarray):
        return "cuda"
    raise TypeError(f"expected a NumPy or CuPy array, got {type(a).__name__}")


def get_array_module(*arrays: Any) -> ModuleType:
    """numpy or cupy, from the arrays or Tensors given (Python scalars and None are ignored).

    A Tensor is unwrapped to its ``.data`` (duck-typed: this module sits below the Tensor).
    """
    xp = _cuda_module
    for a in arrays:
        if a is None or isinstance(a, (int, float, bool, np.ndarray, np.generic)):
            continue
        if xp is not None and isinstance(a, xp.ndarray):
            return xp
        data = getattr(a, "data", None)  # a Tensor; a CuPy array's own .data (a pointer) was caught above
        if xp is not None and isinstance(data, xp.ndarray):
            return xp
    return np


def is_array(a: Any) -> bool:
    if isinstance(a, np.ndarray):
        return True
    xp = _cuda_module
    return xp is not None and isinstance(a, xp.ndarray)


# ----------------------------------------------------------------------------- dtypes
_DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
                  "fp64": "float64", "double": "float64"}


def bfloat16() -> Any:
    """The bfloat16 scalar type (ml_dtypes': NumPy has none; CuPy reads the same dtype)."""
    try:
        import ml_dtypes  # noqa: PLC0415  (optional extra)
    except ImportError:
        raise ImportError("bfloat16 needs the ml_dtypes package: pip install ml_dtypes "
                          "(or pip install 'minilora[bf16]')") from None
    return ml_dtypes.bfloat16


def resolve_dtype(dtype: Any) -> np.dtype:
    """np.dtype of a dtype, a type or a name ("float32", "fp16", "half", "bf16", "bfloat16", ...)."""
    if isinstance(dtype, str):
        name = _DTYPE_ALIASES.get(dtype, dtype)
        if name == "bfloat16":
            return np.dtype(bfloat16())
        dtype = name
    return np.dtype(dtype)


def is_floating(dtype: Any) -> bool:
    """float16/32/64 and bfloat16 (whose NumPy kind is "V", a void type registered by ml_dtypes)."""
    dt = np.dtype(dtype)
    return dt.kind == "f" or dt.name == "bfloat16"


def is_16bit(dtype: Any) -> bool:
    """float16 or bfloat16: a storage (or autocast) dtype, never a dtype to accumulate in."""
    return is_floating(dtype) and np.dtype(dtype).itemsize == 2


# ----------------------------------------------------------------------------- transfers
def to_device(a: Any, device: str, dtype: Any = None) -> Any:
    """Copy ``a`` (array, scalar or nested list) onto ``device``: the one explicit transfer."""
    if is_array(a) and device_of(a) == "cuda" and device == "cpu":
        a = to_host(a)
    xp = module_for(device)
    return xp.asarray(a, dtype=dtype)


def to_host(a: Any) -> np.ndarray:
    """A NumPy copy of a device array (explicit host transfer)."""
    if isinstance(a, (np.ndarray, np.generic)):
        return np.asarray(a)
    return a.get()


# ----------------------------------------------------------------------------- helpers ops use
def scatter_add(dst: Any, indices: Any, values: Any) -> None:
    """dst[indices] += values, accumulating repeated indices (np.add.at / cupyx.scatter_add)."""
    xp = get_array_module(dst)
    if xp is np:
        np.add.at(dst, indices, values)
    else:
        _cupyx(xp).scatter_add(dst, indices, values)


def _cupyx(xp: ModuleType) -> Any:
    cupyx = getattr(xp, "cupyx", None)  # the stand-in carries its own
    if cupyx is None:
        import cupyx  # noqa: PLC0415
    return cupyx


def scalar_like(value: Any, like: Any) -> Any:
    """A 0-d array of ``like``'s module and dtype: keeps float32 float32 (no upcast from Python floats)."""
    xp = get_array_module(like)
    return xp.asarray(value, dtype=like.dtype)


# ----------------------------------------------------------------------------- randomness
def manual_seed(seed: int) -> None:
    """Seed the host generator (weight init) and every device generator (dropout, sampling)."""
    global _seed
    _seed = int(seed)
    _generators.clear()


def host_rng() -> np.random.Generator:
    """The host generator: weights are initialised here, so CPU and GPU runs start identical."""
    if "host" not in _generators:
        _generators["host"] = np.random.default_rng(_seed)
    return _generators["host"]


def device_rng(device: str) -> Any:
    """The generator that draws random numbers directly on ``device``."""
    if device not in _generators:
        xp = module_for(device)
        _generators[device] = xp.random.default_rng(_seed + (1 if device == "cuda" else 2))
    return _generators[device]


def rng_state() -> dict[str, Any]:
    """Host-side snapshot of the seed and the CPU generators (for exact resume)."""
    state: dict[str, Any] = {"seed": _seed}
    for name in ("host", "cpu"):
        if name in _generators:
            state[name] = _generators[name].bit_generator.state
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    global _seed
    _seed = int(state["seed"])
    _generators.clear()
    for name in ("host", "cpu"):
        if name in state:
            g = host_rng() if name == "host" else device_rng("cpu")
            g.bit_generator.state = state[name]


def generators_snapshot() -> dict[str, Any]:
    """An in-memory copy of every generator's state, devices included (no host transfer).

    Activation checkpointing takes one before a segment and replays it in the rerun, so dropout
    draws the same masks. A generator not created yet is recorded as None (it will start from the seed).
    """
    snap: dict[str, Any] = {"seed": _seed}
    for name in ("host", *DEVICES):
        g = _generators.get(name)
        snap[name] = None if g is None else _generator_state(g)
    return snap


def restore_generators(snap: dict[str, Any]) -> None:
    """Put every generator back to a ``generators_snapshot()``."""
    global _seed
    _seed = snap["seed"]
    for name in ("host", *DEVICES):
        state = snap[name]
        if state is None:
            _generators.pop(name, None)
            continue
        g = _generators.get(name)
        if g is None:
            g = host_rng() if name == "host" else device_rng(name)
        _set_generator_state(g, state)


def _bit_generator(g: Any) -> Any:
    inner = getattr(g, "_g", None)  # the strict stand-in wraps a NumPy generator
    return (inner if inner is not None else g).bit_generator


def _generator_state(g: Any) -> Any:
    bg = _bit_generator(g)
    if isinstance(bg, np.random.BitGenerator):
        return bg.state  # a dict of Python ints: a copy
    return bg._state.copy()  # CuPy: its curand states, copied on the device


def _set_generator_state(g: Any, state: Any) -> None:
    bg = _bit_generator(g)
    if isinstance(bg, np.random.BitGenerator):
        bg.state = state
    else:
        bg._state[...] = state
