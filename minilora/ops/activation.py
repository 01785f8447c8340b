"""Fused activations: GELU (GPT-2's tanh form and the exact erf form) and SiLU.

NumPy has no erf, so ``erf`` below evaluates W. J. Cody's rational Chebyshev
approximations (Math. Comp. 1969; netlib specfun CALERF) with array ops only,
so it runs unchanged on CuPy: |x| <= 0.46875 uses erf(x) = x P(x^2)/Q(x^2);
0.46875 < |x| <= 4 uses erfc(y) = exp(-y^2) P(y)/Q(y); |x| > 4 uses the
asymptotic erfc(y) = exp(-y^2)/y (1/sqrt(pi) - z P(z)/Q(z)), z = 1/y^2.
All three are computed for every element and ``where`` picks one (no boolean
indexing, which would force a GPU sync). Accuracy: ~1e-16 in float64.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from minilora.autograd import Function
from minilora.backend import get_array_module
from minilora.gradcheck_cases import register
from minilora.parallel import for_rows

if TYPE_CHECKING:
    from minilora.tensor import Tensor

# Cody's coefficients (netlib specfun/erf), highest-index entry first as in his Horner loops.
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03,
      1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02,
      8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03,
      2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
      3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
      6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1, 6.05183413124413191e-2,
      2.33520497626869185e-3)
_INV_SQRT_PI = 0.56418958354775628695


def _ratio(t: Any, num: tuple[float, ...], den: tuple[float, ...]) -> Any:
    """Cody's Horner scheme: (((n_last t + n_0) t + n_1) t ... + n_{k}) / ((t + d_0) t ... + d_k)."""
    n, d = num[-1] * t, t
    for a, b in zip(num[:-2], den[:-1]):
        n = (n + a) * t
        d = (d + b) * t
    return (n + num[-2]) / (d + den[-1])


def erf(x: Any) -> Any:
    """The error function of a float array, elementwise, on its own array module (NumPy or CuPy)."""
    xp = get_array_module(x)
    y = xp.abs(x)
    small = x * _ratio(x * x, _A, _B)  # erf, accurate for |x| <= 0.46875
    mid = xp.minimum(y, 4.0)
    erfc_mid = xp.exp(-mid * mid) * _ratio(mid, _C, _D)
    big = xp.maximum(y, 4.0)  # clamp: no 1/0 in the branch that where() discards
    z = 1.0 / (big * big)
    erfc_big = xp.exp(-big * big) / big * (_INV_SQRT_PI - z * _ratio(z, _P, _Q))
    erfc = xp.where(y <= 4.0, erfc_mid, erfc_big)
    return xp.where(y <= 0.46875, small, xp.sign(x) * (1.0 - erfc)).astype(x.dtype, copy=False)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_CUBIC = _SQRT_2_OVER_PI * 0.044715  # u = x (sqrt(2/pi) + _CUBIC x^2)


def _exp_is_faster(dtype: Any) -> bool:
    """Whether this NumPy's exp beats its tanh on ``dtype`` (timed once per dtype, on 16K elements).

    NumPy vectorises float32 tanh only with AVX-512 (on an AVX2-only x86 it is scalar, ~3x slower
    than exp); exp is vectorised on both, so GELU's sigmoid goes through exp where that is faster.
    """
    key = np.dtype(dtype).str
    if key not in _EXP_FASTER:
        u = np.linspace(-4, 4, 1 << 14, dtype=dtype)  # host: a timing probe, not op data
        out = np.empty_like(u)
        best = {np.tanh: math.inf, np.exp: math.inf}
        for _ in range(5):
            for f in best:
                t0 = time.perf_counter()
                f(u, out=out)
                best[f] = min(best[f], time.perf_counter() - t0)
        _EXP_FASTER[key] = best[np.exp] < 0.8 * best[np.tanh]  # the exp form makes 3 passes more
    return _EXP_FASTER[key]


_EXP_FASTER: dict[str, bool] = {}


