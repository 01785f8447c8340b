"""The fused linear layer: y = x W^T + b as ONE 2-D GEMM forward and one GEMM per needed gradient.

Leading dimensions are flattened, so (B, T, in) becomes (B*T, in) and every
product is a single BLAS call (cuBLAS on CuPy). ``W.T`` of a C-contiguous
weight is an F-contiguous view: BLAS reads it transposed, no copy is made.
A frozen weight (LoRA's W0) costs no g_W GEMM and x is not even saved for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minilora.autograd import Function
from minilora.gradcheck_cases import register

if TYPE_CHECKING:
    from minilora.tensor import Tensor


def check_same_dtype(op: str, **arrays: Any) -> None:
    """Fused ops take operands of one float dtype: refuse mixes instead of silently upcasting."""
    named = [(n, a) for n, a in arrays.items() if a is not None]
    dtypes = {a.dtype for _, a in named}
    if len(dtypes) > 1:
        desc = ", ".join(f"{n} {tuple(a.shape)} {a.dtype}" for n, a in named)
        raise TypeError(f"{op}: operands must share one dtype, got {desc}")


class Linear(Function):
    """y = x W^T + b, with x (..., in), W (out, in), b (out,) or absent.

    With x2 = x reshaped to (N, in) and g_y2 = g_y reshaped to (N, out):
    g_x = g_y2 W  (reshaped back),  g_W = g_y2^T x2,  g_b = sum_n g_y2[n].
    """

    def __init__(self, has_bias: bool) -> None:
        self.has_bias = has_bias

    def forward(self, x: Any, w: Any, *maybe_b: Any) -> Any:
        b = maybe_b[0] if maybe_b else None
        if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[1]:
            raise ValueError(
                f"linear: input of shape {tuple(x.shape)} does not fit weight of shape {tuple(w.shape)} "
                "(weight is (out_features, in_features); the input's last dimension must be in_features)"
            )
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise ValueError(f"linear: bias of shape {tuple(b.shape)} does not match out_features {w.shape[0]}")
        check_same_dtype("linear", x=x, weight=w, bias=b)
        g_x_needed, g_w_needed = self.needs_input_grad[:2]
        self.x_shape = x.shape
        x2 = x.reshape(-1, x.shape[-1])  # (N, in)
        y = x2 @ w.T  # (N, out): BLAS reads W transposed, no copy
        if b is not None:
            y += b
        self.save_for_backward(x2 if g_w_needed else None, w if g_x_needed else None)
        return y.reshape(*x.shape[:-1], w.shape[0])

    def backward(self, g_y: Any) -> tuple[Any, ...]:
        x2, w = self.saved
        g_y2 = g_y.reshape(-1, g_y.shape[-1])  # (N, out)
        g_b = g_y2.sum(axis=0) if self.has_bias and self.needs_input_grad[2] else None
        g_w = g_y2.T @ x2 if x2 is not None else None  # (out, in)
        g_x = (g_y2 @ w).reshape(self.x_shape) if w is not None else None  # (N, in) -> x's shape
        return (g_x, g_w, g_b) if self.has_bias else (g_x, g_w)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b with weight shaped (out_features, in_features) (fused; see Linear)."""
    if bias is None:
        return Linear.apply(x, weight, has_bias=False)
    return Linear.apply(x, weight, bias, has_bias=True)


register(Linear, lambda x, w, b: linear(x, w, b), (3, 4), (5, 4), (5,), name="Linear")
register(Linear, lambda x, w, b: linear(x, w, b), (2, 3, 4), (5, 4), (5,), name="Linear (3-D input)")
register(Linear, lambda x, w: linear(x, w), (2, 3, 4), (2, 4), name="Linear (no bias)")
register(Linear, lambda x, w, b: linear(x, w, b), (4,), (3, 4), (3,), name="Linear (1-D input)")
