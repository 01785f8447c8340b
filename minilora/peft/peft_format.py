"""Adapters in Hugging Face PEFT's on-disk format, both ways (see docs/interop.md): LoRA here, VeRA beside it.

A PEFT LoRA adapter is a folder with two files:

- ``adapter_config.json``: PEFT's LoraConfig (peft_type "LORA", task_type, r, lora_alpha,
  lora_dropout, target_modules, fan_in_fan_out, bias, use_rslora, use_dora, ...);
- ``adapter_model.safetensors``: the adapter's tensors, named as PEFT's
  ``get_peft_model_state_dict`` names them. In the PyTorch model they are
  ``base_model.model.<module path>.lora_A.<adapter>.weight``; PEFT drops the adapter
  name when saving, so the file holds, for GPT-2,

      base_model.model.transformer.h.0.attn.c_attn.lora_A.weight   (r, in_features)
      base_model.model.transformer.h.0.attn.c_attn.lora_B.weight   (out_features, r)
      base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector   (out_features,)  [DoRA]
      base_model.model.transformer.h.0.attn.c_attn.base_layer.bias         [bias="all"/"lora_only"]
      base_model.model.transformer.h.0.ln_1.bias                           [bias="all"]
      base_model.model.score.weight                                        [modules_to_save=["score"]]

  lora_A and lora_B are torch.nn.Linear layers, so their weights are (r, in) and (out, r)
  whatever the base layer is. Some families' projections are Conv1D layers in transformers
  (GPT-2's, the registry's ``hf_conv1d``), which store their own weight as (in, out);
  Llama's are nn.Linear. ``fan_in_fan_out: true`` tells PEFT to transpose the
  product B A when merging into such a weight. It does not change how A and B are
  stored, so minilora's A (r, in) and B (out, r) are written as they are.

minilora's parameter names are transformers' (transformer.h.0.attn.c_attn.lora_A for GPT-2,
model.layers.0.self_attn.q_proj.lora_A for Llama), so the mapping is the prefix
``base_model.model.`` and the ``.weight`` suffix.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from minilora import backend
from minilora.hf import safetensors_io as stio
from minilora.io import atomic_folder, resolve_folder
from minilora.models import family_of
from minilora.peft.lora import LoraConfig
from minilora.peft.registry import method_of, methods
from minilora.peft.targets import candidate_modules

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PREFIX = "base_model.model."
FINGERPRINT_KEY = "minilora_base_fingerprint"  # safetensors metadata; PEFT ignores it
ORIGINAL_FINGERPRINT_KEY = "minilora_original_base_fingerprint"  # PiSSA / OLoRA: the base before the residual
TASK_TYPES = (None, "CAUSAL_LM", "SEQ_CLS")
# PEFT options that change what the tensors mean, with the values minilora computes
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "rank_pattern": (None, {}),
    "alpha_pattern": (None, {}),
    "lora_bias": (None, False),
    "use_qalora": (None, False),
    "layer_replication": (None, []),
    "trainable_token_indices": (None, [], {}),
    "target_parameters": (None, []),
    "alora_invocation_tokens": (None, []),
    "megatron_config": (None,),
    "use_bdlora": (None, False),
}
PEFT_INIT: dict[str, Any] = {"kaiming": True}  # minilora's init name -> PEFT's ("gaussian", "pissa", ... are the same)
INITS_CHANGING_THE_BASE = ("pissa", "olora", "corda", "eva", "loftq")  # the adapter only fits the base PEFT modified


class PeftFormatError(ValueError):
    """A PEFT adapter folder minilora cannot represent: the message names the file, key and value."""


# ----------------------------------------------------------------------------- names
def to_peft_tensors(state: dict[str, Any], lora_paths: set[str]) -> dict[str, np.ndarray]:
    """minilora adapter state (plain names, host arrays) -> PEFT's keys (see the module docstring)."""
    out: dict[str, np.ndarray] = {}
    for name, a in state.items():
        path, _, leaf = name.rpartition(".")
        if leaf in ("lora_A", "lora_B"):
            key = f"{PREFIX}{path}.{leaf}.weight"
        elif leaf == "lora_magnitude":
            key = f"{PREFIX}{path}.lora_magnitude_vector"
        elif ".modules_to_save." in name:  # newer PEFT writes a module to save under its own path
            key = PREFIX + name.replace(".modules_to_save.", ".", 1)
        elif leaf == "bias":
            key = f"{PREFIX}{path}.base_layer.bias" if path in lora_paths else PREFIX + name
        else:
            raise PeftFormatError(f"save_adapter(format='peft'): no PEFT name for the adapter tensor {name}")
        out[key] = np.ascontiguousarray(a, dtype=np.float32)
    return out


