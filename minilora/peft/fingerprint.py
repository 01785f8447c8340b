"""The base fingerprint: which weights an adapter was trained against.

A SHA-256 over the base model's weights: sorted plain names, shapes, dtypes and the bytes of
host copies; adapter parameters excluded; names as in the plain model, without ".base_layer".
An adapter records it when saved, and loading onto a base with another fingerprint is refused,
naming both: an adapter only means something on the weights it was trained against.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from minilora import backend
from minilora.peft.attach import AdapterError


def plain_name(name: str) -> str:
    """A parameter's name in the plain base model: PEFT wrappers' ".base_layer" segments removed."""
    return name.replace(".base_layer.", ".").replace(".base_layer", "")


def base_fingerprint(model: Any) -> str:
    """SHA-256 over the base weights (see the module docstring), as "sha256:<hex>".

    ``model`` is a plain model, or a PeftModel (anything with ``peft_config`` and ``adapter_state``),
    whose adapters' tensors are left out.
    """
    adapter_ids: set[int] = set()
    if hasattr(model, "peft_config") and hasattr(model, "adapter_state"):
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


def check_fingerprint(have: str, want: str | None, directory: str, original: str | None = None) -> None:
    """Refuse an adapter whose recorded base fingerprint ``want`` is not the model's ``have``; ``original``: the
    base a PiSSA / OLoRA adapter's residual was made from, when the adapter records it (a more precise message)."""
    if have != want and original == have:
        raise AdapterError(
            f"{directory}: this PiSSA / OLoRA adapter was saved as trained, for the residual W0 - s B0 A0 of this "
            "base, not for this base itself; save it with convert_to_lora=True (minilora finetune's default) to "
            "use it here (docs/methods/pissa.md)"
        )
    if have != want:
        raise AdapterError(
            f"{directory}: this adapter was trained on another base model (adapter's base fingerprint {want}, "
            f"this model's {have}); load it onto the weights it was trained on"
        )
