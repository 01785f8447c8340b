"""Fused scaled dot-product attention with a hand-written backward, grouped-query attention included.

q (B, nh, Tq, hs), k and v (B, nkv, Tk, hs) with nkv dividing nh (nkv = nh: multi-head
attention; nkv < nh: grouped-query attention, each key/value head serving nh / nkv query
heads, as in Llama 3 and Qwen2). Composed of primitive ops the graph would save the
scores, the masked scores, the exponentials and the probabilities, four (B, nh, Tq, Tk) arrays; fused, it saves only the
probabilities P (plus a boolean dropout mask when dropout is on) and q, k, v.

Causal masking is aligned to the END: query i may see key j <= i + (Tk - Tq).
With a KV cache or key/value prefixes (prefix tuning) the queries are the last
Tq positions of a longer sequence, so this is the right alignment; for
Tk == Tq it is the usual lower triangle.

Fully masked rows (a query that may see no key) give an output of 0 and a
zero gradient instead of NaN: their row maximum is -inf, replaced by 0, so
exp(-inf - 0) = 0 and the normaliser 0 is replaced by 1.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.random import Generator

from minilora import backend
from minilora.autograd import Function
from minilora.gradcheck_cases import register, spec
from minilora.ops.dropout import keep_mask
from minilora.ops.linear import check_same_dtype
from minilora.parallel import for_rows

if TYPE_CHECKING:
    from minilora.tensor import Tensor


def causal_mask(xp: Any, Tq: int, Tk: int) -> Any:
    """(Tq, Tk) booleans, True where query i may attend key j: j <= i + (Tk - Tq)."""
    return xp.arange(Tk)[None, :] <= xp.arange(Tq)[:, None] + (Tk - Tq)


BLOCK_ROWS = 64  # causal attention runs in query blocks of this many rows (see ScaledDotProductAttention)


def query_blocks(Tq: int, Tk: int, causal_only: bool) -> list[tuple[int, int, int]]:
    """(first row, end row, number of keys) per query block: one block unless the mask is purely causal.

    Under a causal mask the query rows [r0, r1) see only keys [0, r1 + Tk - Tq): computing each block against
    just those keys skips most of the masked upper triangle (about 3/8 of the scores at T = 4 blocks).
    """
    if not causal_only or Tk < Tq or Tq < 2 * BLOCK_ROWS:
        return [(0, Tq, Tk)]
    return [(r0, min(r0 + BLOCK_ROWS, Tq), min(r0 + BLOCK_ROWS, Tq) + Tk - Tq) for r0 in range(0, Tq, BLOCK_ROWS)]


def group_mask(allowed: Any, nkv: int, g: int) -> Any:
    """A "may attend" array broadcastable to (B, nh, Tq, Tk) as one broadcastable to (B, nkv, g, Tq, Tk)."""
    if allowed is None:
        return None
    a = allowed.reshape((1,) * (4 - allowed.ndim) + tuple(allowed.shape))  # (b, h, tq, tk), h in {1, nh}
    b, h, tq, tk = a.shape
    return a.reshape(b, nkv, g, tq, tk) if h != 1 else a.reshape(b, 1, 1, tq, tk)


def _masked_softmax_(xp: Any, att: Any, allowed: Any) -> None:
    """att = softmax(att masked to -inf where not ``allowed``) over the last axis, in place (None: no mask).

    A fully masked row gives zeros, not NaN: its maximum -inf is replaced by 0 (exp(-inf) = 0) and its
    normaliser 0 by 1. The plain formula: P = exp(S - max S) / sum exp(S - max S).
    """
    if allowed is not None:
        xp.copyto(att, -xp.inf, where=~allowed)  # in place: no masked copy
    row_max = att.max(axis=-1, keepdims=True)  # (..., 1)
    if allowed is not None:
        row_max = xp.where(xp.isfinite(row_max), row_max, 0.0)
    att -= row_max
    xp.exp(att, out=att)
    denom = att.sum(axis=-1, keepdims=True)  # (..., 1)
    if allowed is not None:
        denom = xp.where(denom == 0, 1.0, denom)
    att *= 1.0 / denom  # a multiply by (..., 1) reciprocals is cheaper than a divide


class ScaledDotProductAttention(Function):
    """out = D(P) V,  P = softmax(S),  S = scale * q k^T masked to -inf,  scale = 1/sqrt(hs),
    D(P) = P * m / (1 - p_drop) (dropout on the probabilities, m the keep mask).

    g_V = D(P)^T g_out,  g_D = g_out V^T,  g_P = g_D * m / (1 - p_drop),
    g_S = P * (g_P - delta),  delta_i = sum_j g_P_ij P_ij = sum_d g_out_id out_id
    (FlashAttention's identity, as out = D(P) V: the row sums cost a (Tq, hs) pass, not a (Tq, Tk) one;
    masked entries have P = 0 so g_S = 0),
    g_q = scale * g_S k,  g_k = g_S^T (scale * q)  (the scale goes on the small operands).

    Grouped-query attention: k and v have nkv heads, q has nh = g * nkv; query head h = kv * g + j uses kv head
    kv. The g query heads of a group are stacked along the rows, q (B, nkv, g * Tq, hs), so each kv head meets
    its g * Tq query rows in one product and no repeated copy of k or v exists. The group's gradients then sum
    inside those products: g_k[kv] = sum_j g_S[kv, j]^T qs[kv, j] = g_S_stacked^T qs_stacked, likewise g_v.

    With a purely causal mask the rows are computed in blocks (query_blocks), each against the keys it
    may see; the skipped scores have P = 0, so they add nothing to out, g_V or g_k, and their g_S is 0.
    """

    fresh_grads = True  # g_q, g_k, g_v are new arrays

    def __init__(self, allowed: Any, dropout_p: float, device: str, causal_only: bool = False) -> None:
        self.allowed, self.dropout_p, self.device = allowed, dropout_p, device
        self.causal_only = causal_only and dropout_p == 0.0  # dropout keeps one mask over all the scores

    def forward(self, q: Any, k: Any, v: Any) -> Any:
        return self._forward(q, k, v, *self.needs_input_grad)

    def backward(self, g_out: Any) -> tuple[Any, Any, Any]:
        return self._backward(g_out, *self.needs_input_grad)

    def _rows(self, a: Any, r0: int, r1: int) -> Any:
        """Query rows [r0, r1) of a grouped (B, nkv, g, Tq, hs) array, stacked: (B, nkv, g * rows, hs).

        A view for one block (or g = 1); a copy of the block's rows otherwise (small: hs wide).
        """
        B, nkv, g, _, hs = a.shape
        return a[:, :, :, r0:r1].reshape(B, nkv, g * (r1 - r0), hs)

    def _forward(self, q: Any, k: Any, v: Any, need_q: bool, need_k: bool, need_v: bool) -> Any:
        """The forward on raw arrays, told which of q, k, v need a gradient (SelfAttentionQKV reuses it)."""
        xp = self.xp
        B, nh, Tq, hs = q.shape
        nkv, Tk = k.shape[1], k.shape[2]
        g = nh // nkv
        self.hs = hs
        self.blocks = query_blocks(Tq, Tk, self.causal_only)
        # (B, nkv, g, Tq, hs): scaling q is a 4x smaller pass than S, and gives a fresh array to stack rows of
        qs = q.reshape(B, nkv, g, Tq, hs) * (1.0 / math.sqrt(hs))
        allowed5 = group_mask(self.allowed, nkv, g) if len(self.blocks) == 1 else None
        Ps, outs, m = [], [], None
        for r0, r1, kend in self.blocks:
            rows = r1 - r0
            att = self._rows(qs, r0, r1) @ xp.swapaxes(k[:, :, :kend], -1, -2)  # S, (B, nkv, g * rows, keys)
            if len(self.blocks) == 1:  # a user mask may vary over batch and heads: one call
                _masked_softmax_(xp, att.reshape(B, nkv, g, rows, kend), allowed5)
            else:  # causal blocks: one (rows, keys) mask for every head, so the heads split over the cores
                att4 = att.reshape(B * nkv, g, rows, kend)  # a view (att is our own fresh array)
                mask = causal_mask(xp, rows, kend)
                for_rows(xp, B * nkv, g * rows * kend, lambda a, b, s=att4, m=mask: _masked_softmax_(xp, s[a:b], m))
            att_d = att
            if self.dropout_p > 0.0:  # one block then; the mask is the same as over (B, nh, Tq, Tk)
                m = keep_mask(att.shape, self.dropout_p, self.device)
                att_d = att * m * xp.asarray(1.0 / (1.0 - self.dropout_p), dtype=att.dtype)
            Ps.append(att)
            outs.append((att_d @ v[:, :, :kend]).reshape(B, nkv, g, rows, -1))  # (B, nkv, g, rows, hv)
        self.allowed = None
        out = outs[0] if len(outs) == 1 else xp.concatenate(outs, axis=3)  # (B, nkv, g, Tq, hv)
        need_s = need_q or need_k  # the score gradient needs v and out; g_q needs k, g_k needs q
        if need_q or need_k or need_v:
            self.saved = (qs if need_k else None, k if need_q else None, v if need_s else None, Ps, m,
                          out if need_s else None)
        return out.reshape(B, nh, Tq, -1)  # (B, nh, Tq, hv)

    def _backward(self, g_out: Any, need_q: bool, need_k: bool, need_v: bool) -> tuple[Any, Any, Any]:
        xp = self.xp
        qs, k, v, Ps, m, out = self.saved
        B, nh, Tq, hv = g_out.shape
        nkv, hs = Ps[0].shape[1], self.hs
        g = nh // nkv
        g_out = g_out.reshape(B, nkv, g, Tq, hv)  # grouped like q
        scale = 1.0 / math.sqrt(hs)
        keep_scale = xp.asarray(1.0 / (1.0 - self.dropout_p), dtype=Ps[0].dtype) if m is not None else None
        need_s = need_q or need_k
        delta = (g_out * out).sum(axis=-1, keepdims=True) if need_s else None  # (B, nkv, g, Tq, 1)
        g_q = g_k = g_v = None
        # The last block sees every key: going backwards, its results become g_k and g_v (fresh), and the
        # earlier blocks add into their leading rows in place.
        for (r0, r1, kend), P in zip(reversed(self.blocks), reversed(Ps)):
            g_o = self._rows(g_out, r0, r1)  # (B, nkv, g * rows, hs)
            if need_v:
                D = P * m * keep_scale if m is not None else P
                g_vb = xp.swapaxes(D, -1, -2) @ g_o  # (B, nkv, keys, hs): the group's rows summed in the product
                if g_v is None:
                    g_v = g_vb
                else:
                    g_v[:, :, :kend] += g_vb
            if not need_s:
                continue
            g_S = g_o @ xp.swapaxes(v[:, :, :kend], -1, -2)  # g_D, (B, nkv, g * rows, keys): fresh, in place
            if m is not None:
                g_S *= m
                g_S *= keep_scale  # g_P
            d_b = self._rows(delta, r0, r1)  # (B, nkv, g * rows, 1)

            def score_grad(a: int, b: int, g_S: Any = g_S, d_b: Any = d_b, P: Any = P) -> None:
                g_S[a:b] -= d_b[a:b]
                g_S[a:b] *= P[a:b]  # g_S / scale: the score scale goes on the small operands

            for_rows(xp, B, g_S[0].size, score_grad)
            if need_q:
                g_qb = g_S @ k[:, :, :kend]  # (B, nkv, g * rows, hs)
                g_qb *= scale
                if len(self.blocks) == 1:
                    g_q = g_qb.reshape(B, nh, Tq, hs)
                else:
                    if g_q is None:
                        g_q = xp.empty((B, nkv, g, Tq, hs), dtype=g_out.dtype)
                    g_q[:, :, :, r0:r1] = g_qb.reshape(B, nkv, g, r1 - r0, hs)
            if need_k:
                g_kb = xp.swapaxes(g_S, -1, -2) @ self._rows(qs, r0, r1)  # (B, nkv, keys, hs); qs carries the scale
                if g_k is None:
                    g_k = g_kb
                else:
                    g_k[:, :, :kend] += g_kb
        if g_q is not None and g_q.ndim == 5:
            g_q = g_q.reshape(B, nh, Tq, hs)
        return g_q, g_k, g_v


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Any = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    training: bool = True,
) -> Tensor:
    """softmax(q k^T / sqrt(hs) + masking) v, fused (see ScaledDotProductAttention).

    q (B, nh, Tq, hs); k, v (B, nkv, Tk, hs) with nh % nkv == 0: grouped-query attention, query head h uses
    key/value head h // (nh // nkv) (PyTorch's enable_gqa, transformers' repeat_kv), without repeating k or v.
    mask: booleans broadcastable to (B, nh, Tq, Tk), True where a query may attend a key.
    causal: query i sees keys j <= i + (Tk - Tq) (aligned to the end). dropout_p applies to the
    attention probabilities when ``training``.
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            "scaled_dot_product_attention: q, k, v must be 4-D (B, nh, T, hs), got shapes "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    B, nh, Tq, hs = q.shape
    nkv, Tk = k.shape[1], k.shape[2]
    if k.shape != (B, nkv, Tk, hs) or v.shape[:3] != (B, nkv, Tk) or nh % nkv:
        raise ValueError(
            "scaled_dot_product_attention: q (B, nh, Tq, hs), k (B, nkv, Tk, hs), v (B, nkv, Tk, hv) "
            f"with nkv dividing nh do not fit: got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    check_same_dtype("scaled_dot_product_attention", q=q.data, k=k.data, v=v.data)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must be in [0, 1), got {dropout_p}")
    allowed = allowed_mask("scaled_dot_product_attention", mask, causal, (B, nh, Tq, Tk), q)
    p = dropout_p if training else 0.0
    return ScaledDotProductAttention.apply(q, k, v, allowed=allowed, dropout_p=p, device=q.device,
                                          causal_only=causal and mask is None)


