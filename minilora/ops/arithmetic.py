"""Arithmetic ops: add, sub, mul, div, neg, pow, matmul.

Binary ops broadcast like NumPy; autograd.unbroadcast sums each gradient back
to its input's shape. Adjoints are named after the forward variables: for
y = a * b, backward returns (g_a, g_b).
"""

from __future__ import annotations

from typing import Any

from minilora.autograd import Function, unbroadcast
from minilora.gradcheck_cases import register, uniform


def _check_broadcast(op: str, a: Any, b: Any) -> None:
    for n, m in zip(reversed(a.shape), reversed(b.shape)):
        if n != m and n != 1 and m != 1:
            raise ValueError(f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast together")


class Add(Function):
    """y = a + b;  g_a = g_y,  g_b = g_y (each summed over its broadcast axes)."""

    float_only = False

    def forward(self, a: Any, b: Any) -> Any:
        _check_broadcast("add", a, b)
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, g_y: Any) -> tuple[Any, Any]:
        ga, gb = self.needs_input_grad
        return (unbroadcast(g_y, self.shapes[0]) if ga else None, unbroadcast(g_y, self.shapes[1]) if gb else None)


register(Add, lambda a, b: a + b, (3, 4), (3, 4))
register(Add, lambda a, b: a + b, (2, 3, 4), (3, 1), name="Add (broadcast)")


class Sub(Function):
    """y = a - b;  g_a = g_y,  g_b = -g_y."""

    float_only = False

    def forward(self, a: Any, b: Any) -> Any:
        _check_broadcast("sub", a, b)
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, g_y: Any) -> tuple[Any, Any]:
        ga, gb = self.needs_input_grad
        return (unbroadcast(g_y, self.shapes[0]) if ga else None, unbroadcast(-g_y, self.shapes[1]) if gb else None)


register(Sub, lambda a, b: a - b, (4, 1), (1, 5))


class Mul(Function):
    """y = a * b;  g_a = g_y * b,  g_b = g_y * a."""

    float_only = False

    def forward(self, a: Any, b: Any) -> Any:
        _check_broadcast("mul", a, b)
        ga, gb = self.needs_input_grad
        self.save_for_backward(b if ga else None, a if gb else None)
        self.shapes = a.shape, b.shape
        return a * b

    def backward(self, g_y: Any) -> tuple[Any, Any]:
        b, a = self.saved
        g_a = unbroadcast(g_y * b, self.shapes[0]) if b is not None else None
        g_b = unbroadcast(g_y * a, self.shapes[1]) if a is not None else None
        return g_a, g_b


register(Mul, lambda a, b: a * b, (3, 4), (4,))


class Div(Function):
    """y = a / b;  g_a = g_y / b,  g_b = -g_y * a / b**2 = -g_y * y / b."""

    def forward(self, a: Any, b: Any) -> Any:
        _check_broadcast("div", a, b)
        y = a / b
        self.save_for_backward(b, y if self.needs_input_grad[1] else None)
        self.shapes = a.shape, b.shape
        return y

    def backward(self, g_y: Any) -> tuple[Any, Any]:
        b, y = self.saved
        g_a = unbroadcast(g_y / b, self.shapes[0]) if self.needs_input_grad[0] else None
        g_b = unbroadcast(-g_y * y / b, self.shapes[1]) if y is not None else None
        return g_a, g_b


register(Div, lambda a, b: a / b, (3, 4), uniform(0.5, 2.0, 3, 1))


class Neg(Function):
    """y = -x;  g_x = -g_y."""

    float_only = False

    def forward(self, x: Any) -> Any:
        return -x

    def backward(self, g_y: Any) -> tuple[Any]:
        return (-g_y,)


register(Neg, lambda x: -x, (2, 3))


class Pow(Function):
    """y = x ** p for a scalar p;  g_x = g_y * p * x ** (p - 1)."""

    def __init__(self, exponent: float) -> None:
        self.p = exponent

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return x ** self.xp.asarray(self.p, dtype=x.dtype)

    def backward(self, g_y: Any) -> tuple[Any]:
        (x,) = self.saved
        p = self.xp.asarray(self.p, dtype=x.dtype)
        return (g_y * p * x ** (p - 1),)


register(Pow, lambda x: x**3, (3, 4), name="Pow (cube)")
register(Pow, lambda x: x**-0.5, uniform(0.5, 2.0, 3, 4), name="Pow (rsqrt)")


class MatMul(Function):
    """y = a @ b (batched, broadcasting);  g_a = g_y @ b^T,  g_b = a^T @ g_y.

    1-D operands are promoted as NumPy does (a vector on the left is a row,
    on the right a column) and the promotion is undone in the gradient.
    """

    def forward(self, a: Any, b: Any) -> Any:
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must be at least 1-D, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
        ka = a.shape[-1]
        kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if ka != kb:
            raise ValueError(
                f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not align ({ka} != {kb})"
            )
        ga, gb = self.needs_input_grad
        self.save_for_backward(a if gb else None, b if ga else None)
        self.shapes = a.shape, b.shape
        return a @ b

    def backward(self, g_y: Any) -> tuple[Any, Any]:
        a, b = self.saved
        sa, sb = self.shapes
        xp = self.xp
        # promote 1-D operands to matrices, as the forward did implicitly
        sa2 = (1, sa[0]) if len(sa) == 1 else sa
        sb2 = (sb[0], 1) if len(sb) == 1 else sb
        kept = 2 - (len(sa) == 1) - (len(sb) == 1)  # matrix dims that survived in y
        g_y = g_y.reshape(g_y.shape[: g_y.ndim - kept] + sa2[-2:-1] + sb2[-1:])
        g_a = g_b = None
        if b is not None:
            g_a = unbroadcast(g_y @ xp.swapaxes(b.reshape(sb2), -1, -2), sa2).reshape(sa)
        if a is not None:
            g_b = unbroadcast(xp.swapaxes(a.reshape(sa2), -1, -2) @ g_y, sb2).reshape(sb)
        return g_a, g_b


register(MatMul, lambda a, b: a @ b, (3, 4), (4, 5))
register(MatMul, lambda a, b: a @ b, (2, 3, 4), (4, 5), name="MatMul (batched x 2-D)")
register(MatMul, lambda a, b: a @ b, (2, 1, 3, 4), (3, 4, 2), name="MatMul (broadcast batch)")
register(MatMul, lambda a, b: a @ b, (4,), (4, 5), name="MatMul (vector @ matrix)")
register(MatMul, lambda a, b: a @ b, (2, 3, 4), (4,), name="MatMul (matrix @ vector)")
