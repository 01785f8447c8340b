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

import dataclasses
import math
from typing import Any, ClassVar

from minilora import backend
from minilora import functional as F  # noqa: N812
from minilora.autograd import no_grad
from minilora.nn import Linear, Module, Parameter
from minilora.nn.precision import cast, gemm_dtype
from minilora.peft.base_layer import PeftLayer
from minilora.peft.config import PeftConfig, check_choice, check_positive, check_positive_finite
from minilora.peft.lora_init import LoraInitial, changes_base, principal_init
from minilora.peft.lora_ops import (  # noqa: F401  (public here too)
    DoraLinearFn,
    LoraLinearFn,
    dora_linear,
    frozen_weight,
    lora_linear,
)
from minilora.peft.targets import is_linear
from minilora.tensor import Tensor

INITS = ("kaiming", "gaussian", "pissa", "olora")  # and "pissa_niter_<N>"


@dataclasses.dataclass
class LoraConfig(PeftConfig):
    """LoRA (Hu et al. 2021): h = W0 x + (alpha / r) B A x; DoRA with use_dora=True; QLoRA with quantize=True.

    ``target_modules=None`` takes the model family's default (``family_of(model).lora_targets``, PEFT's per
    architecture). ``init_lora_weights`` "pissa" / "pissa_niter_N" / "olora" start from W0's principal part
    and replace the base by the residual (lora_init.py). ``loraplus_lr_ratio`` (LoRA+, Hayou et al. 2024):
    the B matrices train at that multiple of the learning rate (optimizer parameter groups; loraplus.py).
    """

    peft_type: ClassVar[str] = "LORA"
    r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    target_modules: str | tuple[str, ...] | None = None
    bias: str = "none"  # "none" | "all" | "lora_only": which biases train
    use_rslora: bool = False  # scale alpha / sqrt(r) instead of alpha / r
    use_dora: bool = False
    init_lora_weights: str = "kaiming"  # "kaiming" (uniform) | "gaussian" | "pissa" | "pissa_niter_N" | "olora"
    modules_to_save: tuple[str, ...] = ()  # modules trained in full beside the adapter (e.g. a classifier head)
    quantize: bool = False  # QLoRA: store the targeted base weights as NF4 first
    quant_block_size: int = 64
    double_quant: bool = True
    loraplus_lr_ratio: float | None = None  # LoRA+: lr of B = ratio * lr (PEFT's create_loraplus_optimizer)

    def validate(self) -> None:
        check_positive(self, "r", "quant_block_size")
        check_choice(self, "bias", ("none", "all", "lora_only"))
        if self.init_lora_weights not in INITS and not changes_base(self.init_lora_weights):
            raise ValueError(f"LoraConfig.init_lora_weights must be one of {INITS} or 'pissa_niter_<N>', "
                             f"got {self.init_lora_weights!r}")  # fmt: skip
        if self.quantize and changes_base(self.init_lora_weights):
            raise ValueError(f"LoraConfig.init_lora_weights={self.init_lora_weights!r} needs the float base weights "
                             "(it replaces them by a residual): initialise on the float model, then quantise")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"LoraConfig.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.loraplus_lr_ratio is not None:
            check_positive_finite(self, "loraplus_lr_ratio")

    @property
    def scaling(self) -> float:
        return self.lora_alpha / (self.r**0.5 if self.use_rslora else self.r)


def base_weight(layer: Module, dtype: Any = None) -> Any:
    """The float weight array (out, in) of a Linear, or the dequantised weight of a Linear4bit (in ``dtype``)."""
    if isinstance(layer, Linear):
        w = layer.weight.data
        return w if dtype is None else frozen_weight(w, dtype)
    return layer.dequantize(dtype)


class LoraLinear(PeftLayer):
    """A Linear (or Linear4bit) with low-rank adapters; the active one's tensors are lora_A, lora_B (and
    lora_magnitude for DoRA; lora_initial, the frozen A0 and B0, after PiSSA / OLoRA)."""

    slot_names = ("lora_A", "lora_B", "lora_magnitude", "lora_initial")

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
        """Create adapter ``name``: A random, B zeros (and m = ||W0||_row for DoRA), on the base's device;
        PiSSA / OLoRA: A and B from W0, and the base weight replaced by the residual (lora_init.py)."""
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
            slots["lora_magnitude"] = Parameter(_row_norm(w0))  # (out,): ||W0||, = ||W_res + s B A|| after PiSSA too
        if changes_base(config.init_lora_weights):
            if self.quantized:
                raise ValueError(f"LoraConfig.init_lora_weights={config.init_lora_weights!r}: the base layer is "
                                 "NF4-quantised; initialise on the float model, then quantise the residual")
            a0, b0, residual = principal_init(w0, r, config.scaling, config.init_lora_weights)
            slots["lora_A"], slots["lora_B"] = Parameter(a0), Parameter(b0)  # (r, in), (out, r)
            slots["lora_initial"] = LoraInitial(a0, b0)  # A0, B0 kept (frozen) for lora_convert.py
            stored = self.base_layer.weight.dtype  # a 16-bit base keeps its dtype (the residual rounded to it)
            self.base_layer.weight.data = residual.astype(stored, copy=False)  # a new array: W_res = W0 - s B A
        settings = {"r": r, "scaling": config.scaling, "dropout": config.lora_dropout, "use_dora": config.use_dora}
        self._register_slots(name, slots, settings, activate)

    def initial_weights(self, name: str) -> tuple[Any, Any] | None:
        """(A0 (r, in), B0 (out, r)) of adapter ``name`` as PiSSA / OLoRA initialised it; None for another init,
        or for an adapter loaded from files (its initial state was not saved with it)."""
        initial = self.adapter_slots(name).get("lora_initial")
        return None if initial is None else (initial.lora_A, initial.lora_B)

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

    def unloaded(self, merge: bool) -> Module:
        return self.merged_linear() if merge else super().unloaded(False)

    def extra_repr(self) -> str:
        cfg = self.settings.get(self.active_adapter or "", {})
        return f"active={self.active_adapter!r}, r={cfg.get('r')}, dora={cfg.get('use_dora')}"


def _row_norm(w: Any) -> Any:
    """The L2 norm of every row of a (out, in) array, shape (out,)."""
    xp = backend.get_array_module(w)
    return xp.sqrt((w * w).sum(axis=1))
