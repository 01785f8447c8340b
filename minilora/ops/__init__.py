"""Tensor-level ops, each a Function with a hand-written backward and a registered gradcheck case."""

from minilora.ops.arithmetic import Add, Div, MatMul, Mul, Neg, Pow, Sub
from minilora.ops.math import Exp, Log, MaskedFill, ReLU, Sigmoid, Sqrt, Tanh, Where, masked_fill, where
from minilora.ops.reduction import Max, Mean, Sum
from minilora.ops.shape import Cast, Concat, GetItem, Reshape, Stack, Transpose, concat, split, stack

__all__ = [
    "Add", "Div", "MatMul", "Mul", "Neg", "Pow", "Sub",
    "Cast", "Concat", "GetItem", "Reshape", "Stack", "Transpose", "concat", "split", "stack",
    "Exp", "Log", "MaskedFill", "ReLU", "Sigmoid", "Sqrt", "Tanh", "Where", "masked_fill", "where",
    "Max", "Mean", "Sum",
]
