"""Tensor-level ops, each a Function with a hand-written backward and a registered gradcheck case."""

from minilora.ops.arithmetic import Add, Div, MatMul, Mul, Neg, Pow, Sub

__all__ = ["Add", "Div", "MatMul", "Mul", "Neg", "Pow", "Sub"]
