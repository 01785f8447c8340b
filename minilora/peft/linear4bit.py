"""QLoRA's frozen 4-bit base layer: Linear4bit and its dequantise-on-the-fly op (quantize_model: qlora.py).

QLoRA (Dettmers et al. 2023) stores the frozen base weights W0 as NF4 (see nf4.py)
and trains LoRA on top. The only full-precision W ever built is a temporary one:

    forward:   W = dequant(codes, scales)          (out, in), dropped after the GEMM
               y = x W^T + b
    backward:  W = dequant(codes, scales)          rebuilt, not saved from forward
               g_x = g_y W                         W is frozen: no g_W, ever

so between steps a layer holds 4.127 bits per weight instead of 32. The compute
dtype is the input's (float32 in training, float64 in the gradient check).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from minilora import backend
from minilora.autograd import Function
from minilora.gradcheck_cases import register
from minilora.nn.module import Module, Parameter
from minilora.nn.precision import cast, gemm_dtype
from minilora.ops.linear import check_same_dtype
from minilora.peft.nf4 import NF4Tensor, quantize_nf4

if TYPE_CHECKING:
    from minilora.tensor import Tensor

_BUFFERS_PLAIN = ("codes", "scales")
_BUFFERS_DOUBLE = ("codes", "scale_codes", "scale_scales", "scale_offset")


class NF4Linear(Function):
    """y = x W^T + b, W = dequant(q) (out, in) rebuilt on every call; q is a constant, not an input.

    With x2 = x reshaped to (N, in) and g_y2 = g_y reshaped to (N, out):
    g_x = g_y2 W (W dequantised again: nothing of size out x in is saved),  g_b = sum_n g_y2[n].
    W gets no gradient: the quantised base is frozen by construction.
    """

    def __init__(self, weight: NF4Tensor, has_bias: bool) -> None:
        self.weight = weight  # the packed codes and scales only: the constant being dequantised
        self.has_bias = has_bias

    def forward(self, x: Any, *maybe_b: Any) -> Any:
        b = maybe_b[0] if maybe_b else None
        out_f, in_f = self.weight.shape
        if x.ndim == 0 or x.shape[-1] != in_f:
            raise ValueError(
                f"linear4bit: input of shape {tuple(x.shape)} does not fit the quantised weight of shape "
                f"({out_f}, {in_f}) (the input's last dimension must be in_features)"
            )
        if b is not None and tuple(b.shape) != (out_f,):
            raise ValueError(f"linear4bit: bias of shape {tuple(b.shape)} does not match out_features {out_f}")
        check_same_dtype("linear4bit", x=x, bias=b)
        self.x_shape = x.shape
        x2 = x.reshape(-1, in_f)  # (N, in)
        y = x2 @ self.weight.dequantize(x.dtype).T  # (N, out); the temporary W dies here
        if b is not None:
            y += b
        return y.reshape(*x.shape[:-1], out_f)

    def backward(self, g_y: Any) -> tuple[Any, ...]:
        g_y2 = g_y.reshape(-1, g_y.shape[-1])  # (N, out)
        g_b = g_y2.sum(axis=0) if self.has_bias and self.needs_input_grad[1] else None
        g_x = None
        if self.needs_input_grad[0]:
            g_x = (g_y2 @ self.weight.dequantize(g_y.dtype)).reshape(self.x_shape)  # (N, in) -> x's shape
        return (g_x, g_b) if self.has_bias else (g_x,)


def linear4bit(x: Tensor, weight: NF4Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b with W an NF4-quantised (out_features, in_features) weight (see NF4Linear)."""
    if bias is None:
        return NF4Linear.apply(x, weight=weight, has_bias=False)
    return NF4Linear.apply(x, bias, weight=weight, has_bias=True)


def _case_weight(x: Tensor, out_f: int) -> NF4Tensor:
    """A fixed, irregular (out_f, in) weight built on x's device, quantised in blocks of 4."""
    xp = x.xp
    w = xp.sin(xp.arange(out_f * x.shape[-1], dtype=x.dtype) * 1.7 + 0.3).reshape(out_f, x.shape[-1])
    return quantize_nf4(w, block_size=4)


