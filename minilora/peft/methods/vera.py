"""VeRA (Kopiczko et al. 2024): one pair of frozen random matrices shared by every layer, two vectors per layer.

    A (r, in_max), B (out_max, r)        frozen, random, shared by all adapted layers (kaiming-uniform)
    d (r,) = d_initial,  b (out,) = 0    trained, per layer (PEFT's vera_lambda_d, vera_lambda_b)
    h = W0 x + b ⊙ (B[:out] (d ⊙ (A[:, :in] x)))

A layer with in features and out features uses the first ``in`` columns of A and the first ``out``
rows of B, exactly as PEFT's peft/tuners/vera/layer.py slices them; b = 0 makes h = W0 x at step 0.
VeRA trains r + out numbers per layer where LoRA trains r (in + out).

The projections are created once per adapter by the ``prepare`` hook (PeftModel.shared) and saved with
the adapter (PEFT's ``save_projection=True``), so an adapter trained in PEFT loads here with the same
outputs and back. They are drawn from a NumPy generator seeded with ``projection_prng_key``: the same
key gives the same projections in minilora, not PEFT's torch numbers (the saved projections carry them).
Docs: docs/methods/vera.md.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

from minilora import backend
from minilora import functional as F  # noqa: N812
from minilora.autograd import Function
from minilora.gradcheck_cases import register as register_case
from minilora.models import family_of
from minilora.nn import Linear, Module, Parameter
from minilora.nn.precision import cast, gemm_dtype
from minilora.ops.linear import check_same_dtype
from minilora.peft.base_layer import PeftLayer, trained_dtype
from minilora.peft.config import PeftConfig, check_choice, check_positive
from minilora.peft.lora_ops import frozen_weight
from minilora.peft.peft_format import PREFIX, PeftFormatError, conv1d_layout, peft_target_modules, task_type
from minilora.peft.registry import TARGETS_HELP, Method, Option, Variant, parse_targets, register
from minilora.peft.targets import candidate_modules, is_linear, match_targets
from minilora.tensor import Tensor


@dataclasses.dataclass
class VeraConfig(PeftConfig):
    """VeRA: h = W0 x + b ⊙ (B (d ⊙ (A x))) with A, B frozen, random and shared (PEFT's VeraConfig fields)."""

    peft_type: ClassVar[str] = "VERA"
    r: int = 256  # PEFT's default: the shared projections can be wide, they cost nothing to train
    target_modules: str | tuple[str, ...] | None = None  # None: the model family's (LoRA's) default
    projection_prng_key: int = 0
    save_projection: bool = True
    vera_dropout: float = 0.0
    d_initial: float = 0.1
    bias: str = "none"  # "none" | "all" | "vera_only": which biases train
    modules_to_save: tuple[str, ...] = ()

    def validate(self) -> None:
        check_positive(self, "r")
        check_choice(self, "bias", ("none", "all", "vera_only"))
        if not 0.0 <= self.vera_dropout < 1.0:
            raise ValueError(f"VeraConfig.vera_dropout must be in [0, 1), got {self.vera_dropout}")
        if not math.isfinite(self.d_initial):
            raise ValueError(f"VeraConfig.d_initial must be finite, got {self.d_initial}")
        if not self.save_projection:
            raise ValueError("VeraConfig.save_projection=False is not supported: minilora draws the projections "
                             "with NumPy, not PEFT's torch generator, so they must travel with the adapter")


# ----------------------------------------------------------------------------- the fused op
class VeraLinearFn(Function):
    """y = x W0^T + bias + b ⊙ z,  z = ((h A^T) ⊙ d) B^T,  A (r, in) and B (out, r) constants (no gradient).

    With x2, h2 (N, in), g2 = g_y (N, out), ha = h2 A^T (N, r), z (N, out):
    g_b = sum_n g2 ⊙ z,  g_z = g2 ⊙ b,  g_hd = g_z B (N, r),  g_d = sum_n g_hd ⊙ ha,  g_h = (g_hd ⊙ d) A,
    g_x = g2 W0,  g_bias = sum_n g2.  W0, A and B get no gradient.
    """

    def __init__(self, weight: Any, proj_a: Any, proj_b: Any, has_bias: bool) -> None:
        self.weight, self.a, self.b_proj, self.has_bias = weight, proj_a, proj_b, has_bias

    def forward(self, x: Any, h: Any, d: Any, b: Any, *maybe_bias: Any) -> Any:
        bias = maybe_bias[0] if maybe_bias else None
        w = frozen_weight(self.weight, x.dtype)
        a, bp = self.a, self.b_proj
        out_f, in_f = w.shape
        if a.shape != (d.shape[0], in_f) or bp.shape != (out_f, d.shape[0]) or b.shape != (out_f,) \
                or x.shape[-1] != in_f or h.shape != x.shape:  # fmt: skip
            raise ValueError(f"vera_linear: shapes do not fit: x {tuple(x.shape)}, W0 {tuple(w.shape)}, "
                             f"A {tuple(a.shape)}, B {tuple(bp.shape)}, d {tuple(d.shape)}, b {tuple(b.shape)} "
                             "(W0 (out, in), A (r, in), B (out, r), d (r,), b (out,))")  # fmt: skip
        check_same_dtype("vera_linear", x=x, h=h, W0=w, A=a, B=bp, d=d, b=b, bias=bias)
        self.x_shape = x.shape
        x2, h2 = x.reshape(-1, in_f), h.reshape(-1, in_f)  # (N, in)
        ha = h2 @ a.T  # (N, r)
        z = (ha * d) @ bp.T  # (N, out)
        y = x2 @ w.T  # (N, out)
        y += b * z
        if bias is not None:
            y += bias
        g_x, g_h, g_d, g_b = self.needs_input_grad[:4]
        self.save_for_backward(ha if g_d else None, z if g_b else None, d, b)
        return y.reshape(*x.shape[:-1], out_f)

    def backward(self, g_y: Any) -> tuple[Any, ...]:
        ha, z, d, b = self.saved
        need = self.needs_input_grad
        g2 = g_y.reshape(-1, g_y.shape[-1])  # (N, out)
        g_b = (g2 * z).sum(axis=0) if need[3] else None  # (out,)
        g_hd = (g2 * b) @ self.b_proj  # (N, r)
        g_d = (g_hd * ha).sum(axis=0) if need[2] else None  # (r,)
        g_h = ((g_hd * d) @ self.a).reshape(self.x_shape) if need[1] else None  # (N, in)
        g_x = (g2 @ frozen_weight(self.weight, g_y.dtype)).reshape(self.x_shape) if need[0] else None
        grads = (g_x, g_h, g_d, g_b)
        if self.has_bias:
            grads += (g2.sum(axis=0) if need[4] else None,)
        return grads


def vera_linear(x: Tensor, h: Tensor, weight: Any, proj_a: Any, proj_b: Any, d: Tensor, b: Tensor,
                bias: Tensor | None = None) -> Tensor:
    """VeRA's layer as one fused op (see VeraLinearFn); W0, A (r, in) and B (out, r) are frozen arrays."""
    extra = (bias,) if bias is not None else ()
    return VeraLinearFn.apply(x, h, d, b, *extra, weight=weight, proj_a=proj_a, proj_b=proj_b,
                              has_bias=bias is not None)  # fmt: skip


def _case_const(x: Tensor, *shape: int, phase: float = 0.3) -> Any:
    xp, n = x.xp, int(np.prod(shape))
    return xp.sin(xp.arange(n, dtype=x.dtype) * 1.3 + phase).reshape(shape)


def _case(x: Tensor, h: Tensor, d: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    r, out_f = d.shape[0], b.shape[0]
    w, a, bp = _case_const(x, out_f, x.shape[-1]), _case_const(x, r, x.shape[-1], phase=1.0), \
        _case_const(x, out_f, r, phase=2.0)  # fmt: skip
    return vera_linear(x, h, w, a, bp, d, b, bias)


register_case(VeraLinearFn, _case, (2, 3, 4), (2, 3, 4), (3,), (5,), (5,), name="VeraLinearFn")
register_case(VeraLinearFn, lambda x, d, b: _case(x, x, d, b), (3, 4), (6,), (2,),
              name="VeraLinearFn (h = x, no bias, r > out)")


# ----------------------------------------------------------------------------- shared projections, layer
class VeraProjections(Module):
    """The frozen shared A (r, in_max) and B (out_max, r): kaiming-uniform as PEFT's ``_kaiming_init``
    (gain sqrt(2), bound sqrt(6 / fan_in), fan_in = the second dimension), from ``projection_prng_key``."""

    def __init__(self, r: int, in_max: int, out_max: int, key: int, device: str, dtype: Any) -> None:
        super().__init__()
        rng = np.random.default_rng(key)  # host: the projections are drawn once, then moved to the device
        a = rng.uniform(-math.sqrt(6 / in_max), math.sqrt(6 / in_max), (r, in_max))
        b = rng.uniform(-math.sqrt(6 / r), math.sqrt(6 / r), (out_max, r))
        self.vera_A = Parameter(backend.to_device(a, device, dtype), requires_grad=False)  # (r, in_max)
        self.vera_B = Parameter(backend.to_device(b, device, dtype), requires_grad=False)  # (out_max, r)


class VeraLinear(PeftLayer):
    """A Linear (or Linear4bit) with VeRA adapters; the active one's vectors are vera_lambda_d, vera_lambda_b."""

    slot_names = ("vera_lambda_d", "vera_lambda_b")

    def __init__(self, base_layer: Module) -> None:
        if not is_linear(base_layer):
            raise TypeError(f"VeraLinear: expected a Linear or Linear4bit to wrap, got {type(base_layer).__name__}")
        super().__init__(base_layer)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features

    @property
    def quantized(self) -> bool:
        return not isinstance(self.base_layer, Linear)

    def add_adapter(self, name: str, config: VeraConfig, projections: VeraProjections, activate: bool) -> None:
        xp, dtype = backend.module_for(self.base_device()), self.adapter_dtype()
        slots = {"vera_lambda_d": Parameter(xp.full((config.r,), config.d_initial, dtype=dtype)),  # (r,)
                 "vera_lambda_b": Parameter(xp.zeros((self.out_features,), dtype=dtype))}  # (out,)
        settings = {"dropout": config.vera_dropout, "projections": projections}  # not registered here: shared
        self._register_slots(name, slots, settings, activate)

    def _sliced(self, dtype: Any) -> tuple[Any, Any]:
        proj = self.settings[self.active_adapter]["projections"]
        a = proj.vera_A.data[:, : self.in_features]  # (r, in)
        b = proj.vera_B.data[: self.out_features, :]  # (out, r)
        return frozen_weight(a, dtype), frozen_weight(b, dtype)

    def forward(self, x: Tensor) -> Tensor:
        if not self.has_active or self.merged:
            return self.base_layer(x)  # (..., out)
        p = self.settings[self.active_adapter]["dropout"]
        h = F.dropout(x, p, self.training) if p > 0 else x
        base = self.base_layer
        if not self.quantized and base.weight.requires_grad:
            raise NotImplementedError("VeraLinear: the base weight was unfrozen by hand; VeRA trains only d and b")
        dt = gemm_dtype(x)
        xc, hc = cast(x, dt), (cast(x, dt) if h is x else cast(h, dt))
        a, b = self._sliced(dt)
        w0 = base.quantized_weight() if self.quantized else base.weight.data  # frozen: a constant of the op
        y = vera_linear(xc, hc, w0, a, b, cast(self.vera_lambda_d, dt), cast(self.vera_lambda_b, dt),
                        cast(base.bias, dt))  # fmt: skip
        return cast(y, x.dtype)  # (..., out)

    def delta_weight(self) -> Any:
        """(b ⊙ B[:out]) (d ⊙ A[:, :in]), shape (out, in): what merging adds to W0."""
        a, b = self._sliced(self.vera_lambda_d.dtype)
        return (self.vera_lambda_b.data[:, None] * b) @ (self.vera_lambda_d.data[:, None] * a)

    def merge_deltas(self) -> dict[str, Any]:
        if self.quantized:
            raise NotImplementedError("VeraLinear.merge: the base weight is NF4-quantised and cannot be updated in "
                                      "place")  # fmt: skip
        return {"weight": self.delta_weight()}


# ----------------------------------------------------------------------------- the registry's hooks
def _targets(peft: Any, config: VeraConfig) -> list[str]:
    targets = config.target_modules if config.target_modules is not None else family_of(peft.base_model).lora_targets
    return match_targets(peft.base_model, targets, method="VeRA")


def prepare(peft: Any, adapter_name: str, config: VeraConfig) -> None:
    """The shared projections: sized to the widest targeted layer (or an earlier VeRA adapter's, if they fit)."""
    layers = [peft.base_model.get_submodule(p) for p in _targets(peft, config)]
    in_max, out_max = max(m.in_features for m in layers), max(m.out_features for m in layers)
    others = [n for n in peft.peft_config if n != adapter_name and n in peft.shared]
    if others:
        first = peft.peft_config[others[0]]
        proj = peft.shared[others[0]]
        (r0, have_in), (have_out, _) = proj.vera_A.shape, proj.vera_B.shape
        if first.projection_prng_key != config.projection_prng_key:
            raise ValueError(f"VeraConfig.projection_prng_key={config.projection_prng_key} differs from adapter "
                             f"{others[0]!r}'s {first.projection_prng_key}; every VeRA adapter shares the projections")
        if config.r > r0 or in_max > have_in or out_max > have_out:
            raise ValueError(f"VeraConfig: the shared projections A {tuple(proj.vera_A.shape)} and B "
                             f"{tuple(proj.vera_B.shape)} of adapter {others[0]!r} cannot serve r={config.r} on layers "
                             f"up to {in_max} in / {out_max} out features; add the widest adapter first")
    base = peft.base_model
    peft.add_shared(adapter_name, VeraProjections(config.r, in_max, out_max, config.projection_prng_key, base.device,
                                                  trained_dtype(base.dtype)))


def inject(peft: Any, adapter_name: str, config: VeraConfig, activate: bool) -> list[str]:
    """Wrap every targeted Linear in a VeraLinear reading the adapter's shared projections."""
    paths = _targets(peft, config)
    if config.target_modules is None:  # the family's default, recorded in the saved config
        peft.peft_config[adapter_name] = dataclasses.replace(config, target_modules=family_of(
            peft.base_model).lora_targets)
    projections = peft.shared[adapter_name]
    for path in paths:
        peft.wrap(path, VeraLinear).add_adapter(adapter_name, config, projections, activate)
    if config.bias == "none":
        return []
    return peft.unfreeze_biases(paths if config.bias == "vera_only" else None)


class VeraExchange:
    """VeRA adapters <-> PEFT's VeraConfig and tensors (``<path>.vera_lambda_b/d``, ``base_model.vera_A/B``)."""

    FIELDS = ("r", "projection_prng_key", "save_projection", "vera_dropout", "d_initial", "bias")

    @staticmethod
    def to_peft(model: Any, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = model.peft_config[name]
        state = {k: backend.to_host(p.data) for k, p in model.adapter_state(name).items()}  # host: writing a file
        paths = [k.rpartition(".")[0] for k in state if k.endswith(".vera_lambda_b")]
        tensors = {}
        for k, a in state.items():
            key = "base_model." + k.removeprefix("shared.") if k.startswith("shared.") else PREFIX + k
            tensors[key] = np.ascontiguousarray(a, dtype=np.float32)
        base = model.base_model
        hf = {f: getattr(config, f) for f in VeraExchange.FIELDS}
        hf.update(peft_type="VERA", task_type=task_type(base), fan_in_fan_out=conv1d_layout(base, paths),
                  init_weights=True,
                  target_modules=peft_target_modules(paths, [n for n, _ in candidate_modules(base)]),
                  modules_to_save=None, layers_pattern=None, layers_to_transform=None, inference_mode=True,
                  base_model_name_or_path=getattr(base, "name_or_path", None), revision=None)  # fmt: skip
        return hf, tensors

    @staticmethod
    def from_peft(d: dict[str, Any], raw: dict[str, np.ndarray], source: str) -> tuple[VeraConfig, dict[str, Any]]:
        state, problems = {}, []
        for key, a in raw.items():
            if a.dtype.kind != "f":
                problems.append(f"{key}: dtype {a.dtype} (adapter tensors must be floating point)")
            elif key in ("base_model.vera_A", "base_model.vera_B"):
                state["shared." + key.rpartition(".")[2]] = a
            elif key.startswith(PREFIX) and key.endswith((".vera_lambda_b", ".vera_lambda_d")):
                state[key[len(PREFIX):]] = a
            else:
                problems.append(f"{key}: not a VeRA tensor minilora knows")
        if "shared.vera_A" not in state or "shared.vera_B" not in state:
            problems.append("no base_model.vera_A / vera_B: save the adapter with save_projection=True")
        for key in ("layers_to_transform", "layers_pattern", "modules_to_save"):
            if d.get(key) not in (None, [], {}):
                problems.append(f"{key}={d[key]!r} is not supported by minilora")
        if problems:
            raise PeftFormatError(f"{source}: " + "; ".join(problems))
        paths = sorted({k.rpartition(".")[0] for k in state if not k.startswith("shared.")})
        try:
            config = VeraConfig(target_modules=tuple(paths), **{f: d[f] for f in VeraExchange.FIELDS if f in d})
        except (TypeError, ValueError) as exc:
            raise PeftFormatError(f"{source}: {exc}") from None
        return config, state


register(Method(
    VeraConfig, inject, prepare=prepare, exchange=VeraExchange, mergeable=True, order=20,
    variants=(Variant("vera", 1e-1, "shared frozen random A, B; per-layer trained vectors d (r) and b (out)"),),
    docs="docs/methods/vera.md",
    options=(
        Option(("--rank",), "r", "rank r (LoRA default 8, VeRA 256)", int),
        Option(("--targets",), "target_modules", TARGETS_HELP, parse_targets),
        Option(("--vera-d-initial",), "d_initial", "VeRA: the initial value of every d (default 0.1)", float),
        Option(("--vera-seed",), "projection_prng_key", "VeRA: the seed of the shared projections (default 0)", int),
    ),
))  # fmt: skip