def _gelu_tanh_block(xp: Any, x: Any, y: Any, d: Any, exp_form: bool) -> None:
    """GELU (tanh) of one block, into y; dy/dx into d unless it is None (see GELUTanh for the formulas).

    Written with s = sigmoid(2u) = (1 + tanh(u)) / 2, so that y = x s, and
    dy/dx = s + x s (1 - s) 2 du/dx: one transcendental pass, the rest multiplies and adds in place.
    exp_form: s = 1 / (1 + exp(-2u)) (-2u clamped at 80: float32 exp overflows at 88.7, and s is 0 there
    anyway); else s = (tanh(u) + 1) / 2. The plain formula: 0.5 * x * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    """
    x2 = x * x
    if exp_form:
        s = x2 * (-2 * _CUBIC)
        s -= 2 * _SQRT_2_OVER_PI
        s *= x  # -2u
        xp.minimum(s, 80.0, out=s)
        xp.exp(s, out=s)
        s += 1.0
        xp.divide(1.0, s, out=s)  # sigmoid(2u)
    else:
        s = x2 * _CUBIC
        s += _SQRT_2_OVER_PI
        s *= x  # u
        xp.tanh(s, out=s)
        s += 1.0
        s *= 0.5  # (1 + tanh(u)) / 2 = sigmoid(2u)
    xp.multiply(x, s, out=y)  # y = x s
    if d is not None:
        x2 *= 6 * _CUBIC
        x2 += 2 * _SQRT_2_OVER_PI  # 2 du/dx
        xp.subtract(1.0, s, out=d)
        d *= y
        d *= x2  # x s (1 - s) 2 du/dx
        d += s



def _flat(a: Any) -> Any:
    return a.reshape(-1)  # a view for the contiguous arrays the ops make (reshape copies otherwise)


class GELUTanh(Function):
    """y = 0.5 x (1 + t),  t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3)  (GPT-2's GELU).

    g_x = g_y * dy/dx,  dy/dx = 0.5 (1 + t) + 0.5 x (1 - t) (1 + t) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    When x needs a gradient the forward computes dy/dx right away, while t is at hand, and saves only
    that: the backward is then one multiply, and tanh is evaluated once per step instead of twice.
    On NumPy the work runs in cache-sized blocks over the cores (minilora.parallel.for_rows).
    """

    fresh_grads = True  # g_x = g_y * dy/dx is a new array

    def forward(self, x: Any) -> Any:
        xp = self.xp
        x = xp.ascontiguousarray(x)
        y = xp.empty_like(x)
        d = xp.empty_like(x) if self.needs_input_grad[0] else None
        xf, yf, df = _flat(x), _flat(y), None if d is None else _flat(d)
        exp_form = xp is np and _exp_is_faster(x.dtype)

        def block(r0: int, r1: int) -> None:
            _gelu_tanh_block(xp, xf[r0:r1], yf[r0:r1], None if df is None else df[r0:r1], exp_form)

        for_rows(xp, xf.size, 1, block)
        self.save_for_backward(d)
        return y

    def backward(self, g_y: Any) -> tuple[Any]:
        (dydx,) = self.saved
        return (multiply(self.xp, g_y, dydx),)


def multiply(xp: Any, a: Any, b: Any) -> Any:
    """a * b for same-shape arrays, a fresh contiguous array, in blocks over the cores on NumPy."""
    a, b = xp.ascontiguousarray(a), xp.ascontiguousarray(b)
    out = xp.empty_like(a)
    af, bf, of = _flat(a), _flat(b), _flat(out)
    for_rows(xp, af.size, 1, lambda r0, r1: xp.multiply(af[r0:r1], bf[r0:r1], out=of[r0:r1]))
    return out


register(GELUTanh, lambda x: gelu(x), (3, 4), name="GELU (tanh)")
register(GELUTanh, lambda x: gelu(x), (2, 2, 5), name="GELU (tanh, 3-D)")


class GELUErf(Function):
    """y = x Phi(x),  Phi(x) = 0.5 (1 + erf(x / sqrt(2)));  g_x = g_y (Phi(x) + x phi(x)).

    phi(x) = exp(-x^2 / 2) / sqrt(2 pi) is the standard normal density, Phi' = phi.
    """

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return 0.5 * x * (1.0 + erf(x * _INV_SQRT_2))

    def backward(self, g_y: Any) -> tuple[Any]:
        (x,) = self.saved
        Phi = 0.5 * (1.0 + erf(x * _INV_SQRT_2))
        phi = _INV_SQRT_2PI * self.xp.exp(-0.5 * x * x)
        return (g_y * (Phi + x * phi),)