register(NF4Linear, lambda x, b: linear4bit(x, _case_weight(x, 5), b), (3, 4), (5,), name="NF4Linear")
register(NF4Linear, lambda x: linear4bit(x, _case_weight(x, 3)), (2, 3, 6), name="NF4Linear (3-D input, no bias)")


class Linear4bit(Module):
    """A frozen Linear whose weight is stored as NF4 buffers (QLoRA's base layer).

    Buffers (persistent, so state_dict saves them): ``weight_codes`` (uint8, two codes a
    byte) and ``weight_scales`` (float32 per block), or with double quantisation
    ``weight_scale_codes`` (int8), ``weight_scale_scales`` and ``weight_scale_offset``.
    ``bias`` stays a float Parameter, frozen. No float copy of the weight is kept:
    ``dequantize()`` builds one on demand (for merging, or inspection).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        block_size: int = 64,
        double_quant: bool = True,
        weight: Any = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.block_size, self.double_quant = block_size, double_quant
        if bias:
            self.bias = Parameter(np.zeros(out_features, np.float32), requires_grad=False)
        else:
            self.register_parameter("bias", None)
        # without a weight: an all-zero placeholder of the right shapes, so a saved state_dict loads into it
        self.set_weight(weight if weight is not None else np.zeros((out_features, in_features), np.float32))

    @classmethod
    def from_linear(cls, linear: Module, block_size: int = 64, double_quant: bool = True) -> Linear4bit:
        """Quantise a Linear's weight (on its device); its bias Parameter is kept, frozen."""
        out_f, in_f = linear.weight.shape
        layer = cls(in_f, out_f, False, block_size, double_quant, weight=linear.weight.data)
        if getattr(linear, "bias", None) is not None:
            layer.bias = linear.bias.requires_grad_(False)
        return layer

    def set_weight(self, w: Any) -> None:
        """Quantise ``w`` (out_features, in_features) into this layer's buffers (on w's device)."""
        if tuple(w.shape) != (self.out_features, self.in_features):
            raise ValueError(
                f"Linear4bit.set_weight: weight of shape {tuple(w.shape)} does not match "
                f"(out_features, in_features) = ({self.out_features}, {self.in_features})"
            )
        if backend.is_16bit(w.dtype):
            w = w.astype("float32")  # quantise what is stored, with float32 scales
        q = quantize_nf4(w, self.block_size, self.double_quant)
        for name in set(_BUFFERS_PLAIN + _BUFFERS_DOUBLE) - set(q.arrays()):
            self._buffers.pop(f"weight_{name}", None)
        for name, array in q.arrays().items():
            self.register_buffer(f"weight_{name}", array)

    def quantized_weight(self) -> NF4Tensor:
        """The NF4Tensor view of the buffers (no copy); its float dtype follows the scale buffers'."""
        buf = {n: self._buffers.get(f"weight_{n}") for n in _BUFFERS_PLAIN + _BUFFERS_DOUBLE}
        dtype = (buf["scale_scales"] if self.double_quant else buf["scales"]).dtype  # to(dtype=...) casts these
        shape = (self.out_features, self.in_features)
        return NF4Tensor(
            buf["codes"], buf["scales"], buf["scale_codes"], buf["scale_scales"], buf["scale_offset"],
            shape, dtype, self.block_size,
        )  # fmt: skip

    def dequantize(self, dtype: Any = None) -> Any:
        """The float weight array (out_features, in_features), rebuilt from the codes (a fresh array)."""
        return self.quantized_weight().dequantize(dtype)

    def forward(self, x: Tensor) -> Tensor:
        dt = gemm_dtype(x)  # x's, or autocast's 16 bits: the weight is dequantised into it
        return cast(linear4bit(cast(x, dt), self.quantized_weight(), cast(self.bias, dt)), x.dtype)  # (..., out)

    def weight_bytes(self) -> int:
        """Exact bytes the quantised weight occupies (codes and scales; the bias not included)."""
        return self.quantized_weight().nbytes

    def extra_repr(self) -> str:
        dq = ", double_quant" if self.double_quant else ""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"nf4 block_size={self.block_size}{dq}"
        )
