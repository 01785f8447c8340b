"""A trained PiSSA / OLoRA adapter as an ordinary LoRA on the ORIGINAL base (PEFT's weight conversion).

PiSSA and OLoRA (lora_init.py) replace the base weight W0 by the residual W_res = W0 - s B0 A0 and train
A, B starting from A0, B0. The trained layer computes

    W_res + s B A  =  W0 + s (B A - B0 A0)  =  W0 + s' [B | -B0] [A ; A0],        s' = s,

an update of rank 2r on the original W0: A' = [A ; A0] (2r, in), B' = [B | -B0] (out, 2r), PEFT's
``subtract_mutated_init`` (peft/tuners/lora/model.py). The config keeps the scaling: r' = 2r and
lora_alpha' = 2 alpha (s = alpha / r), or sqrt(2) alpha with rsLoRA (s = alpha / sqrt(r)), as PEFT's
``save_pretrained(..., path_initial_model_for_weight_conversion=...)`` writes it, and init_lora_weights
"kaiming" (PEFT: True): nothing about it changes the base, so it records the ORIGINAL base's fingerprint and
loads onto the checkpoint the run started from, with the trained model's outputs up to float rounding.

DoRA: W' = m V / ||V||_row with V = W_res + s B A = W0 + s' B' A', the same matrix, so the trained magnitude
m carries over and the conversion is exact too. PEFT's conversion keeps only lora_A and lora_B (it drops
the magnitude, modules_to_save and trained biases); here every other tensor is kept as it is, since none of
them depends on the base being the residual.

A0 and B0 come from the layers (``LoraLinear.initial_weights``: kept since initialisation, in the model's
state_dict, so a Trainer checkpoint and ``Trainer.resume`` keep them), or, as in PEFT, from the adapter saved
right after ``get_peft_model`` (``path_initial_model_for_weight_conversion``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from minilora import backend
from minilora.hf import safetensors_io as stio
from minilora.peft import peft_format
from minilora.peft.adapter_files import detect_format, read_adapter, write_adapter
from minilora.peft.attach import AdapterError
from minilora.peft.lora import LoraConfig, LoraLinear
from minilora.peft.lora_init import changes_base
from minilora.tensor import Tensor


@dataclasses.dataclass
class ConvertedAdapter:
    """A trained PiSSA / OLoRA adapter re-expressed as a plain rank-2r LoRA on the original base, ready to save.

    It answers what the adapter writers ask of a PeftModel (``base_model``, ``peft_config``,
    ``active_adapter``, ``adapter_state``, ``base_fingerprint``), so ``save_adapter`` writes it in minilora's
    format or PEFT's.
    """

    base_model: Any
    adapter_name: str
    config: LoraConfig
    arrays: dict[str, Any]  # plain name -> array (on the model's device)
    base_fingerprint: str  # the original base's

    @property
    def active_adapter(self) -> str:
        return self.adapter_name

    @property
    def peft_config(self) -> dict[str, LoraConfig]:
        return {self.adapter_name: self.config}

    def adapter_state(self, adapter_name: str | None = None) -> dict[str, Tensor]:
        return {k: Tensor(a) for k, a in self.arrays.items()}

    def save_adapter(self, directory: str, format: str = "minilora", extra_files: dict[str, str] | None = None) -> int:
        """Write it as an ordinary LoRA adapter (atomically); returns its size on disk in bytes."""
        return write_adapter(self, directory, format=format, extra_files=extra_files)

    save_pretrained = save_adapter


def subtract_mutated_init(state: dict[str, Any], initial: dict[str, Any]) -> dict[str, Any]:
    """PEFT's name: the trained adapter ``state`` (plain name -> array) minus its ``initial`` lora_A / lora_B (same
    names) as one LoRA of twice the rank: lora_A -> [A ; A0] (2r, in), lora_B -> [B | -B0] (out, 2r).
    Every other tensor (DoRA's magnitude, biases, modules_to_save) is kept as it is."""
    out = dict(state)
    for name, init in initial.items():
        xp = backend.get_array_module(init)
        if name.endswith(".lora_A"):
            out[name] = xp.concatenate([state[name], init], axis=0)  # (2r, in): [A ; A0]
        elif name.endswith(".lora_B"):
            out[name] = xp.concatenate([state[name], -init], axis=1)  # (out, 2r): [B | -B0]
    return out


def converted_config(config: LoraConfig) -> LoraConfig:
    """The rank-2r config with the same scaling s: alpha x 2 (s = alpha/r), x sqrt(2) with rsLoRA (alpha/sqrt(r))."""
    alpha = config.lora_alpha * (2**0.5 if config.use_rslora else 2)
    return dataclasses.replace(config, r=2 * config.r, lora_alpha=alpha, init_lora_weights="kaiming")


def convert_to_lora(
    model: Any, adapter_name: str | None = None, path_initial_model_for_weight_conversion: str | None = None
) -> ConvertedAdapter:
    """Adapter ``adapter_name`` of PeftModel ``model`` (PiSSA / pissa_niter_N / OLoRA, trained) as an ordinary
    LoRA on the original base (see the module docstring). Nothing in ``model`` changes.

    A0, B0 are the layers' own (kept since initialisation), or read from
    ``path_initial_model_for_weight_conversion``: the adapter as saved right after ``get_peft_model``, before
    training (minilora's format or PEFT's), as in PEFT. A one-line ValueError (AdapterError for a folder) when
    there is nothing to convert or no initial state to convert with.
    """
    name = model.active_adapter if adapter_name is None else adapter_name
    what = f"convert_to_lora: adapter {name!r}"
    config = model.peft_config.get(name)
    if not isinstance(config, LoraConfig):
        kind = "missing" if config is None else f"a {type(config).__name__}"
        raise ValueError(f"{what} is {kind}; only a LoRA adapter initialised with PiSSA / OLoRA changes the base")
    if not changes_base(config.init_lora_weights):
        raise ValueError(f"{what} has init_lora_weights={config.init_lora_weights!r}, which leaves the base as it "
                         "is: it already applies to the original base (save it without convert_to_lora)")
    state = {k: p.data for k, p in model.adapter_state(name).items()}
    fingerprint = model.original_base_fingerprint if model.base_changed else None
    if path_initial_model_for_weight_conversion is None:
        initial = initial_state(model, name)
    else:
        initial, recorded = initial_from_folder(path_initial_model_for_weight_conversion, model.base_fingerprint,
                                                state)
        fingerprint = fingerprint or recorded
    if fingerprint is None:
        raise ValueError(f"{what}: the original base's fingerprint is unknown (the PiSSA initialisation did not "
                         "happen in this PeftModel, and the initial adapter does not record it)")
    return ConvertedAdapter(model.base_model, name, converted_config(config), subtract_mutated_init(state, initial),
                            fingerprint)


def initial_state(model: Any, name: str) -> dict[str, Any]:
    """{<path>.lora_A: A0, <path>.lora_B: B0} from the layers of adapter ``name``; ValueError if any is missing."""
    out: dict[str, Any] = {}
    missing = []
    for path, layer in model.peft_layers():
        if isinstance(layer, LoraLinear) and name in layer.settings:
            init = layer.initial_weights(name)
            if init is None:
                missing.append(path)
            else:
                out[f"{path}.lora_A"], out[f"{path}.lora_B"] = init
    if missing:
        raise ValueError(
            f"convert_to_lora: adapter {name!r} has no initial A0, B0 on {missing[0]} (it was loaded from files, not "
            "initialised in this PeftModel): pass path_initial_model_for_weight_conversion=<the adapter saved right "
            "after get_peft_model>"
        )
    return out


def initial_from_folder(directory: str, residual: str, state: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(A0, B0 by plain name, the original base's fingerprint if recorded) from an initial adapter folder.

    Its lora_A / lora_B must match the trained adapter's names and shapes; a folder minilora wrote records the
    residual base's fingerprint, which must be this model's ``residual``.
    """
    directory = str(directory)
    if detect_format(directory) == "peft":
        weights = os.path.join(directory, peft_format.WEIGHTS_NAME)
        arrays = peft_format.from_peft_tensors(stio.read_safetensors(weights), source=weights)
        meta = stio.read_metadata(weights)
        have, original = meta.get(peft_format.FINGERPRINT_KEY), meta.get(peft_format.ORIGINAL_FINGERPRINT_KEY)
    else:
        info, arrays = read_adapter(directory)
        have, original = info.get("base_fingerprint"), info.get("original_base_fingerprint")
    if have is not None and have != residual:
        raise AdapterError(f"{directory}: this initial adapter belongs to another base (its base fingerprint {have}, "
                           f"this model's {residual}): give the one saved right after this model's get_peft_model")
    initial = {k: a for k, a in arrays.items() if k.endswith((".lora_A", ".lora_B"))}
    want = {k: v for k, v in state.items() if k.endswith((".lora_A", ".lora_B"))}
    problems = [f"missing {k}" for k in sorted(set(want) - set(initial))]
    problems += [f"unexpected {k}" for k in sorted(set(initial) - set(want))]
    problems += [f"{k}: shape {tuple(a.shape)} in the file, {tuple(want[k].shape)} in the model"
                 for k, a in initial.items() if k in want and tuple(a.shape) != tuple(want[k].shape)]  # fmt: skip
    if problems:
        raise AdapterError(f"{directory}: not this adapter's initial state: " + "; ".join(problems))
    device = {k: (backend.device_of(v), v.dtype) for k, v in want.items()}
    return {k: backend.to_device(a, *device[k]) for k, a in initial.items()}, original
