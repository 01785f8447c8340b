"""Layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout, GELU.

Each layer owns its Parameters and calls one fused op from minilora.functional.
Weights are drawn on the host from ``backend.host_rng()`` (seeded by
``minilora.manual_seed``) in float32 and moved with ``Module.to``, so a CPU
run and a GPU run from the same seed start from identical weights.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from minilora import backend
from minilora import functional as F  # noqa: N812
from minilora.nn.module import Module, Parameter
from minilora.nn.precision import activation, cast, gemm_dtype, match
from minilora.ops.embedding import Embedding as _EmbeddingFn
from minilora.ops.embedding import as_index_array, check_indices
from minilora.tensor import Tensor

_SKIP_INIT = False


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Inside this block layers allocate zeros instead of drawing random weights (normal_ and uniform_ do nothing).

    For weights that are about to be loaded from a checkpoint, or re-initialised anyway:
    GPT builds its layers this way and then draws each weight once.
    """
    global _SKIP_INIT
    prev, _SKIP_INIT = _SKIP_INIT, True
    try:
        yield
    finally:
        _SKIP_INIT = prev


def normal_(p: Parameter, std: float, mean: float = 0.0) -> Parameter:
    """Refill ``p`` in place with N(mean, std^2) drawn on the host in float32, then moved to p's device and dtype."""
    if _SKIP_INIT:
        return p
    host = backend.host_rng().standard_normal(p.shape, dtype=np.float32)
    host *= np.float32(std)
    if mean:
        host += np.float32(mean)
    p.data = backend.to_device(host, p.device, p.dtype)
    return p


def uniform_(p: Parameter, bound: float) -> Parameter:
    """Refill ``p`` in place with U(-bound, bound) drawn on the host in float32."""
    if _SKIP_INIT:
        return p
    host = backend.host_rng().random(p.shape, dtype=np.float32)
    host *= np.float32(2 * bound)
    host -= np.float32(bound)
    p.data = backend.to_device(host, p.device, p.dtype)
    return p


def zeros_(p: Parameter) -> Parameter:
    p.data = p.xp.zeros(p.shape, dtype=p.dtype)
    return p


def ones_(p: Parameter) -> Parameter:
    p.data = p.xp.ones(p.shape, dtype=p.dtype)
    return p


def _empty(*shape: int) -> Parameter:
    return Parameter(np.zeros(shape, dtype=np.float32))


class Linear(Module):
    """y = x W^T + b with W (out_features, in_features), as torch.nn.Linear.

    Default init is PyTorch's: W and b from U(-1/sqrt(in), 1/sqrt(in)). GPT re-initialises its own.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ValueError(f"Linear: {name} must be a non-negative integer, got {n!r}")
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        self.weight = uniform_(_empty(out_features, in_features), bound)
        if bias:
            self.bias = uniform_(_empty(out_features), bound)
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        w, b, dt = self.weight, self.bias, gemm_dtype(x)
        if dt == x.dtype == w.dtype and (b is None or b.dtype == dt):
            return F.linear(x, w, b)  # (..., out)
        # a 16-bit stored weight is upcast; under autocast the GEMM runs in 16 bits (nn/precision.py)
        xc = cast(x, dt)
        return cast(F.linear(xc, match(w, xc), match(b, xc)), x.dtype)  # (..., out) in x's dtype

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table picked by integer ids; init N(0, 1) as PyTorch."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = normal_(_empty(num_embeddings, embedding_dim), 1.0)

    def forward(self, idx: Any, check_ids: bool = True) -> Tensor:
        """idx: an integer Tensor or array on the weight's device. ``check_ids=False`` skips the range
        check (one host sync on a GPU) for callers that have checked the ids already."""
        data = as_index_array("Embedding", idx, self.weight.device)
        if check_ids:
            check_indices("Embedding", data, self.num_embeddings, what="id")
        return activation(_EmbeddingFn.apply(self.weight, idx=data))  # idx.shape + (embedding_dim,), >= float32

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalise over the last axis, then scale by weight (ones) and shift by bias (zeros, optional)."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = ones_(_empty(dim))
        if bias:
            self.bias = zeros_(_empty(dim))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, match(self.weight, x), match(self.bias, x), eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps:g}, bias={self.bias is not None}"


class RMSNorm(Module):
    """x / sqrt(mean(x^2) + eps) * weight (ones), over the last axis."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = ones_(_empty(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, match(self.weight, x), eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps:g}"


class Dropout(Module):
    """Zero each element with probability p and scale the rest by 1/(1-p) in training; identity in eval."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x  # no op, no graph node
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class GELU(Module):
    """GELU activation: "tanh" (GPT-2's approximation) or "none" (exact)."""

    def __init__(self, approximate: str = "tanh") -> None:
        super().__init__()
        if approximate not in ("tanh", "none"):
            raise ValueError(f"GELU: approximate must be 'tanh' or 'none', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"
