"""minilora.functional (imported as F): neural-network ops on Tensors.

Each function here is one fused Function with a hand-written backward (see
minilora/ops/ and docs/ops/), except the thin wrappers at the end.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from minilora.ops.activation import gelu, silu, swiglu
from minilora.ops.attention import scaled_dot_product_attention
from minilora.ops.dropout import dropout
from minilora.ops.embedding import embedding
from minilora.ops.linear import linear
from minilora.ops.linear_cross_entropy import linear_cross_entropy
from minilora.ops.loss import cross_entropy
from minilora.ops.math import masked_fill, where
from minilora.ops.normalization import layer_norm, rms_norm
from minilora.ops.rope import rotary_embedding
from minilora.ops.self_attention import self_attention
from minilora.ops.shape import concat as _concat
from minilora.ops.shape import split as _split
from minilora.ops.shape import stack as _stack
from minilora.ops.softmax import log_softmax as _log_softmax
from minilora.ops.softmax import softmax as _softmax
from minilora.tensor import resolve_dim

if TYPE_CHECKING:
    from minilora.tensor import Tensor


def _accepts_dim(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` that also takes PyTorch's ``dim=`` for its ``axis=`` (F.softmax(x, dim=-1) as in torch)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, dim: int | None = None, **kwargs: Any) -> Any:
        if dim is not None:
            kwargs["axis"] = resolve_dim(fn.__name__, kwargs.get("axis"), dim)
        return fn(*args, **kwargs)

    return wrapper


softmax = _accepts_dim(_softmax)
log_softmax = _accepts_dim(_log_softmax)
concat = _accepts_dim(_concat)
cat = concat  # torch.cat's name
stack = _accepts_dim(_stack)
split = _accepts_dim(_split)


def relu(x: Tensor) -> Tensor:
    """max(x, 0) (the Tensor method x.relu())."""
    return x.relu()


def tanh(x: Tensor) -> Tensor:
    """tanh(x) (the Tensor method x.tanh())."""
    return x.tanh()


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)) (the Tensor method x.sigmoid())."""
    return x.sigmoid()


__all__ = [
    "cat", "concat", "cross_entropy", "dropout", "embedding", "gelu", "layer_norm", "linear", "linear_cross_entropy",
    "log_softmax",
    "masked_fill", "relu", "rms_norm", "rotary_embedding", "scaled_dot_product_attention", "self_attention",
    "sigmoid", "silu", "softmax", "split", "stack", "swiglu", "tanh", "where",
]