register(GELUErf, lambda x: gelu(x, approximate="none"), (3, 4), name="GELU (erf)")
register(GELUErf, lambda x: gelu(x, approximate="none"), (2, 2, 5), name="GELU (erf, 3-D)", atol=1e-6)


def gelu(x: Tensor, approximate: str = "tanh") -> Tensor:
    """GELU: "tanh" (GPT-2's approximation, the default) or "none" (exact, x * Phi(x) through erf)."""
    if approximate == "tanh":
        return GELUTanh.apply(x)
    if approximate == "none":
        return GELUErf.apply(x)
    raise ValueError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")


def _sigmoid(xp: Any, x: Any) -> Any:
    """sigmoid(x) = exp(min(x, 0)) / (1 + exp(-|x|)): the stable form (no overflow; 1/(1+e) for x >= 0,
    e/(1+e) below, e = exp(-|x|)) without a where, whose data-dependent branches cost ~8x the arithmetic."""
    e = xp.abs(x)
    xp.negative(e, out=e)
    xp.exp(e, out=e)  # exp(-|x|) <= 1
    e += 1.0
    s = xp.minimum(x, 0.0)
    xp.exp(s, out=s)  # 1 for x >= 0, exp(x) = exp(-|x|) below
    s /= e
    return s


class SiLU(Function):
    """y = x s,  s = sigmoid(x);  g_x = g_y s (1 + x (1 - s))."""

    def forward(self, x: Any) -> Any:
        s = _sigmoid(self.xp, x)
        self.save_for_backward(x, s)
        return x * s

    def backward(self, g_y: Any) -> tuple[Any]:
        x, s = self.saved
        return (g_y * s * (1.0 + x * (1.0 - s)),)


def silu(x: Tensor) -> Tensor:
    """SiLU (swish): x * sigmoid(x)."""
    return SiLU.apply(x)


register(SiLU, silu, (3, 4), name="SiLU")
register(SiLU, silu, (2, 3, 2), name="SiLU (3-D)")


class SwiGLU(Function):
    """y = silu(gate) * up,  silu(gate) = gate * s,  s = sigmoid(gate)  (the Llama MLP's gated unit).

    g_up = g_y * silu(gate),  g_gate = g_y * up * s (1 + gate (1 - s))  (silu' as in SiLU).
    Fused, it saves gate and up and recomputes s in backward; composed (silu then a multiply) the graph would
    keep gate, s, silu(gate) and up: four arrays of the MLP's widest shape (B, T, intermediate) instead of two.
    """

    fresh_grads = True  # g_gate and g_up are new arrays

    def forward(self, gate: Any, up: Any) -> Any:
        y = _sigmoid(self.xp, gate)  # s, our own array: the output is built in it
        y *= gate  # silu(gate)
        y *= up
        need_gate, need_up = self.needs_input_grad
        self.save_for_backward(gate, up if need_gate else None)
        return y

    def backward(self, g_y: Any) -> tuple[Any, Any]:
        gate, up = self.saved
        need_gate, need_up = self.needs_input_grad
        s = _sigmoid(self.xp, gate)  # (..., I), recomputed: cheaper than keeping it
        g_up = None
        if need_up:
            g_up = g_y * s
            g_up *= gate  # g_y * silu(gate)
        g_gate = None
        if need_gate:
            g_gate = 1.0 - s
            g_gate *= gate
            g_gate += 1.0
            g_gate *= s  # silu'(gate) = s (1 + gate (1 - s))
            g_gate *= up
            g_gate *= g_y
        return g_gate, g_up


def swiglu(gate: Tensor, up: Tensor) -> Tensor:
    """silu(gate) * up, fused (see SwiGLU): the Llama MLP is down_proj(swiglu(gate_proj(x), up_proj(x)))."""
    if tuple(gate.shape) != tuple(up.shape):
        raise ValueError(f"swiglu: gate of shape {tuple(gate.shape)} and up of shape {tuple(up.shape)} differ")
    if gate.dtype != up.dtype:
        raise TypeError(f"swiglu: gate has dtype {gate.dtype}, up has {up.dtype}")
    return SwiGLU.apply(gate, up)


register(SwiGLU, swiglu, (3, 4), (3, 4), name="SwiGLU")
register(SwiGLU, swiglu, (2, 3, 5), (2, 3, 5), name="SwiGLU (3-D)")
register(SwiGLU, lambda g: swiglu(g, g * 2.0), (2, 4), name="SwiGLU (gate feeds up)")