def from_peft_tensors(
    tensors: dict[str, np.ndarray], modules_to_save: tuple[str, ...] = (), source: str = WEIGHTS_NAME
) -> dict[str, np.ndarray]:
    """PEFT's keys -> minilora adapter state (plain names); every key that cannot be placed is named."""
    out: dict[str, np.ndarray] = {}
    problems = []
    for key, a in tensors.items():
        if a.dtype.kind != "f":
            problems.append(f"{key}: dtype {a.dtype} (adapter tensors must be floating point; they would be truncated)")
            continue
        if not key.startswith(PREFIX):
            problems.append(f"{key}: expected the prefix {PREFIX!r}")
            continue
        name = key[len(PREFIX) :]
        if m := re.fullmatch(r"(.+)\.(lora_A|lora_B)\.weight", name):
            out[f"{m[1]}.{m[2]}"] = a
        elif name.endswith(".lora_magnitude_vector"):
            out[name[: -len("_vector")]] = a
        elif name.endswith(".base_layer.bias"):
            out[name.replace(".base_layer.bias", ".bias")] = a
        elif ".modules_to_save." in name:  # older PEFT: <path>.modules_to_save.<param>
            out[name] = a
        elif re.search(r"\.lora_embedding_[AB]$|\.lora_B\.bias$|\.lora_[AB]\.\w+\.weight$", name):
            problems.append(f"{key}: not supported (LoRA on embeddings, lora_bias, or a key still holding an "
                            "adapter name)")  # fmt: skip
        elif (path := _save_path(name, modules_to_save)) is not None:
            out[f"{path}.modules_to_save.{name[len(path) + 1 :]}"] = a
        elif name.endswith(".bias"):
            out[name] = a  # a trained bias of a module without LoRA (bias="all")
        else:
            problems.append(f"{key}: not a LoRA tensor minilora knows")
    if problems:
        raise PeftFormatError(f"{source}: {len(problems)} key(s) cannot be loaded:\n  " + "\n  ".join(problems))
    return out


def _save_path(name: str, modules_to_save: tuple[str, ...]) -> str | None:
    """The module path of ``name`` when that module is listed in modules_to_save (as a name or a dotted suffix)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        path = ".".join(parts[:i])
        if any(path == e or path.endswith("." + e) for e in modules_to_save):
            return path
    return None


def peft_target_modules(lora_paths: list[str], module_names: list[str]) -> list[str]:
    """The shortest target_modules list that selects exactly ``lora_paths`` under PEFT's rule.

    PEFT matches a list entry against a module path exactly or as a dotted suffix; for each
    adapted path the shortest suffix whose matches are all adapted is kept ("c_attn" rather than
    every "transformer.h.N.attn.c_attn", "attn.c_proj" when mlp.c_proj is not adapted).
    """
    chosen: list[str] = []
    adapted = set(lora_paths)
    for path in lora_paths:
        parts = path.split(".")
        for i in range(len(parts) - 1, -1, -1):
            suffix = ".".join(parts[i:])
            if all(n in adapted for n in module_names if n == suffix or n.endswith("." + suffix)):
                if suffix not in chosen:
                    chosen.append(suffix)
                break
    return sorted(chosen)


# ----------------------------------------------------------------------------- configs
def _json_number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x  # host: a Python config value; 16.0 -> 16 as PEFT writes it


def to_peft_config(
    config: LoraConfig,
    target_modules: list[str],
    modules_to_save: list[str],
    fan_in_fan_out: bool,
    task_type: str,
    base_model_name_or_path: str | None,
) -> dict[str, Any]:
    """adapter_config.json as PEFT's LoraConfig.save_pretrained writes it (fields every PEFT >= 0.10 reads)."""
    return {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": base_model_name_or_path,
        "bias": config.bias,
        "fan_in_fan_out": fan_in_fan_out,
        "inference_mode": True,
        "init_lora_weights": PEFT_INIT.get(config.init_lora_weights, config.init_lora_weights),
        "layer_replication": None,
        "layers_pattern": None,
        "layers_to_transform": None,
        "loftq_config": {},
        "lora_alpha": _json_number(config.lora_alpha),
        "lora_dropout": config.lora_dropout,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": modules_to_save or None,
        "peft_type": "LORA",
        "r": config.r,
        "rank_pattern": {},
        "revision": None,
        "target_modules": target_modules,
        "task_type": task_type,
        "use_dora": config.use_dora,
        "use_rslora": config.use_rslora,
    }


