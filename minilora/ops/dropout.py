"""Inverted dropout: zero each element with probability p and scale the survivors by 1 / (1 - p).

The keep mask is drawn on the tensor's device (``backend.device_rng``, float32
uniforms, so no host round trip and no float64 buffer) and saved for backward.

Gradient checks need the same mask in every evaluation: re-seed inside the
checked function, ``lambda x: (minilora.manual_seed(0), F.dropout(x, 0.5))[1]``
(manual_seed resets the device generators, so each call draws the same mask).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from minilora import backend
from minilora.autograd import Function
from minilora.gradcheck_cases import register

if TYPE_CHECKING:
    from minilora.tensor import Tensor


def keep_mask(shape: tuple[int, ...], p: float, device: str) -> Any:
    """A boolean mask of ``shape`` on ``device``, each entry True with probability 1 - p."""
    return backend.device_rng(device).random(shape, dtype=np.float32) >= p


class Dropout(Function):
    """y = x * m / (1 - p) with m ~ Bernoulli(1 - p) drawn in forward;  g_x = g_y * m / (1 - p)."""

    def __init__(self, p: float, device: str) -> None:
        self.p, self.device = p, device

    def forward(self, x: Any) -> Any:
        m = keep_mask(x.shape, self.p, self.device)
        scale = self.xp.asarray(1.0 / (1.0 - self.p), dtype=x.dtype)
        self.save_for_backward(m, scale)
        return x * m * scale

    def backward(self, g_y: Any) -> tuple[Any]:
        m, scale = self.saved
        return (g_y * m * scale,)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout; returns ``x`` itself (no op recorded) when p == 0 or not training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if p == 0.0 or not training:
        return x
    if p == 1.0:
        return x * 0.0  # everything dropped: zeros, with a zero gradient
    return Dropout.apply(x, p=p, device=x.device)


def _seeded(p: float) -> Any:
    def fn(x: Tensor) -> Tensor:
        backend.manual_seed(0)  # (minilora.manual_seed) the same mask in every finite-difference evaluation
        return dropout(x, p)

    return fn


register(Dropout, _seeded(0.5), (4, 5), name="Dropout (p=0.5)")
register(Dropout, _seeded(0.2), (2, 3, 4), name="Dropout (p=0.2, 3-D)")
