"""Embedding lookup: rows of a table picked by integer ids, with a scatter-add backward.

The forward is a gather (``weight[idx]``), never a dense one-hot matmul. The
backward adds each g_y row into the row it came from with
``backend.scatter_add``, which accumulates repeated ids (a plain
``g_w[idx] += g_y`` would keep only one of them).

Index checks: NumPy raises on ids past the end but wraps negative ones; CuPy
silently wraps both. ``check_indices`` therefore compares the ids with the
table size, which costs one device-to-host sync per call on a GPU. Set
``minilora.ops.embedding.CHECK_INDICES = False`` to skip it (and the same check
in cross_entropy) in a tight GPU loop once the data is known to be clean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.random import Generator

from minilora import backend
from minilora.autograd import Function
from minilora.gradcheck_cases import integers, register, spec

if TYPE_CHECKING:
    from minilora.tensor import Tensor

CHECK_INDICES = True  # module-level switch for the one host sync of check_indices


def as_index_array(op: str, idx: Any, device: str) -> Any:
    """The raw integer array of ``idx`` (an int Tensor or array), required to live on ``device``."""
    from minilora.tensor import Tensor  # noqa: PLC0415  (tensor.py imports the ops)

    data = idx.data if isinstance(idx, Tensor) else idx
    if not backend.is_array(data):
        raise TypeError(f"{op}: indices must be an integer Tensor or array, got {type(idx).__name__}")
    if data.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be integers, got dtype {data.dtype} with shape {tuple(data.shape)}")
    if backend.device_of(data) != device:
        raise RuntimeError(
            f"{op}: indices are on {backend.device_of(data)} but the tensor is on {device}; "
            "move them with minilora.tensor(..., device=...) first"
        )
    return data


def check_indices(op: str, idx: Any, n: int, ignore: int | None = None, what: str = "index") -> None:
    """Raise if any id is outside [0, n) (``ignore`` excepted): one explicit host sync."""
    if not CHECK_INDICES or idx.size == 0:
        return
    bad = (idx < 0) | (idx >= n)
    if ignore is not None:
        bad &= idx != ignore
    if backend.to_host(bad.any()):  # host: CuPy would silently wrap a bad id, so look once
        host = backend.to_host(idx)
        first = host[backend.to_host(bad)][0]
        allowed = f"[0, {n})" + (f" or {ignore}" if ignore is not None else "")
        raise IndexError(f"{op}: {what} {int(first)} is out of range {allowed} (indices of shape {tuple(idx.shape)})")


class Embedding(Function):
    """y = W[idx]  (idx of any shape, W (V, C), y idx.shape + (C,));  g_W = scatter_add(zeros(V, C), idx, g_y)."""

    def __init__(self, idx: Any) -> None:
        self.idx = idx

    def forward(self, w: Any) -> Any:
        if w.ndim != 2:
            raise ValueError(f"embedding: weight must be 2-D (num_embeddings, dim), got shape {tuple(w.shape)}")
        self.w_shape = w.shape
        y = w[self.idx]  # (..., C)
        if not any(self.needs_input_grad):
            self.idx = None  # frozen table: keep nothing for a backward that never runs
        return y

    def backward(self, g_y: Any) -> tuple[Any]:
        V, C = self.w_shape
        g_w = self.xp.zeros((V, C), dtype=g_y.dtype)
        backend.scatter_add(g_w, self.idx.reshape(-1), g_y.reshape(-1, C))  # repeated ids accumulate
        return (g_w,)


def embedding(idx: Any, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) at the integer ids ``idx`` (Tensor or array on weight's device)."""
    data = as_index_array("embedding", idx, weight.device)
    check_indices("embedding", data, weight.shape[0])
    return Embedding.apply(weight, idx=data)


def _repeated_ids(rng: Generator) -> np.ndarray:
    return np.arange(6).reshape(2, 3) % 2 * 3  # [[0, 3, 0], [3, 0, 3]]: every id repeats


register(Embedding, embedding, integers(5, 2, 3), (5, 4), name="Embedding")
register(Embedding, embedding, spec("int 2x3 (repeated)", _repeated_ids), (5, 4), name="Embedding (repeated ids)")
