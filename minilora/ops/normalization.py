"""Fused LayerNorm and RMSNorm over the last axis.

Composed of primitive ops, LayerNorm would be ~10 graph nodes each saving a
full-size array; fused, it saves xhat and one (..., 1) statistic and its
backward is three reductions (see docs/ops/normalization.md for the derivation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from minilora.autograd import Function
from minilora.gradcheck_cases import register
from minilora.ops.linear import check_same_dtype
from minilora.parallel import for_rows

if TYPE_CHECKING:
    from minilora.tensor import Tensor


def _check_affine(op: str, x: Any, w: Any, b: Any) -> None:
    C = x.shape[-1] if x.ndim else None
    for name, p in (("weight", w), ("bias", b)):
        if p is not None and tuple(p.shape) != (C,):
            raise ValueError(f"{op}: {name} of shape {tuple(p.shape)} does not match input of shape {tuple(x.shape)}")
    check_same_dtype(op, x=x, weight=w, bias=b)


def _sum_leading(g: Any) -> Any:
    """Sum over every axis but the last: the gradient of a (C,) parameter broadcast over (..., C)."""
    return g.reshape(-1, g.shape[-1]).sum(axis=0)


class LayerNorm(Function):
    """y = xhat * w + b,  xhat = (x - mu) * rstd,  rstd = 1 / sqrt(var + eps)  (mu, var over the last axis).

    g_b = sum g_y,  g_w = sum g_y * xhat,  g_xhat = g_y * w,
    g_x = rstd * (g_xhat - mean(g_xhat) - xhat * mean(g_xhat * xhat)),
    which folds the g_var and g_mu paths of the chain rule into the two means.
    Rows are independent, so on NumPy both passes run in cache-sized row blocks over the cores
    (minilora.parallel.for_rows); g_w and g_b add one partial sum per block, in block order.
    """

    fresh_grads = True  # g_x is built in a new array, g_w and g_b are new sums

    def __init__(self, eps: float, has_w: bool, has_b: bool) -> None:
        self.eps, self.has_w, self.has_b = eps, has_w, has_b

    def forward(self, x: Any, *params: Any) -> Any:
        xp = self.xp
        w = params[0] if self.has_w else None
        b = params[-1] if self.has_b else None
        _check_affine("layer_norm", x, w, b)
        C = x.shape[-1]
        x2 = x.reshape(-1, C)  # (N, C)
        y, xhat = xp.empty(x2.shape, x.dtype), xp.empty(x2.shape, x.dtype)  # (N, C)
        rstd = xp.empty((x2.shape[0], 1), x.dtype)  # (N, 1)

        def block(r0: int, r1: int) -> None:
            xb, yb, hb, rb = x2[r0:r1], y[r0:r1], xhat[r0:r1], rstd[r0:r1]
            xp.subtract(xb, xb.mean(axis=-1, keepdims=True), out=hb)  # xc for now
            xp.multiply(hb, hb, out=yb)  # y holds xc^2 first: no temporary
            var = yb.mean(axis=-1, keepdims=True)  # biased, as PyTorch
            var += self.eps
            xp.sqrt(var, out=var)
            xp.divide(1.0, var, out=rb)  # 1 / sqrt(var + eps)
            hb *= rb  # xhat, in place
            if w is not None:
                xp.multiply(hb, w, out=yb)
            else:
                yb[...] = hb
            if b is not None:
                yb += b

        for_rows(xp, x2.shape[0], C, block)
        needs = self.needs_input_grad
        need_xhat = needs[0] or (self.has_w and needs[1])
        self.save_for_backward(xhat if need_xhat else None, rstd if needs[0] else None, w if needs[0] else None)
        return y.reshape(x.shape)

    def backward(self, g_y: Any) -> tuple[Any, ...]:
        xp = self.xp
        xhat, rstd, w = self.saved
        C = g_y.shape[-1]
        g2 = g_y.reshape(-1, C)  # (N, C)
        needs = iter(self.needs_input_grad[1:])
        need_w = self.has_w and next(needs)
        need_b = self.has_b and next(needs)
        need_x = self.needs_input_grad[0]
        g_x = xp.empty(g2.shape, g_y.dtype) if need_x else None  # (N, C)
        parts_w: dict[int, Any] = {}
        parts_b: dict[int, Any] = {}

        def block(r0: int, r1: int) -> None:
            gb = g2[r0:r1]
            if need_b:
                parts_b[r0] = gb.sum(axis=0)
            if not (need_w or need_x):
                return
            hb = xhat[r0:r1]
            g_yx = gb * hb  # (rows, C) scratch: g_y * xhat
            if need_w:
                parts_w[r0] = g_yx.sum(axis=0)
            if need_x:
                gx = g_x[r0:r1]  # g_xhat first, then g_x, in place
                if w is not None:
                    xp.multiply(gb, w, out=gx)
                    g_yx *= w  # g_xhat * xhat = g_y * xhat * w
                else:
                    gx[...] = gb
                m2 = g_yx.mean(axis=-1, keepdims=True)  # mean(g_xhat * xhat), (rows, 1)
                m1 = gx.mean(axis=-1, keepdims=True)  # mean(g_xhat), (rows, 1)
                xp.multiply(hb, m2, out=g_yx)
                gx -= m1
                gx -= g_yx
                gx *= rstd[r0:r1]

        for_rows(xp, g2.shape[0], C, block)
        g_w = _add_in_order(xp, parts_w, C, g_y.dtype) if need_w else None
        g_b = _add_in_order(xp, parts_b, C, g_y.dtype) if need_b else None
        g_x = g_x.reshape(g_y.shape) if need_x else None
        return (g_x,) + ((g_w,) if self.has_w else ()) + ((g_b,) if self.has_b else ())


def _add_in_order(xp: Any, parts: dict[int, Any], C: int, dtype: Any) -> Any:
    """The sum of per-block partial sums, in block order (so the result does not depend on the threads)."""
    keys = sorted(parts)
    if not keys:  # no rows
        return xp.zeros(C, dtype)
    total = parts[keys[0]]
    for k in keys[1:]:
        total += parts[k]
    return total


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Normalise over the last axis to zero mean and unit variance, then scale by weight and shift by bias."""
    params = [p for p in (weight, bias) if p is not None]
    return LayerNorm.apply(x, *params, eps=eps, has_w=weight is not None, has_b=bias is not None)


