"""IA3 (Liu et al. 2022, "(IA)^3"): learned vectors, initialised to ones, that rescale activations.

The paper rescales three things in every Transformer block:

- keys and values:  k = l_k * (W_k x + b_k),  v = l_v * (W_v x + b_v)  (elementwise, l_k, l_v of size C);
- the feed-forward's inner activation:  h = W_2 (l_ff * gelu(W_1 x)) + b_2,  l_ff of size 4C.

GPT-2 computes q, k and v with ONE fused Linear (c_attn, output 3C laid out [q | k | v]), so for it the
output is multiplied by [1 | l_k | l_v]: the query part is left untouched because the paper does not
scale queries (scaling q and k together would only rescale attention logits twice, adding no
expressiveness per parameter). The feed-forward vector scales the INPUT of mlp.c_proj, which is exactly
the MLP's inner activation. Any other targeted Linear gets one output vector l (size out_features).

Gradients (through the existing Mul/Concat/Linear ops): g_l = sum over positions of g_y * (W x + b) for an
output scale, and g_l = sum over positions of x * (W^T g_y) for an input scale. Mergeable:
an output scale multiplies rows of W (and b), an input scale multiplies columns of W.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from minilora import functional as F  # noqa: N812
from minilora.nn import Linear, Module, Parameter
from minilora.peft.base_layer import PeftLayer
from minilora.peft.config import PeftConfig
from minilora.tensor import Tensor


@dataclasses.dataclass
class IA3Config(PeftConfig):
    """IA3 (Liu et al. 2022): learned vectors, initialised to ones, rescale keys, values and MLP activations.

    ``None`` takes the model family's defaults (``family_of(model).ia3_targets`` / ``ia3_feedforward``).
    """

    peft_type: ClassVar[str] = "IA3"
    target_modules: str | tuple[str, ...] | None = None
    feedforward_modules: str | tuple[str, ...] | None = None  # scaled on their input, the rest on K, V
    modules_to_save: tuple[str, ...] = ()


class IA3Linear(PeftLayer):
    """A Linear whose output (k/v part, or all of it) or input is rescaled by learned vectors."""

    slot_names = ("ia3_l", "ia3_l_k", "ia3_l_v")

    def __init__(self, base_layer: Module, feedforward: bool, kv_fused: bool) -> None:
        if not isinstance(base_layer, Linear):
            raise TypeError(f"IA3Linear: expected a Linear to wrap, got {type(base_layer).__name__}")
        super().__init__(base_layer)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        if kv_fused and self.out_features != 3 * self.in_features:
            raise ValueError(
                f"IA3Linear: a fused q/k/v projection must map C to 3C, got {self.in_features} -> {self.out_features}"
            )
        self.feedforward, self.kv_fused = feedforward, kv_fused and not feedforward

    def add_adapter(self, name: str, activate: bool = False) -> None:
        xp, dtype = self.base_layer.weight.xp, self.adapter_dtype()
        if self.feedforward:
            slots = {"ia3_l": Parameter(xp.ones((self.in_features,), dtype=dtype))}  # (in,)
        elif self.kv_fused:
            C = self.in_features
            slots = {"ia3_l_k": Parameter(xp.ones((C,), dtype=dtype)), "ia3_l_v": Parameter(xp.ones((C,), dtype=dtype))}
        else:
            slots = {"ia3_l": Parameter(xp.ones((self.out_features,), dtype=dtype))}  # (out,)
        self._register_slots(name, slots, {}, activate)

    def _output_scale(self) -> Tensor:
        if not self.kv_fused:
            return self.ia3_l  # (out,)
        ones = Tensor(self.ia3_l_k.xp.ones((self.in_features,), dtype=self.ia3_l_k.dtype))
        return F.concat([ones, self.ia3_l_k, self.ia3_l_v], axis=0)  # (3C,): [1 | l_k | l_v]

    def forward(self, x: Tensor) -> Tensor:
        if not self.has_active or self.merged:
            return self.base_layer(x)
        if self.feedforward:
            return self.base_layer(x * self.ia3_l)  # (..., in) scaled, then W
        return self.base_layer(x) * self._output_scale()  # (..., out) scaled

    def merge_deltas(self) -> dict[str, Any]:
        w = self.base_layer.weight.data
        if self.feedforward:
            return {"weight": w * (self.ia3_l.data[None, :] - 1)}  # columns of W scaled by l
        scale = self._output_scale().data
        deltas = {"weight": w * (scale[:, None] - 1)}  # rows of W scaled by l
        if self.base_layer.bias is not None:
            deltas["bias"] = self.base_layer.bias.data * (scale - 1)
        return deltas

    def extra_repr(self) -> str:
        kind = "input" if self.feedforward else ("k,v output" if self.kv_fused else "output")
        return f"active={self.active_adapter!r}, scales={kind}"
