"""LoRA (Hu et al. 2021), rsLoRA (Kalajdzievski 2023) and DoRA (Liu et al. 2024) on a Linear layer.

LoRA:   h = W0 x + b + s * B A x,  A (r, in), B (out, r), s = alpha / r  (rsLoRA: s = alpha / sqrt(r)).
        A starts random (kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)), as PEFT;
        or N(0, 1/r^2) for "gaussian"), B starts at zero, so h equals the base output at initialisation.
        Dropout acts on the LoRA branch's input only. W0 is frozen: the fused linear op then computes no
        g_W0 GEMM and does not even save x for it, which is where LoRA's speed comes from.

DoRA:   W' = m * V / ||V||_row  with  V = W0 + s B A,  ||V||_row the L2 norm of each output row (out,),
        m (out,) initialised to ||W0||_row so W' = W0 at initialisation. The norm is treated as a constant
        in backward, as the paper does (section 4.3): g_m, g_A, g_B are those of the function with ||V||
        held fixed. Computed without forming W' x as a new GEMM with a weight gradient:
            h = base(x) + (m/||V|| - 1) * (W0 x) + (m/||V||) * s * B A x
        so W0 stays frozen and only m's elementwise gradient and the low-rank branch's are computed.

LoRA (on a float or an NF4 base) runs as ONE fused op (LoraLinearFn below): the branch's (..., out) output
and the sum are never separate graph tensors, so LoRA keeps no more activations alive than the plain layer
plus h A^T; DoRA likewise (DoraLinearFn). Only a base weight that was unfrozen by hand takes the composed path
(existing ops: linear, mul, add, each with a hand-written backward).
"""

from __future__ import annotations

import math
from typing import Any

from minilora import backend
from minilora import functional as F  # noqa: N812
from minilora.autograd import Function, no_grad
from minilora.gradcheck_cases import register
from minilora.nn import Linear, Module, Parameter
from minilora.nn.precision import cast, gemm_dtype
from minilora.ops.linear import check_same_dtype
from minilora.peft.base_layer import PeftLayer
from minilora.peft.config import LoraConfig
from minilora.tensor import Tensor


def is_linear(module: Module) -> bool:
    """A layer LoRA can wrap: a Linear or an NF4-quantised Linear4bit."""
    return isinstance(module, Linear) or type(module).__name__ == "Linear4bit"


def base_weight(layer: Module, dtype: Any = None) -> Any:
    """The float weight array (out, in) of a Linear, or the dequantised weight of a Linear4bit (in ``dtype``)."""
    if isinstance(layer, Linear):
        w = layer.weight.data
        return w if dtype is None else frozen_weight(w, dtype)
    return layer.dequantize(dtype)


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


