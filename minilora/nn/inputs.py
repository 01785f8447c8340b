"""Token ids and padding masks as arrays on a device (what every model forward and ``generate`` accept),
and the positions a padding mask implies."""

from __future__ import annotations

from typing import Any

from minilora import backend
from minilora.tensor import Tensor


def _array(x: Any) -> Any:
    """The array of a Tensor or array as it is; a nested list as a host array."""
    data = x.data if isinstance(x, Tensor) else x
    return data if backend.is_array(data) else backend.to_device(data, "cpu")


def as_ids(x: Any, device: str, what: str, owner: str = "model") -> Any:
    """An integer (B, T) array on ``device`` from a Tensor, an array or a nested list."""
    data = _array(x)
    if data.dtype.kind not in "iu":
        raise TypeError(f"{owner}: {what} must be integers, got dtype {data.dtype} with shape {tuple(data.shape)}")
    if backend.device_of(data) != device:
        data = backend.to_device(data, device)  # an explicit upload (host -> device)
    return data


def as_mask(mask: Any, device: str) -> Any:
    """A 0/1 padding mask (Tensor, array or list; int, float or bool) as an array on ``device``."""
    data = _array(mask)
    return data if backend.device_of(data) == device else backend.to_device(data, device)


def mask_positions(attention_mask: Any, n_prompt: int = 0) -> Any:
    """Positions (B, n_prompt + Tk) from a (B, Tk) padding mask, as transformers' generate derives position_ids:

        position_ids = cumsum(mask) - 1, and 0 where mask is 0

    so a left-padded row's first real token is at position 0, as it would be without the padding
    (n_prompt soft-prompt positions, always real, come first). Without padding this is 0, 1, 2, ...
    """
    data = _array(attention_mask)
    xp = backend.get_array_module(data)
    real = data != 0  # (B, Tk)
    if n_prompt:
        real = xp.concatenate([xp.ones((real.shape[0], n_prompt), dtype=bool), real], axis=1)  # (B, P + Tk)
    return xp.where(real, xp.cumsum(real, axis=1) - 1, 0)  # (B, P + Tk)
