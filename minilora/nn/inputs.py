"""Token ids and padding masks as arrays on a device: what every model forward and ``generate`` accept."""

from __future__ import annotations

from typing import Any

from minilora import backend
from minilora.tensor import Tensor


def as_ids(x: Any, device: str, what: str, owner: str = "model") -> Any:
    """An integer (B, T) array on ``device`` from a Tensor, an array or a nested list."""
    data = x.data if isinstance(x, Tensor) else x
    if not backend.is_array(data):
        data = backend.to_device(data, "cpu")
    if data.dtype.kind not in "iu":
        raise TypeError(f"{owner}: {what} must be integers, got dtype {data.dtype} with shape {tuple(data.shape)}")
    if backend.device_of(data) != device:
        data = backend.to_device(data, device)  # an explicit upload (host -> device)
    return data


def as_mask(mask: Any, device: str) -> Any:
    """A 0/1 padding mask (Tensor, array or list; int, float or bool) as an array on ``device``."""
    data = mask.data if isinstance(mask, Tensor) else mask
    if not backend.is_array(data):
        data = backend.to_device(data, "cpu")
    return data if backend.device_of(data) == device else backend.to_device(data, device)