class LoraLinear(PeftLayer):
    """A Linear (or Linear4bit) with low-rank adapters; the active one's tensors are lora_A, lora_B (and
    lora_magnitude for DoRA)."""

    slot_names = ("lora_A", "lora_B", "lora_magnitude")

    def __init__(self, base_layer: Module) -> None:
        if not is_linear(base_layer):
            raise TypeError(f"LoraLinear: expected a Linear or Linear4bit to wrap, got {type(base_layer).__name__}")
        super().__init__(base_layer)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.dora_fixed_norm: Any = None  # tests: hold DoRA's ||V|| at this array (the function backward sees)

    @property
    def quantized(self) -> bool:
        return not isinstance(self.base_layer, Linear)

    def add_adapter(self, name: str, config: LoraConfig, activate: bool = False) -> None:
        """Create adapter ``name``: A random, B zeros (and m = ||W0||_row for DoRA), on the base's device."""
        r, fan_in = config.r, self.in_features
        rng = backend.host_rng()
        if config.init_lora_weights == "gaussian":
            a = rng.normal(0.0, 1.0 / r, size=(r, fan_in))
        else:  # kaiming_uniform_(a=sqrt(5)) as PEFT: gain sqrt(2/(1+5)), bound = gain * sqrt(3/fan_in) = 1/sqrt(fan_in)
            bound = 1.0 / math.sqrt(fan_in)
            a = rng.uniform(-bound, bound, size=(r, fan_in))
        dtype = self.adapter_dtype()  # the base's compute dtype; float32 over a 16-bit or NF4 base
        w0 = base_weight(self.base_layer, dtype)
        xp, device = backend.get_array_module(w0), self.base_device()
        slots: dict[str, Any] = {
            "lora_A": Parameter(backend.to_device(a, device, dtype)),  # (r, in)
            "lora_B": Parameter(xp.zeros((self.out_features, r), dtype=dtype)),  # (out, r)
        }
        if config.use_dora:
            slots["lora_magnitude"] = Parameter(_row_norm(w0))  # (out,)
        settings = {"r": r, "scaling": config.scaling, "dropout": config.lora_dropout, "use_dora": config.use_dora}
        self._register_slots(name, slots, settings, activate)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        if not self.has_active or self.merged:
            return self.base_layer(x)  # (..., out): W0 x + b
        cfg = self.settings[self.active_adapter]
        h = F.dropout(x, cfg["dropout"], self.training) if cfg["dropout"] > 0 else x
        base = self.base_layer
        if self.quantized or not base.weight.requires_grad:  # the fused ops: W0 is a constant, upcast inside
            dt = gemm_dtype(x)  # x's (float32), or autocast's 16 bits
            xc, a, b, bias = cast(x, dt), cast(self.lora_A, dt), cast(self.lora_B, dt), cast(base.bias, dt)
            hc = xc if h is x else cast(h, dt)
            w0 = base.quantized_weight() if self.quantized else base.weight.data  # frozen: a constant of the op
            if not cfg["use_dora"]:
                return cast(lora_linear(xc, hc, w0, a, b, cfg["scaling"], bias), x.dtype)  # (..., out)
            norm = frozen_weight(self._dora_norm(), dt)
            y = dora_linear(xc, hc, w0, norm, a, b, cast(self.lora_magnitude, dt), cfg["scaling"], bias)
            return cast(y, x.dtype)  # (..., out)
        # an unfrozen base weight (not PEFT's usual set-up): compose ops so W0 gets its gradient too
        y = base(x)  # (..., out)
        lora = F.linear(F.linear(h, self.lora_A), self.lora_B) * cfg["scaling"]  # (..., r) -> (..., out)
        if not cfg["use_dora"]:
            return y + lora
        scale = self.lora_magnitude / Tensor(self._dora_norm())  # (out,) m / ||V||_row, norm detached
        w0x = y - base.bias if base.bias is not None else y  # (..., out)
        return y + (scale - 1.0) * w0x + scale * lora

    def _dora_norm(self) -> Any:
        """||W0 + s B A||_row as a plain array (no graph: the norm is a constant in backward)."""
        if self.dora_fixed_norm is not None:
            return self.dora_fixed_norm
        cfg = self.settings[self.active_adapter]
        with no_grad():
            v = base_weight(self.base_layer, self.lora_A.dtype) + cfg["scaling"] * (self.lora_B.data @ self.lora_A.data)
        return _row_norm(v)

    # ------------------------------------------------------------------ merging
    def delta_weight(self) -> Any:
        """The weight the active adapter adds: s B A (LoRA) or m V/||V|| - W0 (DoRA), shape (out, in)."""
        cfg = self.settings[self.active_adapter]
        w0 = base_weight(self.base_layer, self.lora_A.dtype)
        delta = cfg["scaling"] * (self.lora_B.data @ self.lora_A.data)  # (out, in)
        if cfg["use_dora"]:
            v = w0 + delta
            delta = (self.lora_magnitude.data / _row_norm(v))[:, None] * v - w0
        return delta.astype(w0.dtype)

    def merge_deltas(self) -> dict[str, Any]:
        if self.quantized:
            raise NotImplementedError(
                "LoraLinear.merge: the base weight is NF4-quantised and cannot be updated in place; "
                "use merge_and_unload(), which returns float Linear layers"
            )
        return {"weight": self.delta_weight()}

    def merged_linear(self) -> Linear:
        """A plain Linear holding W0 + delta (the base layer itself when it is a float Linear, merged in place)."""
        if not self.quantized:
            if self.has_active:
                self.merge()
            self._merged = None  # the Linear leaves this wrapper for good
            return self.base_layer
        q = self.base_layer
        lin = Linear(self.in_features, self.out_features, bias=q.bias is not None)
        w = q.dequantize(self.base_layer.dtype)
        if self.has_active:
            w = w + self.delta_weight()
        lin.weight = Parameter(w, requires_grad=False)
        if q.bias is not None:
            lin.bias = Parameter(q.bias.data.copy(), requires_grad=False)
        return lin

    def extra_repr(self) -> str:
        cfg = self.settings.get(self.active_adapter or "", {})
        return f"active={self.active_adapter!r}, r={cfg.get('r')}, dora={cfg.get('use_dora')}"


def _row_norm(w: Any) -> Any:
    """The L2 norm of every row of a (out, in) array, shape (out,)."""
    xp = backend.get_array_module(w)
    return xp.sqrt((w * w).sum(axis=1))