def allowed_mask(op: str, mask: Any, causal: bool, shape: tuple[int, int, int, int], q: Tensor) -> Any:
    """The boolean "may attend" array (None: no masking) from a user mask and/or causality, checked for ``op``."""
    from minilora.tensor import Tensor  # noqa: PLC0415  (tensor.py imports the ops)

    B, nh, Tq, Tk = shape
    xp = q.xp
    allowed = None
    if mask is not None:
        mdata = mask.data if isinstance(mask, Tensor) else mask
        if not backend.is_array(mdata) or mdata.dtype != np.bool_:
            raise TypeError(
                f"{op}: mask must be a boolean array or Tensor (True = may attend), "
                f"got {getattr(mdata, 'dtype', type(mdata).__name__)}"
            )
        if backend.device_of(mdata) != q.device:
            raise RuntimeError(f"{op}: mask is on {backend.device_of(mdata)}, the input on {q.device}")
        try:
            np.broadcast_shapes(tuple(mdata.shape), (B, nh, Tq, Tk))
        except ValueError:
            raise ValueError(
                f"{op}: mask of shape {tuple(mdata.shape)} does not broadcast to (B, nh, Tq, Tk) = {(B, nh, Tq, Tk)}"
            ) from None
        allowed = mdata
    if causal:
        c = causal_mask(xp, Tq, Tk)  # (Tq, Tk)
        allowed = c if allowed is None else allowed & c
    return allowed


