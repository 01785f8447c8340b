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
import zipfile
from typing import Any

import numpy as np

import minilora
from minilora import backend
from minilora.io import atomic_write_npz, atomic_write_text
from minilora.nn import Module
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


def _is_peft_dir(directory: str) -> bool:
    try:
        from minilora.peft.peft_format import is_peft_dir  # noqa: PLC0415
    except ImportError:
        return False
    return is_peft_dir(directory)


def adapter_size(directory: str) -> int:
    """Bytes on disk of a saved adapter (its config and weights)."""
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
    os.makedirs(directory, exist_ok=True)
    atomic_write_npz(os.path.join(directory, WEIGHTS_FILE), arrays)
    atomic_write_text(os.path.join(directory, CONFIG_FILE), json.dumps(meta, indent=2) + "\n")
    return adapter_size(directory)


def read_adapter(directory: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, arrays) of a saved adapter, validated; FileNotFoundError or AdapterError otherwise."""
    config_path, weights_path = os.path.join(directory, CONFIG_FILE), os.path.join(directory, WEIGHTS_FILE)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "No such adapter file", path)
    try:
        with open(config_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AdapterError(f"{config_path}: not a minilora adapter (format {meta.get('format')!r})")
    if meta.get("version", 0) > VERSION:
        raise AdapterError(f"{config_path}: adapter format version {meta['version']} is newer than this minilora's")
    try:
        with np.load(weights_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise AdapterError(f"{weights_path}: not a readable adapter (corrupt or truncated file: {exc})") from None
    expected = meta.get("weights", {})
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
        format = "peft" if _is_peft_dir(directory) else "minilora"
    _check_format(format, "load_adapter")
    # [hf interop] a Hugging Face PEFT folder (adapter_config.json + adapter_model.safetensors) is auto-detected
    if format == "peft" or _peft_format("load_adapter").is_peft_dir(directory):
        peft = _peft_format("load_adapter").load_adapter(model, directory, adapter_name, is_trainable)
        return peft if is_trainable else peft.eval()
    meta, arrays = read_adapter(directory)
    config = PeftConfig.from_dict(meta["config"])
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

    On any failure the wrap or the added adapter is undone, so the model is left as it was.
    """
    fresh = not isinstance(model, PeftModel)
    if fresh:
        peft = PeftModel(model, build, adapter_name)
    else:
        peft = model
        peft.add_adapter(adapter_name, build)  # raises, changing nothing, for another method family
    peft.peft_config[adapter_name] = config
    try:
        _assign(peft, adapter_name, arrays, directory)
    except Exception:
        if fresh:
            peft.unload()
        else:
            peft.delete_adapter(adapter_name)
        raise
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
    if problems:
        raise AdapterError(f"{directory}: the adapter does not fit this model: " + "; ".join(problems))
    for k, a in arrays.items():
        p = state[k]
        p.data = backend.to_device(a, p.device, p.dtype)