register(LayerNorm, lambda x, w, b: layer_norm(x, w, b), (3, 5), (5,), (5,), name="LayerNorm")
register(LayerNorm, lambda x, w, b: layer_norm(x, w, b), (2, 3, 4), (4,), (4,), name="LayerNorm (3-D)")
register(LayerNorm, lambda x, w: layer_norm(x, w, None), (3, 5), (5,), name="LayerNorm (bias=None)")
register(LayerNorm, lambda x: layer_norm(x, None, None), (2, 6), name="LayerNorm (no affine)")


class RMSNorm(Function):
    """y = xhat * w,  xhat = x * rrms,  rrms = 1 / sqrt(mean(x^2) + eps)  (over the last axis).

    g_w = sum g_y * xhat,  g_xhat = g_y * w,  g_x = rrms * (g_xhat - xhat * mean(g_xhat * xhat)).

    As transformers' LlamaRMSNorm: for a 16-bit x (float16, bfloat16) the statistic and xhat are computed in
    float32 and xhat is cast back to x's dtype before the weight multiplies it (float32 and float64 inputs stay
    in their own dtype throughout); the backward then runs in float32 too and g_x is cast back.
    """

    def __init__(self, eps: float, has_w: bool) -> None:
        self.eps, self.has_w = eps, has_w

    def forward(self, x: Any, *params: Any) -> Any:
        xp = self.xp
        w = params[0] if self.has_w else None
        _check_affine("rms_norm", x, w, None)
        h = x.astype(np.float32) if x.dtype.itemsize < 4 else x  # (..., C): float32 statistics for 16-bit x
        rrms = 1.0 / xp.sqrt((h * h).mean(axis=-1, keepdims=True) + xp.asarray(self.eps, dtype=h.dtype))  # (..., 1)
        xhat = (h * rrms).astype(x.dtype, copy=False)  # (..., C), back in x's dtype
        y = xhat * w if w is not None else xhat
        needs = self.needs_input_grad
        self.save_for_backward(xhat, rrms if needs[0] else None, w if needs[0] else None)
        return y

    def backward(self, g_y: Any) -> tuple[Any, ...]:
        xhat, rrms, w = self.saved
        g_w = _sum_leading(g_y * xhat) if self.has_w and self.needs_input_grad[1] else None
        g_x = None
        if self.needs_input_grad[0]:
            g_xhat = g_y * w if w is not None else g_y
            if g_xhat.dtype != rrms.dtype:  # 16-bit: the float32 path of the forward
                g_xhat, xhat = g_xhat.astype(rrms.dtype), xhat.astype(rrms.dtype)
            g_x = g_xhat - xhat * (g_xhat * xhat).mean(axis=-1, keepdims=True)
            g_x *= rrms
            g_x = g_x.astype(g_y.dtype, copy=False)
        return (g_x, g_w) if self.has_w else (g_x,)


def rms_norm(x: Tensor, weight: Tensor | None, eps: float = 1e-6) -> Tensor:
    """Scale x by the reciprocal root mean square of its last axis, then by weight."""
    if weight is None:
        return RMSNorm.apply(x, eps=eps, has_w=False)
    return RMSNorm.apply(x, weight, eps=eps, has_w=True)


register(RMSNorm, lambda x, w: rms_norm(x, w), (3, 5), (5,), name="RMSNorm")
register(RMSNorm, lambda x, w: rms_norm(x, w), (2, 3, 4), (4,), name="RMSNorm (3-D)")
