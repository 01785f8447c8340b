"""Where 16-bit weights meet float32 activations: the casts of a 16-bit base and of mixed precision.

The activations between layers are float32 (the embedding's output is upcast if the table is 16-bit).
A layer whose parameters are stored in float16/bfloat16 upcasts them per call (``match``), as QLoRA
dequantises NF4: a frozen 16-bit base takes half the bytes and computes exactly with its stored,
rounded weights. Under ``autocast(dtype)`` (mixed-precision training) the weight-bearing layers
(Linear, LoRA/DoRA, NF4) run their GEMMs in ``dtype`` instead: input and float32 master weight are
cast down, the result is cast back up. Every cast is a Cast op, so gradients arrive in the master
weights' float32 (the loss scaler unscales them there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from minilora import backend
from minilora.tensor import Tensor

_autocast: np.dtype | None = None


@contextlib.contextmanager
def autocast(dtype: Any = "bfloat16", enabled: bool = True) -> Iterator[None]:
    """Run the Linear-type layers' GEMMs in ``dtype`` ("float16"/"bfloat16") inside this block."""
    global _autocast
    dt = backend.resolve_dtype(dtype) if enabled else None
    if dt is not None and not backend.is_16bit(dt):
        raise ValueError(f"autocast: dtype must be float16 or bfloat16, got {dt}")
    prev, _autocast = _autocast, dt
    try:
        yield
    finally:
        _autocast = prev


def autocast_dtype() -> np.dtype | None:
    return _autocast


def cast(t: Tensor | None, dtype: Any) -> Tensor | None:
    """``t`` in ``dtype`` (a differentiable Cast; for a frozen t no graph is recorded)."""
    return t if t is None or t.dtype == dtype else t.astype(dtype)


def match(t: Tensor | None, x: Tensor) -> Tensor | None:
    """A parameter in the dtype of the activation it meets, when one of the two is 16-bit.

    float32 against float64 stays an error of the op (a user mistake, not a storage choice)."""
    if t is None or t.dtype == x.dtype or not (backend.is_16bit(t.dtype) or backend.is_16bit(x.dtype)):
        return t
    return t.astype(x.dtype)


def gemm_dtype(x: Tensor) -> Any:
    """The dtype a Linear-type layer computes in: the autocast dtype, else its input's."""
    return _autocast if _autocast is not None and backend.is_floating(x.dtype) else x.dtype


def activation(x: Tensor) -> Tensor:
    """The float32 activation stream: a 16-bit embedding output (or GEMM output) is cast up."""
    return x.astype(np.float32) if backend.is_16bit(x.dtype) else x