def _bool_mask(*shape: int) -> Any:
    def make(rng: Generator) -> np.ndarray:
        m = rng.random(shape) < 0.7
        m[..., 0] = True  # every query sees at least one key
        return m

    return spec("bool " + "x".join(map(str, shape)), make)


def _fully_masked_row(rng: Generator) -> np.ndarray:
    m = np.ones((1, 1, 3, 4), dtype=bool)
    m[..., 1, :] = False
    return m


_sdpa = scaled_dot_product_attention
register(ScaledDotProductAttention, lambda q, k, v: _sdpa(q, k, v), (1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4),
         name="Attention")
register(ScaledDotProductAttention, lambda q, k, v: _sdpa(q, k, v, causal=True), (2, 1, 4, 3), (2, 1, 4, 3),
         (2, 1, 4, 3), name="Attention (causal)")
register(ScaledDotProductAttention, lambda q, k, v: _sdpa(q, k, v, causal=True), (1, 2, 2, 3), (1, 2, 5, 3),
         (1, 2, 5, 3), name="Attention (causal, Tk > Tq)")
register(ScaledDotProductAttention, lambda q, k, v: _sdpa(q, k, v), (2, 4, 3, 2), (2, 2, 3, 2), (2, 2, 3, 2),
         name="Attention (grouped-query, 4 heads on 2)")
