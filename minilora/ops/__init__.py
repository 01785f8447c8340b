"""Tensor-level ops, each a Function with a hand-written backward and a registered gradcheck case."""

from minilora.ops.activation import GELUErf, GELUTanh, SiLU, SwiGLU, erf, gelu, silu, swiglu
from minilora.ops.arithmetic import Add, Div, MatMul, Mul, Neg, Pow, Sub
from minilora.ops.attention import ScaledDotProductAttention, scaled_dot_product_attention
from minilora.ops.dropout import Dropout, dropout
from minilora.ops.embedding import Embedding, embedding
from minilora.ops.linear import Linear, linear
from minilora.ops.linear_cross_entropy import LinearCrossEntropy, linear_cross_entropy
from minilora.ops.loss import CrossEntropy, cross_entropy
from minilora.ops.math import Exp, Log, ReLU, Sigmoid, Sqrt, Tanh, Where, masked_fill, where
from minilora.ops.normalization import LayerNorm, RMSNorm, layer_norm, rms_norm
from minilora.ops.reduction import Max, Mean, Sum
from minilora.ops.rope import RotaryEmbedding, rope_cos_sin, rope_inv_freq, rotary_embedding
from minilora.ops.self_attention import SelfAttentionQKV, self_attention
from minilora.ops.shape import Cast, Concat, GetItem, Reshape, Transpose, concat, split, stack
from minilora.ops.softmax import LogSoftmax, Softmax, log_softmax, softmax

__all__ = [
    "Add", "Div", "MatMul", "Mul", "Neg", "Pow", "Sub",
    "Cast", "Concat", "GetItem", "Reshape", "Transpose", "concat", "split", "stack",
    "Exp", "Log", "ReLU", "Sigmoid", "Sqrt", "Tanh", "Where", "masked_fill", "where",
    "Max", "Mean", "Sum",
    "GELUErf", "GELUTanh", "SiLU", "SwiGLU", "erf", "gelu", "silu", "swiglu",
    "Embedding", "embedding", "Linear", "linear", "LinearCrossEntropy", "linear_cross_entropy",
    "LayerNorm", "RMSNorm", "layer_norm", "rms_norm", "LogSoftmax", "Softmax", "log_softmax", "softmax",
    "CrossEntropy", "cross_entropy", "Dropout", "dropout", "ScaledDotProductAttention",
    "scaled_dot_product_attention", "SelfAttentionQKV", "self_attention",
    "RotaryEmbedding", "rope_cos_sin", "rope_inv_freq", "rotary_embedding",
]
