"""Rotary position embedding (RoPE), in Hugging Face Llama's rotate-half convention.

Each head vector x (hs = d values) is split in halves x1 = x[:d/2], x2 = x[d/2:], and
the pair (x1[i], x2[i]) is rotated by the angle pos * inv_freq[i]:

    inv_freq[i] = 1 / theta^(2i / d),  i in [0, d/2)
    emb = concat(pos * inv_freq, pos * inv_freq)            (T, d)
    y = x * cos(emb) + rotate_half(x) * sin(emb),  rotate_half(x) = concat(-x2, x1)

The angles depend only on the positions, so they are computed once per forward
(``rope_cos_sin``) and shared by q and k of every layer; a KV cache or prompt/prefix
tokens shift the positions, nothing else. See docs/ops/rope.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from minilora import backend
from minilora.autograd import Function
from minilora.gradcheck_cases import register

if TYPE_CHECKING:
    from minilora.tensor import Tensor


def rope_inv_freq(xp: Any, head_dim: int, theta: float = 10000.0, angle_dtype: Any = np.float32) -> Any:
    """inv_freq[i] = 1 / theta^(2i / head_dim), i in [0, head_dim / 2), as transformers computes it in float32.

    The exponent 2i/d and the reciprocal are float32 operations as in torch; the power is taken in float64 and
    rounded (correctly rounded), which is torch's float32 pow bit for bit in all but rare cases of one ulp (0 of
    the 8, 32, 64 values for head_dim 16, 64 and 128 with theta 1e4 or 5e5; 1 of 64 for 128 with theta 1e6).
    """
    angle_dtype = np.dtype(angle_dtype)
    exponent = xp.arange(0, head_dim, 2, dtype=angle_dtype) / angle_dtype.type(head_dim)  # (d/2,) 2i/d
    return xp.asarray(1.0, dtype=angle_dtype) / (theta ** exponent.astype(np.float64)).astype(angle_dtype)


def rope_cos_sin(
    xp: Any, positions: Any, head_dim: int, theta: float = 10000.0, dtype: Any = np.float32, angle_dtype: Any = None
) -> tuple[Any, Any]:
    """(cos, sin) of the rotary angles, each (T, head_dim) for positions (T,) (or (B, T, head_dim) for (B, T)).

    positions: integer positions on ``xp``'s device (an offset for a KV cache or prefix is just in them).
    angle_dtype: the precision of the angles. None (the default) takes float32 unless ``dtype`` is float64.
    In float32 the numbers are Hugging Face's (transformers computes inv_freq and pos * inv_freq in float32):
    inv_freq (rope_inv_freq) is torch's bit for bit (or one ulp, rarely) and so is the product; cos and sin are
    evaluated in float64 and rounded, so each is the correctly rounded float32 value, where torch's vectorised
    float32 cos/sin is off by one unit in the last place for ~5% of entries (|diff| <= 6e-8). A float64 model
    gets float64 angles: exact math (transformers' float64 model keeps float32 angles, off by ~6e-8 relative,
    i.e. 5e-4 rad at position 8191); pass angle_dtype=np.float32 to reproduce those.
    """
    if head_dim % 2 or head_dim <= 0:
        raise ValueError(f"rope_cos_sin: head_dim must be a positive even number, got {head_dim}")
    dtype = np.dtype(dtype)
    if angle_dtype is None:
        angle_dtype = np.float64 if dtype == np.float64 else np.float32
    angle_dtype = np.dtype(angle_dtype)
    positions = xp.asarray(positions)
    if positions.dtype.kind not in "iu":
        raise TypeError(f"rope_cos_sin: positions must be integers, got dtype {positions.dtype}")
    inv_freq = rope_inv_freq(xp, head_dim, theta, angle_dtype)  # (d/2,)
    freqs = positions[..., None].astype(angle_dtype) * inv_freq  # (..., T, d/2)
    emb = xp.concatenate([freqs, freqs], axis=-1).astype(np.float64)  # (..., T, d)
    return xp.cos(emb).astype(dtype), xp.sin(emb).astype(dtype)


class RotaryEmbedding(Function):
    """y = x * cos + rotate_half(x) * sin,  rotate_half(x) = concat(-x2, x1)  (x1, x2 the halves of the last axis):

    y1 = x1 cos1 - x2 sin1,  y2 = x2 cos2 + x1 sin2.
    g_x = g_y * cos + rotate_half^T(g_y * sin),  rotate_half^T(z) = concat(z2, -z1):
    g_x1 = g_y1 cos1 + g_y2 sin2,  g_x2 = g_y2 cos2 - g_y1 sin1.
    cos and sin are constants (no gradient); they are saved only by reference.
    """

    fresh_grads = True  # g_x is a new array

    def __init__(self, cos: Any, sin: Any) -> None:
        self.cos, self.sin = cos, sin

    def forward(self, x: Any) -> Any:
        cos, sin, h = self.cos, self.sin, x.shape[-1] // 2
        y = x * cos  # (B, nh, T, hs)
        y[..., :h] -= x[..., h:] * sin[..., :h]  # y1 = x1 cos1 - x2 sin1
        y[..., h:] += x[..., :h] * sin[..., h:]  # y2 = x2 cos2 + x1 sin2
        if not self.needs_input_grad[0]:
            self.cos = self.sin = None
        return y

    def backward(self, g_y: Any) -> tuple[Any]:
        cos, sin, h = self.cos, self.sin, g_y.shape[-1] // 2
        g_x = g_y * cos  # (B, nh, T, hs)
        g_x[..., :h] += g_y[..., h:] * sin[..., h:]  # g_x1 = g_y1 cos1 + g_y2 sin2
        g_x[..., h:] -= g_y[..., :h] * sin[..., :h]  # g_x2 = g_y2 cos2 - g_y1 sin1
        return (g_x,)

    def release(self) -> None:
        super().release()
        self.cos = self.sin = None


def rotary_embedding(x: Tensor, cos: Any, sin: Any) -> Tensor:
    """Rotate x (B, nh, T, hs) by the rotary angles: x * cos + rotate_half(x) * sin (see RotaryEmbedding).

    cos, sin: arrays (or Tensors, used as constants) of shape (T, hs), or (B, T, hs) for per-row positions,
    from ``rope_cos_sin``, of x's dtype and device.
    """
    from minilora.tensor import Tensor  # noqa: PLC0415  (tensor.py imports the ops)

    cos = cos.data if isinstance(cos, Tensor) else cos
    sin = sin.data if isinstance(sin, Tensor) else sin
    shape = tuple(x.shape)
    if x.ndim != 4 or shape[-1] % 2:
        raise ValueError(f"rotary_embedding: x must be (B, nh, T, hs) with an even hs, got shape {shape}")
    B, _, T, hs = shape
    for name, a in (("cos", cos), ("sin", sin)):
        if not backend.is_array(a):
            raise TypeError(f"rotary_embedding: {name} must be an array, got {type(a).__name__}")
        if tuple(a.shape) not in ((T, hs), (B, T, hs)):
            raise ValueError(
                f"rotary_embedding: {name} of shape {tuple(a.shape)} does not fit x of shape {shape} "
                f"(expected {(T, hs)} or {(B, T, hs)})"
            )
        if a.dtype != x.dtype:
            raise TypeError(f"rotary_embedding: {name} has dtype {a.dtype}, x has {x.dtype}")
        if backend.device_of(a) != x.device:
            raise RuntimeError(f"rotary_embedding: {name} is on {backend.device_of(a)}, x on {x.device}")
    if cos.ndim == 3:  # (B, T, hs) -> (B, 1, T, hs): one set of angles per batch row, shared by the heads
        cos, sin = cos[:, None], sin[:, None]
    return RotaryEmbedding.apply(x, cos=cos, sin=sin)


def _rope_case(offset: int, per_row: bool = False) -> Any:
    def fn(x: Tensor) -> Tensor:
        B, _, T, hs = x.shape
        pos = x.xp.arange(offset, offset + T)  # (T,)
        if per_row:
            pos = pos[None, :] + x.xp.arange(B)[:, None]  # (B, T): each row shifted, as with left padding
        return rotary_embedding(x, *rope_cos_sin(x.xp, pos, hs, 10000.0, x.dtype))

    return fn


register(RotaryEmbedding, _rope_case(0), (2, 3, 4, 6), name="RotaryEmbedding")
register(RotaryEmbedding, _rope_case(5), (1, 2, 3, 4), name="RotaryEmbedding (position offset)")
register(RotaryEmbedding, _rope_case(2, per_row=True), (2, 1, 3, 4), name="RotaryEmbedding (per-row positions)")
