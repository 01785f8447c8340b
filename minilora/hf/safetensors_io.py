"""Reading and writing safetensors files and JSON configs: no pickle, atomic writes, dtypes NumPy lacks.

safetensors is a JSON header (name -> dtype, shape, byte offsets) followed by raw
little-endian bytes, so loading one never executes code. ``safetensors.numpy``
reads every dtype NumPy knows; bfloat16 (common in Hugging Face checkpoints) is
not one of them, so BF16 tensors are widened here to float32 by hand: a bfloat16
is the upper 16 bits of a float32.

Writes go to a temporary file in the same folder, are fsynced, then renamed over
the target, so an interrupted save never leaves a half-written file behind.
"""

from __future__ import annotations

import importlib
import json
import os
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from minilora.io import atomic_path

INSTALL_HINT = "pip install 'minilora[hf]'"


def require(package: str, what: str) -> ModuleType:
    """Import an optional package of the ``hf`` extra, or raise an ImportError that says how to get it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ImportError(f"{what} needs the '{package}' package: {INSTALL_HINT}") from None


def _header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000 or n > path.stat().st_size - 8:
            raise ValueError(f"{path}: not a safetensors file (header length {n} does not fit the file)")
        try:
            return json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{path}: not a safetensors file (its header is not JSON)") from None


def _read_bf16(path: Path, header_len: int, info: dict[str, Any]) -> np.ndarray:
    start, end = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(8 + header_len + start)
        raw = np.frombuffer(f.read(end - start), dtype="<u2")  # host: bytes read from the file
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])


def read_safetensors(path: str | os.PathLike[str], float_dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as a host NumPy array; floating tensors cast to ``float_dtype``."""
    st = require("safetensors", "reading a .safetensors file")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    header = _header(path)
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
    out: dict[str, np.ndarray] = {}
    try:
        with st.safe_open(str(path), framework="numpy") as f:
            for key in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
                info = header.get(key, {})
                a = _read_bf16(path, header_len, info) if info.get("dtype") == "BF16" else f.get_tensor(key)
                out[key] = a.astype(float_dtype, copy=False) if a.dtype.kind == "f" and float_dtype is not None else a
    except (st.SafetensorError, TypeError) as exc:
        raise ValueError(f"{path}: cannot read it as safetensors ({exc})") from None
    return out


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The free-text ``__metadata__`` of a .safetensors file ({} when it has none)."""
    return dict(_header(Path(path)).get("__metadata__") or {})


def write_safetensors(
    path: str | os.PathLike[str], tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write host arrays atomically. ``metadata={"format": "pt"}`` is what transformers and PEFT expect."""
    st_numpy = require("safetensors.numpy", "writing a .safetensors file")
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}  # safetensors needs C order (Conv1D transposes)
    with atomic_path(path) as tmp:
        st_numpy.save_file(arrays, str(tmp), metadata=metadata)


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object from a file; a missing or malformed file names itself."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(d).__name__}")
    return d


def write_json(path: str | os.PathLike[str], obj: dict[str, Any]) -> None:
    """Write a JSON object atomically, indented and key-sorted like Hugging Face's files."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
