"""LoRA's and DoRA's fused ops: the whole adapted layer as one Function each (see lora.py for the math).

The branch's (..., out) output and the sum are never separate graph tensors, so LoRA keeps no more
activations alive than the plain layer plus h A^T. W0 is a constant of the op (a float array, or an
NF4 weight dequantised on the fly): a frozen base costs no weight-gradient GEMM.
"""

from __future__ import annotations

from typing import Any

from minilora.autograd import Function
from minilora.gradcheck_cases import register
from minilora.ops.linear import check_same_dtype
from minilora.tensor import Tensor


def frozen_weight(w: Any, dtype: Any) -> Any:
    """W0 in the compute dtype: an NF4 weight dequantised, a 16-bit stored one upcast (a temporary per call)."""
    if hasattr(w, "dequantize"):
        return w.dequantize(dtype)
    return w if w.dtype == dtype else w.astype(dtype)


class LoraLinearFn(Function):
    """y = x W0^T + b + s (h A^T) B^T, with h = dropout(x) (or x itself), A (r, in), B (out, r).

    W0 (out, in) is the frozen base weight, a constant of the op rather than an input: a float array, or an
    NF4 weight dequantised on the fly in forward and again in backward (QLoRA: nothing of size (out, in) is
    saved). With x2, h2 = x, h reshaped to (N, in), g2 = g_y reshaped to (N, out), ha = h2 A^T (N, r) and
    gb = g2 B (N, r):
    g_x = g2 W0,  g_h = s gb A,  g_A = s gb^T h2,  g_B = s g2^T ha,  g_b = sum_n g2[n];  W0 gets no gradient.
    """

    def __init__(self, weight: Any, scaling: float, has_bias: bool) -> None:
        self.weight = weight  # an (out, in) array, or an object with .dequantize(dtype) (an NF4Tensor)
        self.s, self.has_bias = scaling, has_bias

    def _w0(self, dtype: Any) -> Any:
        return frozen_weight(self.weight, dtype)

    def forward(self, x: Any, h: Any, a: Any, b_lora: Any, *maybe_bias: Any) -> Any:
        bias = maybe_bias[0] if maybe_bias else None
        w = self._w0(x.dtype)
        r, n_in = a.shape
        if w.shape[1] != n_in or b_lora.shape != (w.shape[0], r) or x.shape[-1] != n_in or h.shape != x.shape:
            raise ValueError(
                f"lora_linear: shapes do not fit: x {tuple(x.shape)}, h {tuple(h.shape)}, W0 {tuple(w.shape)}, "
                f"A {tuple(a.shape)}, B {tuple(b_lora.shape)} (W0 is (out, in), A (r, in), B (out, r))"
            )
        check_same_dtype("lora_linear", x=x, h=h, W0=w, A=a, B=b_lora, bias=bias)
        g_x, g_h, g_a, g_b = self.needs_input_grad[:4]
        self.x_shape = x.shape
        x2, h2 = x.reshape(-1, n_in), h.reshape(-1, n_in)  # (N, in)
        s = self.xp.asarray(self.s, dtype=x.dtype)
        ha = h2 @ a.T  # (N, r)
        y = x2 @ w.T  # (N, out); for NF4 the temporary W dies here
        y += (ha * s) @ b_lora.T
        if bias is not None:
            y += bias
        self.save_for_backward(
            h2 if g_a else None, ha if g_b else None, a if (g_h or g_a) else None, b_lora if (g_h or g_a) else None,
        )  # fmt: skip
        return y.reshape(*x.shape[:-1], w.shape[0])

    def backward(self, g_y: Any) -> tuple[Any, ...]:
        h2, ha, a, b_lora = self.saved
        need = self.needs_input_grad
        s = self.xp.asarray(self.s, dtype=g_y.dtype)
        g2 = g_y.reshape(-1, g_y.shape[-1])  # (N, out)
        gb = g2 @ b_lora if b_lora is not None else None  # (N, r)
        g_x = (g2 @ self._w0(g_y.dtype)).reshape(self.x_shape) if need[0] else None  # (N, in)
        g_h = ((gb * s) @ a).reshape(self.x_shape) if need[1] else None  # (N, in)
        g_a = (gb * s).T @ h2 if need[2] else None  # (r, in)
        g_blora = g2.T @ (ha * s) if need[3] else None  # (out, r)
        grads = (g_x, g_h, g_a, g_blora)
        if self.has_bias:
            grads += (g2.sum(axis=0) if need[4] else None,)
        return grads


def lora_linear(x: Tensor, h: Tensor, weight: Any, lora_A: Tensor, lora_B: Tensor, scaling: float,
                bias: Tensor | None = None) -> Tensor:
    """y = x W0^T + b + scaling * (h A^T) B^T as one fused op (see LoraLinearFn); pass h = x without dropout.

    ``weight`` is the frozen W0: an array (or a Tensor, whose data is used: it receives no gradient) or an
    NF4 weight (anything with ``dequantize(dtype)``)."""
    w = weight.data if isinstance(weight, Tensor) else weight
    if bias is None:
        return LoraLinearFn.apply(x, h, lora_A, lora_B, weight=w, scaling=scaling, has_bias=False)
    return LoraLinearFn.apply(x, h, lora_A, lora_B, bias, weight=w, scaling=scaling, has_bias=True)


def _case_weight(x: Tensor, out_f: int) -> Any:
    """A fixed (out_f, in) weight on x's device and in its dtype (the frozen constant of the case)."""
    xp = x.xp
    return xp.cos(xp.arange(out_f * x.shape[-1], dtype=x.dtype) * 0.7 + 0.2).reshape(out_f, x.shape[-1])


