"""NF4, the 4-bit NormalFloat data type of QLoRA (Dettmers et al. 2023), with double quantisation.

A weight matrix is flattened and cut into blocks of ``block_size`` (64) consecutive
values. Each block keeps one scale, its absolute maximum s = max |w|, and each
value becomes the index (a 4-bit code) of the level nearest to w / s, which lies
in [-1, 1]. The 16 levels are quantiles of the standard normal distribution,
because pre-trained weights are close to normally distributed: every level is
then used about equally often. Two codes share one uint8 byte, the FIRST value
in the HIGH nibble (as bitsandbytes): byte = code[2i] << 4 | code[2i + 1].

Double quantisation compresses the float32 block scales too: subtract their mean
(scales are all positive, so centring uses the full signed range), then quantise
them to int8 with one float32 absmax per group of 256 scales. Storage per weight:
4 bits (code) + 8 / 64 (scale code) + 32 / (64 * 256) (scale of scales)
= 4.127 bits, against 4 + 32 / 64 = 4.5 bits with plain float32 scales.

Everything here runs on the array module of its input (NumPy or CuPy): no host
round trip, so a GPU weight is quantised and dequantised on the GPU.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from typing import Any

from minilora import backend

# The 16 NF4 levels from the QLoRA paper (appendix E) and bitsandbytes. They are
# nf4_levels_from_normal() rounded to 7 decimals: 8 positive and 7 negative normal
# quantiles plus an exact 0, scaled to [-1, 1] (see that function for the recipe).
NF4_LEVELS: tuple[float, ...] = (
    -1.0, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1847734, -0.0910500, 0.0,
    0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0,
)  # fmt: skip
ZERO_CODE = 7  # NF4_LEVELS[7] == 0.0: padding and all-zero blocks dequantise to exactly 0
SCALE_GROUP = 256  # block scales per float32 scale-of-scales in double quantisation


def nf4_levels_from_normal(offset: float = 0.9677083) -> list[float]:
    """Rebuild the NF4 table from N(0, 1) quantiles (bitsandbytes' create_normal_map).

    An even split of [-1, 1] into 16 quantiles has no exact 0, yet zero (padding,
    pruned weights) must be exact. So NF4 is asymmetric: 8 quantiles of the
    positive half, q_i = Phi^-1(p_i) for p_i evenly spaced from ``offset`` down to
    0.5 (exclusive), 7 of the negative half the same way, and 0. ``offset`` =
    (1 - 1/(2*15) + 1 - 1/(2*16)) / 2 keeps the extreme quantile finite. All
    values are divided by the largest, so the table spans exactly [-1, 1].
    """
    ppf = NormalDist().inv_cdf

    def linspace(a: float, b: float, n: int) -> list[float]:
        return [a + (b - a) * i / (n - 1) for i in range(n)]

    positive = [ppf(p) for p in linspace(offset, 0.5, 9)[:-1]]
    negative = [-ppf(p) for p in linspace(offset, 0.5, 8)[:-1]]
    values = sorted(positive + [0.0] + negative)
    return [v / values[-1] for v in values]


_LEVEL_CACHE: dict[tuple[str, str], Any] = {}


def nf4_levels(xp: Any, dtype: Any = "float32") -> Any:
    """The 16 levels as a device array of ``xp`` (uploaded once per module and dtype, then cached)."""
    key = (xp.__name__, str(xp.dtype(dtype)))
    if key not in _LEVEL_CACHE:
        _LEVEL_CACHE[key] = xp.asarray(NF4_LEVELS, dtype=dtype)
    return _LEVEL_CACHE[key]


@dataclasses.dataclass
class NF4Tensor:
    """A weight stored as NF4: packed codes plus block scales (plain float32, or double-quantised).

    codes:          uint8 (n_padded / 2,), two 4-bit codes per byte, first value in the high nibble.
    scales:         float32 (n_blocks,), the absmax of each block; None when double-quantised.
    scale_codes:    int8 (n_blocks,), round((s - scale_offset) / scale_scales[g] * 127), g = block // 256.
    scale_scales:   float32 (ceil(n_blocks / 256),), the absmax of each group of centred scales.
    scale_offset:   float32 (1,), the mean of the block scales.
    shape, dtype:   the original weight's shape and dtype (dequantisation's default output).
    """

    codes: Any
    scales: Any
    scale_codes: Any
    scale_scales: Any
    scale_offset: Any
    shape: tuple[int, ...]
    dtype: Any
    block_size: int

    @property
    def double_quant(self) -> bool:
        return self.scales is None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def n_blocks(self) -> int:
        return -(-self.numel // self.block_size)

    def arrays(self) -> dict[str, Any]:
        """The stored arrays by name (what a module registers as buffers)."""
        names = ("scale_codes", "scale_scales", "scale_offset") if self.double_quant else ("scales",)
        return {"codes": self.codes, **{n: getattr(self, n) for n in names}}

    @property
    def nbytes(self) -> int:
        """Exact bytes of storage: codes, scales (or scale codes + scale of scales + offset)."""
        return sum(int(a.nbytes) for a in self.arrays().values())

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / self.numel

    def dequantize(self, dtype: Any = None) -> Any:
        return dequantize_nf4(self, dtype)


def _check_weight(w: Any, block_size: int) -> None:
    if not backend.is_array(w):
        raise TypeError(f"quantize_nf4: expected a NumPy or CuPy array, got {type(w).__name__}")
    if w.ndim != 2:
        raise ValueError(f"quantize_nf4: expected a 2-D weight (out_features, in_features), got shape {tuple(w.shape)}")
    if not backend.is_floating(w.dtype):
        raise TypeError(f"quantize_nf4: expected a floating-point weight, got dtype {w.dtype} (shape {tuple(w.shape)})")
    if w.size == 0:
        raise ValueError(f"quantize_nf4: the weight is empty (shape {tuple(w.shape)})")
    if not isinstance(block_size, int) or block_size <= 0 or block_size % 2:
        raise ValueError(
            f"quantize_nf4: block_size must be a positive even integer (two codes share a byte), got {block_size!r}"
        )


def nearest_level_codes(x: Any) -> Any:
    """Index of the NF4 level nearest to each value of x (values in [-1, 1]), as uint8.

    The decision boundaries are the midpoints between adjacent levels; a value on a
    midpoint goes to the lower level (as argmin over |x - level| does). One
    searchsorted instead of a (n, 16) distance matrix keeps memory at O(n).
    """
    xp = backend.get_array_module(x)
    levels = nf4_levels(xp, x.dtype)
    midpoints = (levels[1:] + levels[:-1]) / 2  # (15,)
    return xp.searchsorted(midpoints, x, side="left").astype(xp.uint8)


def pack_nibbles(codes: Any) -> Any:
    """(2n,) codes in 0..15 -> (n,) uint8, codes[2i] in the high nibble, codes[2i + 1] in the low one."""
    return (codes[0::2] << 4) | codes[1::2]


def unpack_nibbles(packed: Any) -> Any:
    """(n,) uint8 -> (2n,) codes: the inverse of pack_nibbles."""
    xp = backend.get_array_module(packed)
    return xp.stack([packed >> 4, packed & 0x0F], axis=1).reshape(-1)  # (n, 2) -> (2n,)


def quantize_nf4(w: Any, block_size: int = 64, double_quant: bool = True) -> NF4Tensor:
    """Quantise a 2-D float weight to NF4 (blockwise absmax; optional double quantisation of the scales).

    The weight is flattened in row-major order and zero-padded to a whole number of
    blocks; the true shape is remembered. Returns an NF4Tensor on w's device.
    """
    _check_weight(w, block_size)
    xp = backend.get_array_module(w)
    n = w.size
    n_blocks = -(-n // block_size)
    flat = w.reshape(-1)
    if n_blocks * block_size != n:
        flat = xp.concatenate([flat, xp.zeros(n_blocks * block_size - n, dtype=w.dtype)])
    blocks = flat.reshape(n_blocks, block_size)  # (nb, bs)
    absmax = xp.abs(blocks).max(axis=1)  # (nb,)
    safe = xp.where(absmax == 0, xp.ones_like(absmax), absmax)  # an all-zero block maps to code 7 (exact 0)
    codes = nearest_level_codes(blocks / safe[:, None]).reshape(-1)  # (nb * bs,) in 0..15
    packed = pack_nibbles(codes)  # (nb * bs / 2,) uint8
    scales = absmax.astype(xp.float32)
    if not double_quant:
        return NF4Tensor(packed, scales, None, None, None, tuple(w.shape), w.dtype, block_size)
    scale_codes, scale_scales, offset = _quantize_scales(scales)
    return NF4Tensor(packed, None, scale_codes, scale_scales, offset, tuple(w.shape), w.dtype, block_size)


def _quantize_scales(scales: Any) -> tuple[Any, Any, Any]:
    """Double quantisation: c = s - mean(s) per group of 256 -> int8 round(127 c / absmax(c))."""
    xp = backend.get_array_module(scales)
    n_blocks = scales.shape[0]
    n_groups = -(-n_blocks // SCALE_GROUP)
    offset = scales.mean(keepdims=True)  # (1,) float32
    centred = scales - offset
    if n_groups * SCALE_GROUP != n_blocks:
        centred = xp.concatenate([centred, xp.zeros(n_groups * SCALE_GROUP - n_blocks, dtype=xp.float32)])
    groups = centred.reshape(n_groups, SCALE_GROUP)  # (ng, 256)
    group_absmax = xp.abs(groups).max(axis=1)  # (ng,)
    safe = xp.where(group_absmax == 0, xp.ones_like(group_absmax), group_absmax)
    q = xp.rint(groups / safe[:, None] * 127)
    scale_codes = xp.clip(q, -127, 127).astype(xp.int8).reshape(-1)[:n_blocks]
    return scale_codes, group_absmax.astype(xp.float32), offset.astype(xp.float32)


def dequantize_scales(q: NF4Tensor) -> Any:
    """The float32 block scales: stored directly, or s = code / 127 * absmax(group) + mean."""
    if not q.double_quant:
        return q.scales
    xp = backend.get_array_module(q.scale_codes)
    group_scale = xp.repeat(q.scale_scales / 127, SCALE_GROUP)[: q.scale_codes.shape[0]]  # (nb,)
    return q.scale_codes.astype(xp.float32) * group_scale + q.scale_offset


def dequantize_nf4(q: NF4Tensor, dtype: Any = None) -> Any:
    """The weight back as a float array of q.shape: w_hat = NF4_LEVELS[code] * scale[block].

    ``dtype`` is the compute dtype of the result (default: the original weight's).
    """
    xp = backend.get_array_module(q.codes)
    dtype = q.dtype if dtype is None else dtype
    codes = unpack_nibbles(q.codes)  # (nb * bs,)
    values = xp.take(nf4_levels(xp, dtype), codes).reshape(-1, q.block_size)  # (nb, bs): a 16-entry lookup
    scales = dequantize_scales(q).astype(dtype)  # (nb,)
    return (values * scales[:, None]).reshape(-1)[: q.numel].reshape(q.shape)


def nf4_nbytes(shape: tuple[int, ...], block_size: int = 64, double_quant: bool = True) -> int:
    """Bytes NF4 storage takes for a weight of ``shape``, without quantising anything."""
    n = math.prod(shape)
    n_blocks = -(-n // block_size)
    codes = n_blocks * block_size // 2
    if not double_quant:
        return codes + 4 * n_blocks
    return codes + n_blocks + 4 * -(-n_blocks // SCALE_GROUP) + 4