register(ScaledDotProductAttention, lambda q, k, v: _sdpa(q, k, v, causal=True), (1, 3, 2, 3), (1, 1, 4, 3),
         (1, 1, 4, 3), name="Attention (grouped-query, causal, Tk > Tq, 3 heads on 1)")
register(ScaledDotProductAttention, lambda q, k, v, m: _sdpa(q, k, v, mask=m, causal=True), (2, 4, 3, 2),
         (2, 2, 3, 2), (2, 2, 3, 2), _bool_mask(2, 4, 3, 3), name="Attention (grouped-query, per-head mask)")
register(ScaledDotProductAttention, lambda q, k, v, m: _sdpa(q, k, v, mask=m), (2, 1, 3, 4), (2, 1, 5, 4),
         (2, 1, 5, 4), _bool_mask(2, 1, 1, 5), name="Attention (padding mask)")
register(ScaledDotProductAttention, lambda q, k, v, m: _sdpa(q, k, v, mask=m), (1, 1, 3, 2), (1, 1, 4, 2),
         (1, 1, 4, 2), spec("bool 1x1x3x4 (row 1 masked)", _fully_masked_row), name="Attention (fully masked row)")


def _dropout_case(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    backend.manual_seed(0)  # the same dropout mask in every finite-difference evaluation
    return _sdpa(q, k, v, causal=True, dropout_p=0.3)


register(ScaledDotProductAttention, _dropout_case, (1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4),
         name="Attention (causal, dropout)")
register(ScaledDotProductAttention, _dropout_case, (1, 4, 3, 2), (1, 2, 3, 2), (1, 2, 3, 2),
         name="Attention (grouped-query, causal, dropout)")


def _blocked_gqa_case(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    global BLOCK_ROWS
    saved, BLOCK_ROWS = BLOCK_ROWS, 2  # 2-row query blocks: the blocked causal path on a small case
    try:
        return _sdpa(q, k, v, causal=True)
    finally:
        BLOCK_ROWS = saved


register(ScaledDotProductAttention, _blocked_gqa_case, (1, 4, 5, 2), (1, 2, 6, 2), (1, 2, 6, 2),
         name="Attention (grouped-query, causal, query blocks)")
