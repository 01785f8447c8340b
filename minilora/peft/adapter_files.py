"""minilora's own adapter folder, and reading either format into one ``SavedAdapter``.

A saved adapter is a directory with two files, both written atomically (temporary file, fsync, rename):

- ``adapter_model.npz``: the adapter's arrays only, by plain name (e.g. "transformer.h.0.attn.c_attn.lora_A"),
  read back with ``np.load(..., allow_pickle=False)``: nothing in it can execute code;
- ``adapter_config.json`` (written last, so a half-written directory never looks complete):
  the method config, the minilora version, the base model's class and config, every array's shape and
  dtype, and the base fingerprint (minilora.peft.fingerprint).

Hugging Face PEFT's layout (adapter_config.json with peft_type + adapter_model.safetensors) is read and
written by minilora.peft.peft_format; ``read_saved`` detects which one a folder holds.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

import minilora
from minilora import backend
from minilora.io import ArchiveError, atomic_folder, check_header, read_npz, resolve_folder
from minilora.peft import peft_format
from minilora.peft.attach import AdapterError
from minilora.peft.config import PeftConfig
from minilora.peft.registry import method_of

FORMAT = "minilora-adapter"
VERSION = 1
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.npz"
FORMATS = ("minilora", "peft")


@dataclasses.dataclass
class SavedAdapter:
    """An adapter read from a folder: its config, the config to build it with, its arrays, its base fingerprint."""

    config: PeftConfig
    build: PeftConfig
    arrays: dict[str, np.ndarray]
    fingerprint: str | None  # None in a folder PEFT wrote, which records none (then checked by shape only)
    directory: str
    format: str
    original_fingerprint: str | None = None  # PiSSA / OLoRA saved as trained: the base its residual came from

    @property
    def checks_fingerprint(self) -> bool:
        return self.format == "minilora" or self.fingerprint is not None

    def check_targets(self, base: Any) -> None:
        """A PEFT folder names exact module paths: each must exist in ``base`` (a clear error before any wrap)."""
        if self.format != "peft":
            return
        for path in getattr(self.config, "target_modules", None) or ():
            try:
                base.get_submodule(path)
            except AttributeError:
                raise AdapterError(f"{self.directory}: the adapter targets {path}, which this model does not have") \
                    from None


def check_format(format: str, what: str) -> None:
    if format not in FORMATS:
        raise ValueError(f"{what}: format must be one of {FORMATS}, got {format!r}")


def detect_format(directory: str) -> str:
    """"minilora" or "peft" from the files that are there, so a loader reports what is wrong with what is there."""
    d = resolve_folder(directory)
    if (d / WEIGHTS_FILE).is_file():
        return "minilora"
    if any((d / n).is_file() for n in (peft_format.WEIGHTS_NAME, "adapter_model.bin")):
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


def write_adapter(model: Any, directory: str, adapter_name: str | None = None, format: str = "minilora",
                  extra_files: dict[str, str] | None = None) -> int:
    """Write one adapter of PeftModel ``model`` to ``directory`` (created if needed); returns its size in bytes.

    ``extra_files`` ({name: text}, e.g. a classifier's labels.json) are written in the same unit as the adapter.
    """
    check_format(format, "save_adapter")
    if format == "peft":
        return peft_format.save_adapter(model, directory, adapter_name, extra_files=extra_files)
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
        **original_fingerprint(model),
        "weights": {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()},
    }
    with atomic_folder(directory) as folder:  # both files land together, or neither (see minilora.io)
        folder.write_npz(WEIGHTS_FILE, arrays)
        folder.write_text(CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
        for extra, text in (extra_files or {}).items():
            folder.write_text(extra, text)
    return adapter_size(directory)


def original_fingerprint(model: Any) -> dict[str, str]:
    """{"original_base_fingerprint": ...} when PiSSA / OLoRA replaced the base (what a converted adapter records
    when converted from this folder later, minilora.peft.lora_convert), else {}."""
    return {"original_base_fingerprint": model.original_base_fingerprint} if getattr(model, "base_changed", False) \
        else {}


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
    check_header(meta, FORMAT, VERSION, config_path, AdapterError)
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


def read_saved(directory: str, format: str | None = None) -> SavedAdapter:
    """The adapter saved in ``directory``; ``format=None`` detects minilora's or Hugging Face PEFT's layout."""
    if format is None:
        format = detect_format(directory)
    check_format(format, "load_adapter")
    if format == "peft":
        config, arrays = peft_format.load_peft_format(directory)
        return SavedAdapter(config, config, arrays, peft_format.read_fingerprint(directory), str(directory),
                            "peft")  # a PiSSA adapter in PEFT's format is refused by its config already
    meta, arrays = read_adapter(directory)
    try:
        config = PeftConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise AdapterError(f"{os.path.join(directory, CONFIG_FILE)}: field 'config': {exc}") from None
    loading = method_of(config).loading_config
    build = loading(config) if loading is not None else config
    return SavedAdapter(config, build, arrays, meta.get("base_fingerprint"), str(directory), "minilora",
                        meta.get("original_base_fingerprint"))