def from_peft_config(d: dict[str, Any], lora_paths: list[str], source: str = CONFIG_NAME) -> LoraConfig:
    """A LoraConfig from adapter_config.json; target_modules become the exact paths the weights file adapts.

    Options that change what the tensors mean and that minilora does not compute
    (per-module ranks, lora_bias, layer replication, ...) are refused by key and value.
    Unknown keys from newer PEFT versions are ignored.
    """
    if d.get("peft_type") != "LORA":
        raise PeftFormatError(f"{source}: peft_type {d.get('peft_type')!r} is not supported (only 'LORA')")
    if d.get("task_type") not in TASK_TYPES:
        raise PeftFormatError(f"{source}: task_type {d.get('task_type')!r} is not supported (CAUSAL_LM or SEQ_CLS)")
    for key, neutral in NEUTRAL.items():
        if key in d and not any(d[key] == v for v in neutral):
            raise PeftFormatError(f"{source}: {key}={d[key]!r} is not supported by minilora")
    init = d.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(INITS_CHANGING_THE_BASE):
        raise PeftFormatError(
            f"{source}: init_lora_weights={init!r} is not supported: PEFT changed the base weights when it "
            "initialised this adapter, so it only fits that modified base"
        )
    if not lora_paths:
        raise PeftFormatError(f"{source}: the weights file holds no lora_A / lora_B tensors")
    try:
        return LoraConfig(
            r=d.get("r", 8),
            lora_alpha=d.get("lora_alpha", 8),
            lora_dropout=d.get("lora_dropout", 0.0),
            target_modules=tuple(lora_paths),
            bias=d.get("bias", "none"),
            use_rslora=bool(d.get("use_rslora", False)),
            use_dora=bool(d.get("use_dora", False)),
            init_lora_weights="gaussian" if init == "gaussian" else "kaiming",
            modules_to_save=tuple(d.get("modules_to_save") or ()),
        )
    except (TypeError, ValueError) as exc:
        raise PeftFormatError(f"{source}: {exc}") from None


