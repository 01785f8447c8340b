"""minilora.functional (imported as F): neural-network ops on Tensors.

Each function here is one fused Function with a hand-written backward (see
minilora/ops/ and docs/ops/), except the thin wrappers at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from minilora.ops.activation import gelu, silu
from minilora.ops.attention import scaled_dot_product_attention
from minilora.ops.dropout import dropout
from minilora.ops.embedding import embedding
from minilora.ops.linear import linear
from minilora.ops.loss import cross_entropy
from minilora.ops.math import masked_fill, where
from minilora.ops.normalization import layer_norm, rms_norm
from minilora.ops.self_attention import self_attention
from minilora.ops.shape import concat, split, stack
from minilora.ops.softmax import log_softmax, softmax

if TYPE_CHECKING:
    from minilora.tensor import Tensor


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
    "concat", "cross_entropy", "dropout", "embedding", "gelu", "layer_norm", "linear", "log_softmax", "masked_fill",
    "relu", "rms_norm", "scaled_dot_product_attention", "self_attention", "sigmoid", "silu", "softmax", "split",
    "stack", "tanh", "where",
]
