"""Saving and loading adapters in minilora's own format (a hook leaves room for Hugging Face PEFT's).

A saved adapter is a directory with two files, both written atomically (temporary file, fsync, rename):

- ``adapter_model.npz``: the adapter's arrays only, by plain name (e.g. "transformer.h.0.attn.c_attn.lora_A"),
  read back with ``np.load(..., allow_pickle=False)``: nothing in it can execute code;
- ``adapter_config.json`` (written last, so a half-written directory never looks complete):
  the method config, the minilora version, the base model's class and config, every array's shape and
  dtype, and the base fingerprint.

The fingerprint is a SHA-256 over the base model's weights (sorted plain names, shapes, dtypes and bytes
of host copies; adapter parameters excluded; names as in the plain model, without ".base_layer"). Loading
onto a base with another fingerprint is refused, naming both: an adapter only means something on the
weights it was trained against. A failed load leaves the model as it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import numpy as np

import minilora
from minilora import backend
from minilora.io import ArchiveError, atomic_folder, nonfinite_names, read_npz, resolve_folder
from minilora.nn import Module, all_or_nothing
from minilora.peft.config import PeftConfig, PromptTuningConfig
from minilora.peft.peft_model import PeftModel, plain_name

FORMAT = "minilora-adapter"
VERSION = 1
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.npz"
FORMATS = ("minilora", "peft")


class AdapterError(ValueError):
    """An adapter directory that cannot be used here: the message names the file and the problem."""


def base_fingerprint(model: Module) -> str:
    """SHA-256 over the base weights (see the module docstring), as "sha256:<hex>"."""
    adapter_ids: set[int] = set()
    if isinstance(model, PeftModel):
        for name in model.peft_config:
            adapter_ids.update(id(p) for p in model.adapter_state(name).values())
        model = model.base_model
    h = hashlib.sha256()
    named = sorted((plain_name(n), p) for n, p in model.named_parameters() if id(p) not in adapter_ids)
    for name, p in named:
        host = np.ascontiguousarray(backend.to_host(p.data))  # host: hashing needs the bytes
        h.update(f"{name}|{host.shape}|{host.dtype.str}|".encode())
        h.update(host.tobytes())
    return "sha256:" + h.hexdigest()


def _check_format(format: str, what: str) -> None:
    if format not in FORMATS:
        raise ValueError(f"{what}: format must be one of {FORMATS}, got {format!r}")


def _peft_format(what: str) -> Any:
    try:
        from minilora.peft import peft_format  # noqa: PLC0415  (Hugging Face PEFT's layout, added separately)
    except ImportError:
        raise NotImplementedError(
            f"{what}: format='peft' (Hugging Face PEFT's adapter_model.safetensors layout) is not implemented yet; "
            "use format='minilora'"
        ) from None
    return peft_format


def _detect_format(directory: str) -> str:
    """"minilora" or "peft" from the files that are there, so a loader reports what is wrong with what is there."""
    d = resolve_folder(directory)
    if (d / WEIGHTS_FILE).is_file():
        return "minilora"
    if any((d / n).is_file() for n in ("adapter_model.safetensors", "adapter_model.bin")):
        return "peft"
    config_path = d / CONFIG_FILE
    if not d.is_dir():
        raise FileNotFoundError(2, "No such adapter file (no such folder)", str(d))
    if not config_path.is_file():
        raise FileNotFoundError(2, "No such adapter file (none of adapter_config.json, adapter_model.npz, "
                                "adapter_model.safetensors here)", str(d))
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise AdapterError(f"{config_path}: expected a JSON object, got a JSON {type(meta).__name__}")
    if meta.get("format") == FORMAT:
        return "minilora"  # read_adapter names the missing weights file
    if "peft_type" in meta:
        return "peft"
    raise AdapterError(f"{config_path}: neither a minilora adapter (no 'format': {FORMAT!r}) nor a PEFT one "
                       "(no 'peft_type'), and no weights file (adapter_model.npz or adapter_model.safetensors)")


def adapter_size(directory: str) -> int:
    """Bytes on disk of a saved adapter (its config and weights)."""
    directory = str(resolve_folder(directory))
    return sum(os.path.getsize(os.path.join(directory, f)) for f in (CONFIG_FILE, WEIGHTS_FILE))


def save_adapter(model: PeftModel, directory: str, adapter_name: str | None = None, format: str = "minilora") -> int:
    """Write one adapter of ``model`` to ``directory`` (created if needed); returns its size on disk in bytes."""
    _check_format(format, "save_adapter")
    if format == "peft":
        return _peft_format("save_adapter").save_adapter(model, directory, adapter_name)
    name = model.active_adapter if adapter_name is None else adapter_name
    state = model.adapter_state(name)
    arrays = {k: np.ascontiguousarray(backend.to_host(p.data)) for k, p in state.items()}  # host: writing a file
    base = model.base_model
    cfg = getattr(base, "config", None)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "minilora_version": minilora.__version__,
        "adapter_name": name,
        "config": model.peft_config[name].to_dict(),
        "base_model": {
            "class": type(base).__name__,
            "config": cfg.to_dict() if hasattr(cfg, "to_dict") else None,
            "num_classes": getattr(base, "num_classes", None),
        },
        "base_fingerprint": model.base_fingerprint,
        "weights": {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()},
    }
    with atomic_folder(directory) as folder:  # both files land together, or neither (see minilora.io)
        folder.write_npz(WEIGHTS_FILE, arrays)
        folder.write_text(CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    return adapter_size(directory)


def read_adapter(directory: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, arrays) of a saved adapter, validated; FileNotFoundError or AdapterError otherwise."""
    directory = str(resolve_folder(directory))
    config_path, weights_path = os.path.join(directory, CONFIG_FILE), os.path.join(directory, WEIGHTS_FILE)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "No such adapter file", path)
    try:
        with open(config_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise AdapterError(f"{config_path}: expected a JSON object, got a JSON {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise AdapterError(f"{config_path}: not a minilora adapter (format {meta.get('format')!r})")
    version = meta.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise AdapterError(f"{config_path}: field 'version' must be an integer, got {version!r}")
    if version > VERSION:
        raise AdapterError(f"{config_path}: adapter format version {version} is newer than this minilora's")
    for key, kind in (("config", dict), ("weights", dict)):
        if not isinstance(meta.get(key), kind):
            raise AdapterError(f"{config_path}: field {key!r} must be a JSON object, got {meta.get(key)!r}")
    try:
        arrays = read_npz(weights_path, want={k: tuple(v["shape"]) for k, v in meta["weights"].items()})
    except (ArchiveError, TypeError, KeyError) as exc:
        raise AdapterError(f"{weights_path}: not a readable adapter ({exc})") from None
    expected = meta["weights"]
    missing, unexpected = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if missing or unexpected:
        raise AdapterError(f"{weights_path}: does not match {CONFIG_FILE} (missing {missing}, unexpected {unexpected})")
    return meta, arrays


def load_adapter(
    model: Module, directory: str, adapter_name: str = "default", format: str | None = None, is_trainable: bool = False
) -> PeftModel:
    """Load a saved adapter onto ``model`` (a plain base model, or a PeftModel to add it to, not activated).

    Returns the PeftModel. Refuses (AdapterError) an adapter trained on another base (fingerprints differ),
    a different method family, or arrays that do not fit; on any failure the model is left unchanged.
    ``is_trainable=False`` loads the adapter frozen and returns the model in eval mode (dropout off), for
    inference, as PEFT. ``format=None`` detects it: Hugging Face
    PEFT's layout (adapter_config.json with peft_type + adapter_model.safetensors) or minilora's.
    """
    if format is None:
        format = _detect_format(directory)
    _check_format(format, "load_adapter")
    if format == "peft":
        peft = _peft_format("load_adapter").load_adapter(model, directory, adapter_name, is_trainable)
        return peft if is_trainable else peft.eval()
    meta, arrays = read_adapter(directory)
    try:
        config = PeftConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise AdapterError(f"{os.path.join(directory, CONFIG_FILE)}: field 'config': {exc}") from None
    _check_fingerprint(model, meta.get("base_fingerprint"), directory)
    build = config  # prompt tuning from text would need the tokenizer; the saved weights replace the init anyway
    if isinstance(config, PromptTuningConfig) and config.init == "text":
        build = dataclasses.replace(config, init="random", init_text=None)
    peft = _attach(model, config, build, adapter_name, arrays, directory, is_trainable)
    return peft if is_trainable else peft.eval()  # for inference, as Hugging Face: dropout off


def _check_fingerprint(model: Module, want: str | None, directory: str) -> None:
    """Refuse an adapter whose recorded base fingerprint is not ``model``'s (a PeftModel or its plain base)."""
    have = model.base_fingerprint if isinstance(model, PeftModel) else base_fingerprint(model)
    if have != want:
        raise AdapterError(
            f"{directory}: this adapter was trained on another base model (adapter's base fingerprint {want}, "
            f"this model's {have}); load it onto the weights it was trained on"
        )


def _attach(
    model: Module, config: PeftConfig, build: PeftConfig, adapter_name: str, arrays: dict[str, np.ndarray],
    directory: str, is_trainable: bool,
) -> PeftModel:
    """Wrap ``model`` (or add to it) with an adapter built from ``build``, recorded as ``config``, holding ``arrays``.

    On any failure the model is left exactly as it was (types, weights bit for bit, flags, adapters).
    """
    with all_or_nothing(model):  # any failure below leaves the model as it was (see minilora.nn.transaction)
        if isinstance(model, PeftModel):
            peft = model
            peft.add_adapter(adapter_name, build)  # raises for another method family
        else:
            peft = PeftModel(model, build, adapter_name)
        peft.peft_config[adapter_name] = config
        _assign(peft, adapter_name, arrays, directory)
        for p in peft.adapter_state(adapter_name).values():
            p.requires_grad_(is_trainable)
    return peft


def _assign(peft: PeftModel, adapter_name: str, arrays: dict[str, np.ndarray], directory: str) -> None:
    state = peft.adapter_state(adapter_name)
    problems = [f"missing {k}" for k in sorted(set(state) - set(arrays))]
    problems += [f"unexpected {k}" for k in sorted(set(arrays) - set(state))]
    problems += [
        f"{k}: shape {tuple(a.shape)} in the file, {tuple(state[k].shape)} in the model"
        for k, a in arrays.items()
        if k in state and tuple(a.shape) != tuple(state[k].shape)
    ]
    problems += [f"{k}: dtype {a.dtype} (adapter tensors must be floating point)" for k, a in arrays.items()
                 if np.dtype(a.dtype).kind != "f"]
    bad = nonfinite_names(arrays)
    if bad:
        problems.append(f"non-finite values (NaN/Inf) in {', '.join(bad)}")
    if problems:
        raise AdapterError(f"{directory}: the adapter does not fit this model: " + "; ".join(problems))
    for k, a in arrays.items():
        p = state[k]
        p.data = backend.to_device(a, p.device, p.dtype)
