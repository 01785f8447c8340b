"""Fused multi-head self-attention on the c_attn output: split_heads, attention and merge_heads in one Function.

GPT's c_attn projects x to q, k and v side by side, (B, T, 3C). Composed of split
(three GetItem slices), reshapes and transposes, the backward would build each of
g_q, g_k, g_v as its own zero-padded (B, T, 3C) array and copy it out of the heads
layout, and the engine would then add the three. Fused, q, k and v are strided
views of qkv (no copy), and the backward writes the three gradients into ONE
(B, T, 3C) array, each element once. The output comes back as (B, T, C) with the
heads side by side, ready for c_proj. The attention itself is
ScaledDotProductAttention's (same masks, causal alignment and dropout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minilora import backend
from minilora.gradcheck_cases import register
from minilora.ops.attention import ScaledDotProductAttention, allowed_mask

if TYPE_CHECKING:
    from minilora.tensor import Tensor


class SelfAttentionQKV(ScaledDotProductAttention):
    """y = merge_heads(attention(q, k, v)),  (q, k, v) = split_heads(qkv),  qkv (B, T, 3C), hs = C / nh:

    q[b, h, t, d] = qkv[b, t, h hs + d],  k: offset C,  v: offset 2C  (split_heads, a view),
    y[b, t, h hs + d] = o[b, h, t, d]  (merge_heads),  o = attention(q, k, v) as in ScaledDotProductAttention.

    g_o[b, h, t, d] = g_y[b, t, h hs + d]  (a view),  g_q, g_k, g_v from ScaledDotProductAttention's backward,
    g_qkv[b, t, i C + h hs + d] = (g_q, g_k, g_v)[i][b, h, t, d]  (one array; each element written once).
    """

    fresh_grads = True  # g_qkv is a new array

    def __init__(self, n_head: int, allowed: Any, dropout_p: float, device: str, causal_only: bool = False) -> None:
        super().__init__(allowed, dropout_p, device, causal_only)
        self.n_head = n_head

    def _heads(self, a: Any, parts: int) -> Any:
        """(B, T, parts * C) -> (parts, B, nh, T, hs): a strided view, no copy."""
        B, T, width = a.shape
        nh = self.n_head
        return a.reshape(B, T, parts, nh, width // (parts * nh)).transpose(2, 0, 3, 1, 4)

    def forward(self, qkv: Any) -> Any:
        B, T, _ = qkv.shape
        heads = self._heads(qkv, 3)  # (3, B, nh, T, hs), a view of qkv
        q, k, v = heads[0], heads[1], heads[2]  # (B, nh, T, hs) each (indexed: CuPy arrays do not unpack)
        need = self.needs_input_grad[0]
        o = self._forward(q, k, v, need, need, need)  # (B, nh, T, hs)
        return o.transpose(0, 2, 1, 3).reshape(B, T, -1)  # (B, T, C): merge_heads, one copy

    def backward(self, g_y: Any) -> tuple[Any]:
        g_o = self._heads(g_y, 1)[0]  # (B, nh, T, hs), a view of g_y
        grads = self._backward(g_o, True, True, True)
        B, T, C = g_y.shape
        g_qkv = self.xp.empty((B, T, 3 * C), dtype=g_y.dtype)
        heads = self._heads(g_qkv, 3)  # (3, B, nh, T, hs), a view: assigning into it fills g_qkv
        for i, g in enumerate(grads):
            heads[i] = g
        return (g_qkv,)


def self_attention(
    qkv: Tensor,
    n_head: int,
    mask: Any = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    training: bool = True,
) -> Tensor:
    """Multi-head attention of the fused projection ``qkv`` (B, T, 3C) = [q | k | v] onto (B, T, C), heads side by side.

    The same as splitting qkv into q, k, v, reshaping each to (B, n_head, T, C / n_head), calling
    scaled_dot_product_attention(q, k, v, mask, causal, dropout_p, training) and merging the heads back,
    as one fused op (see SelfAttentionQKV). mask broadcasts to (B, n_head, T, T).
    """
    if qkv.ndim != 3 or qkv.shape[2] % (3 * n_head):
        raise ValueError(
            f"self_attention: qkv must be (B, T, 3C) with C divisible by n_head={n_head}, got shape {tuple(qkv.shape)}"
        )
    if not backend.is_floating(qkv.dtype):
        raise TypeError(f"self_attention: expected a floating-point qkv, got dtype {qkv.dtype}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"self_attention: dropout_p must be in [0, 1), got {dropout_p}")
    B, T, _ = qkv.shape
    allowed = allowed_mask("self_attention", mask, causal, (B, n_head, T, T), qkv)
    p = dropout_p if training else 0.0
    return SelfAttentionQKV.apply(qkv, n_head=n_head, allowed=allowed, dropout_p=p, device=qkv.device,
                                  causal_only=causal and mask is None)


register(SelfAttentionQKV, lambda x: self_attention(x, 2), (2, 3, 12), name="SelfAttentionQKV")
register(SelfAttentionQKV, lambda x: self_attention(x, 2, causal=True), (2, 4, 6), name="SelfAttentionQKV (causal)")