register(LoraLinearFn, lambda x, h, a, b, bias: lora_linear(x, h, _case_weight(x, 5), a, b, 1.5, bias),
         (2, 3, 4), (2, 3, 4), (2, 4), (5, 2), (5,), name="LoraLinearFn")
register(LoraLinearFn, lambda x, a, b: lora_linear(x, x, _case_weight(x, 5), a, b, 0.5), (3, 4), (3, 4), (5, 3),
         name="LoraLinearFn (h = x, no bias)")


class DoraLinearFn(Function):
    """y = nu * (x W0^T + s (h A^T) B^T) + b with nu = m / n, n = ||W0 + s B A||_row a constant (out,).

    W0 and n are constants of the op (the paper detaches the norm); inputs x, h, A, B, m and b. With z the
    bracket (N, out), g2 = g_y (N, out), g_z = g2 * nu, ha = h2 A^T (N, r), gb = g_z B (N, r):
    g_m = sum_n g2[n] * z[n] / n,  g_x = g_z W0,  g_h = s gb A,  g_A = s gb^T h2,  g_B = s g_z^T ha,
    g_b = sum_n g2[n].
    """

    def __init__(self, weight: Any, norm: Any, scaling: float, has_bias: bool) -> None:
        self.weight, self.norm, self.s, self.has_bias = weight, norm, scaling, has_bias

    def _w0(self, dtype: Any) -> Any:
        return frozen_weight(self.weight, dtype)

    def forward(self, x: Any, h: Any, a: Any, b_lora: Any, m: Any, *maybe_bias: Any) -> Any:
        bias = maybe_bias[0] if maybe_bias else None
        w = self._w0(x.dtype)
        if m.shape != (w.shape[0],) or self.norm.shape != m.shape:
            raise ValueError(f"dora_linear: magnitude {tuple(m.shape)} and norm {tuple(self.norm.shape)} must be "
                             f"(out_features,) = ({w.shape[0]},)")
        check_same_dtype("dora_linear", x=x, h=h, A=a, B=b_lora, m=m, norm=self.norm, bias=bias)
        self.x_shape, n_in = x.shape, a.shape[1]
        x2, h2 = x.reshape(-1, n_in), h.reshape(-1, n_in)  # (N, in)
        s = self.xp.asarray(self.s, dtype=x.dtype)
        ha = h2 @ a.T  # (N, r)
        z = x2 @ w.T  # (N, out)
        z += (ha * s) @ b_lora.T
        nu = m / self.norm  # (out,): exactly 1 at initialisation
        y = z * nu
        if bias is not None:
            y += bias
        g_x, g_h, g_a, g_b, g_m = self.needs_input_grad[:5]
        self.save_for_backward(h2 if g_a else None, ha if g_b else None, a, b_lora, nu, z if g_m else None)
        return y.reshape(*x.shape[:-1], w.shape[0])

    def backward(self, g_y: Any) -> tuple[Any, ...]:
        h2, ha, a, b_lora, nu, z = self.saved
        need = self.needs_input_grad
        s = self.xp.asarray(self.s, dtype=g_y.dtype)
        g2 = g_y.reshape(-1, g_y.shape[-1])  # (N, out)
        g_m = (g2 * z).sum(axis=0) / self.norm if need[4] else None  # (out,)
        g_z = g2 * nu  # (N, out)
        gb = g_z @ b_lora  # (N, r)
        g_x = (g_z @ self._w0(g_y.dtype)).reshape(self.x_shape) if need[0] else None
        g_h = ((gb * s) @ a).reshape(self.x_shape) if need[1] else None
        g_a = (gb * s).T @ h2 if need[2] else None  # (r, in)
        g_blora = g_z.T @ (ha * s) if need[3] else None  # (out, r)
        grads = (g_x, g_h, g_a, g_blora, g_m)
        if self.has_bias:
            grads += (g2.sum(axis=0) if need[5] else None,)
        return grads


def dora_linear(x: Tensor, h: Tensor, weight: Any, norm: Any, lora_A: Tensor, lora_B: Tensor, magnitude: Tensor,
                scaling: float, bias: Tensor | None = None) -> Tensor:
    """DoRA's layer as one fused op (see DoraLinearFn); ``weight`` (W0) and ``norm`` are frozen constants."""
    w = weight.data if isinstance(weight, Tensor) else weight
    n = norm.data if isinstance(norm, Tensor) else norm
    extra = (bias,) if bias is not None else ()
    return DoraLinearFn.apply(x, h, lora_A, lora_B, magnitude, *extra, weight=w, norm=n, scaling=scaling,
                              has_bias=bias is not None)


def _case_norm(x: Tensor, out_f: int) -> Any:
    return x.xp.linspace(0.5, 1.5, out_f, dtype=x.dtype)


register(DoraLinearFn, lambda x, h, a, b, m, bias: dora_linear(x, h, _case_weight(x, 5), _case_norm(x, 5), a, b, m,
                                                               1.5, bias),
         (2, 3, 4), (2, 3, 4), (2, 4), (5, 2), (5,), (5,), name="DoraLinearFn")
register(DoraLinearFn, lambda x, a, b, m: dora_linear(x, x, _case_weight(x, 3), _case_norm(x, 3), a, b, m, 0.5),
         (4, 4), (2, 4), (3, 2), (3,), name="DoraLinearFn (h = x, no bias)")