# ----------------------------------------------------------------------------- LoRA's exchange
class LoraExchange:
    """LoRA and DoRA adapters <-> PEFT's LoraConfig and tensors (registered by minilora.peft.methods.lora)."""

    @staticmethod
    def to_peft(model: Any, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = model.peft_config[name]
        state = {k: backend.to_host(p.data) for k, p in model.adapter_state(name).items()}  # host: writing a file
        lora_paths = [k.rpartition(".")[0] for k in state if k.endswith(".lora_A")]
        save_paths = sorted({k.partition(".modules_to_save.")[0] for k in state if ".modules_to_save." in k})
        base = model.base_model
        hf_config = to_peft_config(
            config,
            target_modules=peft_target_modules(lora_paths, [n for n, _ in candidate_modules(base)]),
            modules_to_save=save_paths,
            fan_in_fan_out=conv1d_layout(base, lora_paths),
            task_type=task_type(base),
            base_model_name_or_path=getattr(base, "name_or_path", None),
        )
        return hf_config, to_peft_tensors(state, set(lora_paths))

    @staticmethod
    def from_peft(d: dict[str, Any], raw: dict[str, np.ndarray], source: str) -> tuple[LoraConfig, dict[str, Any]]:
        state = from_peft_tensors(raw, tuple(d.get("modules_to_save") or ()), source)
        lora_paths = list(dict.fromkeys(k.rpartition(".")[0] for k in state if k.endswith((".lora_A", ".lora_B"))))
        config = from_peft_config(d, lora_paths, source.replace(WEIGHTS_NAME, CONFIG_NAME))
        problems = []
        for path in lora_paths:
            a, b = state.get(f"{path}.lora_A"), state.get(f"{path}.lora_B")
            if a is None or b is None:
                problems.append(f"{path}: has lora_{'A' if a is None else 'B'} missing")
            elif a.ndim != 2 or b.ndim != 2 or a.shape[0] != config.r or b.shape[1] != config.r:
                problems.append(f"{path}: lora_A {a.shape} and lora_B {b.shape} do not have rank r={config.r} "
                                "(expected (r, in) and (out, r))")  # fmt: skip
        if problems:
            raise PeftFormatError(f"{source}: " + "; ".join(problems))
        return config, state


def conv1d_layout(base: Any, paths: list[str]) -> bool:
    """PEFT's fan_in_fan_out: true when an adapted layer is a transformers Conv1D (the family's hf_conv1d)."""
    return any(p.rpartition(".")[2] in family_of(base).hf_conv1d for p in paths)


def task_type(base: Any) -> str:
    return "SEQ_CLS" if family_of(base).is_classifier(base) else "CAUSAL_LM"


# ----------------------------------------------------------------------------- folders, for every method
def _exchanging() -> dict[str, Any]:
    """peft_type -> exchange, for the registered methods that speak PEFT's format."""
    return {t: m.exchange for t, m in methods().items() if m.exchange is not None}


def is_peft_dir(directory: str | os.PathLike[str]) -> bool:
    """True for a folder in PEFT's format: adapter_config.json with a peft_type minilora exchanges (LORA, VERA)
    + adapter_model.safetensors."""
    p = resolve_folder(directory)
    if not ((p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file()):
        return False
    try:
        d = json.loads((p / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(d, dict) and d.get("peft_type") in _exchanging()


def load_peft_format(directory: str | os.PathLike[str]) -> tuple[Any, dict[str, np.ndarray]]:
    """(config, adapter state by minilora plain name) from a PEFT adapter folder; shapes checked."""
    p = resolve_folder(directory)
    if not (p / WEIGHTS_NAME).is_file() and (p / "adapter_model.bin").is_file():
        raise FileNotFoundError(
            2, "no adapter_model.safetensors (adapter_model.bin is pickle, which minilora never loads: re-save it "
            "with PEFT's save_pretrained(..., safe_serialization=True))", str(p / WEIGHTS_NAME)
        )  # fmt: skip
    d = stio.read_json(p / CONFIG_NAME)
    exchange = _exchanging().get(d.get("peft_type") if isinstance(d, dict) else None)
    if exchange is None:
        raise PeftFormatError(f"{p / CONFIG_NAME}: peft_type {d.get('peft_type')!r} is not supported "
                              f"(minilora exchanges {sorted(_exchanging())})")  # fmt: skip
    raw = stio.read_safetensors(p / WEIGHTS_NAME)
    return exchange.from_peft(d, raw, str(p / WEIGHTS_NAME))


def read_fingerprint(directory: str | os.PathLike[str]) -> str | None:
    """The minilora base fingerprint stored in the weights file's metadata (None for adapters PEFT wrote)."""
    return stio.read_metadata(resolve_folder(directory) / WEIGHTS_NAME).get(FINGERPRINT_KEY)


def save_adapter(model: Any, directory: str | os.PathLike[str], adapter_name: str | None = None,
                 extra_files: dict[str, str] | None = None) -> int:
    """Write a PeftModel's adapter in PEFT's format (LoRA, DoRA, VeRA); returns its size on disk in bytes.

    The folder (and ``extra_files``, {name: text}) is written as one unit (minilora.io.atomic_folder).
    """
    name = model.active_adapter if adapter_name is None else adapter_name
    config = model.peft_config.get(name)
    exchange = method_of(config).exchange if config is not None else None
    if exchange is None:
        raise PeftFormatError(
            f"save_adapter(format='peft'): adapter {name!r} is {type(config).__name__}; minilora writes PEFT's "
            f"format for {sorted(_exchanging())} adapters only (use format='minilora')"
        )
    hf_config, tensors = exchange.to_peft(model, name)
    p = Path(directory)
    metadata = {"format": "pt", FINGERPRINT_KEY: model.base_fingerprint}
    if getattr(model, "base_changed", False):
        metadata[ORIGINAL_FINGERPRINT_KEY] = model.original_base_fingerprint
    with atomic_folder(p) as folder:  # both files land together, or neither (see minilora.io)
        stio.write_safetensors(folder.path(WEIGHTS_NAME), tensors, metadata=metadata)
        stio.write_json(folder.path(CONFIG_NAME), hf_config)
        for extra, text in (extra_files or {}).items():
            folder.write_text(extra, text)
    return sum((p / f).stat().st_size for f in (CONFIG_NAME, WEIGHTS_NAME))


save_peft_format = save_adapter  # the name the interop contract uses; save_adapter(format="peft") calls it
