"""A digest of everything a failed call must leave unchanged: for all-or-nothing tests and the catalogue test."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from minilora import backend


def model_digest(model: Any) -> str:
    """SHA-256 over module types by path, every parameter's and buffer's bytes, requires_grad flags and adapters."""
    h = hashlib.sha256()
    for path, m in model.named_modules():
        h.update(f"M|{path}|{type(m).__name__}|{m.training}\n".encode())
        for name, p in m._parameters.items():
            if p is None:
                continue
            host = np.ascontiguousarray(backend.to_host(p.data))  # host: hashing needs the bytes
            h.update(f"P|{path}.{name}|{host.shape}|{host.dtype.str}|{p.requires_grad}|".encode())
            h.update(host.tobytes())
        for name, b in m._buffers.items():
            for sub, data in _arrays(b):
                host = np.ascontiguousarray(backend.to_host(data))  # host
                h.update(f"B|{path}.{name}{sub}|{host.shape}|{host.dtype.str}|".encode())
                h.update(host.tobytes())
    adapters = getattr(model, "peft_config", None)
    if isinstance(adapters, dict):
        h.update(repr(sorted((k, repr(v)) for k, v in adapters.items())).encode())
    return h.hexdigest()


def _arrays(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """The arrays inside a buffer: an array, a Tensor's data, or the array attributes of an object (NF4 codes)."""
    if value is None:
        return []
    if backend.is_array(value):
        return [(prefix, value)]
    if backend.is_array(getattr(value, "data", None)):
        return [(prefix, value.data)]
    attrs = getattr(value, "__dict__", None) or {s: getattr(value, s) for s in getattr(value, "__slots__", ())}
    return [a for k, v in sorted(attrs.items()) for a in _arrays(v, f"{prefix}.{k}") if prefix.count(".") < 3]


def tree_digest(root: str | os.PathLike[str]) -> dict[str, str]:
    """{relative path: SHA-256 of the bytes} for every file under ``root`` (empty when it does not exist)."""
    out = {}
    for base, _, files in os.walk(root):
        for f in files:
            path = os.path.join(base, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out
