"""The LM head and its cross entropy fused and computed by chunks of tokens.

Plain reference (what ``F.cross_entropy(F.linear(h, W, b), t)`` computes):

    z = h W^T + b           (N, V)   the logits
    loss = mean over valid n of  lse(z[n]) - z[n, t_n]

At a vocabulary of 49,152 and 1,024 tokens z is 201 MB in float32, and the composed graph keeps it
(Linear's output) and softmax(z) (CrossEntropy's saved p) alive until backward: 403 MB. Here the N
rows are taken ``chunk_size`` at a time. For each chunk, the logits are made, reduced to its loss,
and turned into the chunk's gradient at once (the loss is a scalar, so g_z = g_loss * (p - onehot)
/ count needs only g_loss, which backward supplies as a factor):

    z_c = h_c W^T + b,  p_c = softmax(z_c),  g_z_c = w_c (p_c - (1 - eps) onehot(t_c) - eps / V)
    g_h_c = g_z_c W,   g_W += g_z_c^T h_c,   g_b += sum_n g_z_c[n]

and then dropped: the largest temporary is (chunk_size, V), and what is kept for backward is g_h
(N, C) and g_W (V, C) (the sizes of h and W; only those whose inputs need a gradient: a frozen, tied
embedding keeps none). Backward multiplies them by g_loss. This is the fused linear cross entropy of
Liger-Kernel and of Apple's Cut Cross-Entropy, minus their GPU kernels; the GEMM count is the same
as the composed path's (three), so it costs no recompute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from minilora.autograd import Function
from minilora.gradcheck_cases import register, spec
from minilora.ops.embedding import as_index_array, check_indices
from minilora.ops.linear import check_same_dtype

if TYPE_CHECKING:
    from minilora.tensor import Tensor

CHUNK_ELEMENTS = 1 << 22  # logits per chunk (16 MB in float32): rows per chunk = CHUNK_ELEMENTS // V


class LinearCrossEntropy(Function):
    """loss = sum_n v_n [(1 - eps)(lse_n - z[n, t_n]) + eps (lse_n - mean_c z[n, c])] / max(count, 1),
    z = h W^T + b, v_n = (t_n != ignore_index), by chunks of rows (see the module docstring).

    g_h = g_loss * G_h,  g_W = g_loss * G_W,  g_b = g_loss * G_b, with G_h, G_W, G_b summed chunk by
    chunk in forward from g_z_c = v_c / count * (p_c - (1 - eps) onehot(t_c) - eps / V).
    """

    fresh_grads = True

    def __init__(self, targets: Any, ignore_index: int, label_smoothing: float, chunk_size: int | None) -> None:
        self.targets, self.ignore_index, self.eps, self.chunk_size = targets, ignore_index, label_smoothing, chunk_size

    def forward(self, h: Any, w: Any, *maybe_b: Any) -> Any:
        xp, eps = self.xp, self.eps
        b = maybe_b[0] if maybe_b else None
        N, C = h.shape
        V = w.shape[0]
        check_same_dtype("linear_cross_entropy", h=h, weight=w, bias=b)
        need_h, need_w = self.needs_input_grad[:2]
        need_b = b is not None and self.needs_input_grad[2]
        t = self.targets
        self.targets = None
        valid = t != self.ignore_index  # (N,)
        t_safe = xp.where(valid, t, 0)
        count = xp.maximum(valid.sum(), 1).astype(h.dtype)
        weight = valid.astype(h.dtype) / count  # (N,): 1/count on valid rows, 0 on ignored
        g_h = xp.empty_like(h) if need_h else None  # (N, C)
        g_w = xp.zeros_like(w) if need_w else None  # (V, C)
        g_b = xp.zeros_like(b) if need_b else None  # (V,)
        step = self.chunk_size or max(1, CHUNK_ELEMENTS // V)
        loss = xp.zeros((), dtype=h.dtype)
        for s in range(0, N, step):
            e = min(s + step, N)
            hc, tc, wc = h[s:e], t_safe[s:e], weight[s:e]  # (n, C), (n,), (n,)
            rows = xp.arange(e - s)
            z = hc @ w.T  # (n, V)
            if b is not None:
                z += b
            z -= z.max(axis=-1, keepdims=True)
            p = xp.exp(z)  # (n, V)
            ssum = p.sum(axis=-1)  # (n,)
            lse = xp.log(ssum)
            nll = lse - z[rows, tc]
            if eps:
                nll = (1.0 - eps) * nll + eps * (lse - z.mean(axis=-1))
            loss += (nll * wc).sum()
            del z
            if not (need_h or need_w or need_b):
                continue
            p /= ssum[:, None]  # softmax
            if eps:
                p -= eps / V
            p[rows, tc] -= 1.0 - eps
            p *= wc[:, None]  # g_z_c for g_loss = 1
            if need_h:
                g_h[s:e] = p @ w  # (n, C)
            if need_w:
                g_w += p.T @ hc  # (V, C)
            if need_b:
                g_b += p.sum(axis=0)
        self.save_for_backward(g_h, g_w, g_b)
        return loss

    def backward(self, g_loss: Any) -> tuple[Any, ...]:
        g_h, g_w, g_b = self.saved
        grads = (g_h, g_w, g_b)[: len(self.needs_input_grad)]  # (h, W) or (h, W, b)
        return tuple(None if g is None else g * g_loss for g in grads)


def linear_cross_entropy(
    h: Tensor,
    weight: Tensor,
    targets: Any,
    bias: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
    check_targets: bool = True,
) -> Tensor:
    """``cross_entropy(linear(h, weight, bias), targets)`` without ever holding the (N, V) logits for backward.

    h (N, C) or (B, T, C), weight (V, C), targets of h's leading shape. ``chunk_size`` rows at a time
    (default: ``CHUNK_ELEMENTS // V``, 16 MB of float32 logits per chunk). Arguments as cross_entropy's.
    """
    t = as_index_array("linear_cross_entropy", targets, h.device)
    if h.ndim < 2 or tuple(t.shape) != tuple(h.shape[:-1]) or weight.ndim != 2 or weight.shape[1] != h.shape[-1]:
        raise ValueError(
            f"linear_cross_entropy: h {tuple(h.shape)}, weight {tuple(weight.shape)} and targets {tuple(t.shape)} "
            "do not fit (h (..., C), weight (V, C), targets h's leading shape)"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"linear_cross_entropy: bias {tuple(bias.shape)} must be (V,) = ({weight.shape[0]},)")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"linear_cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"linear_cross_entropy: chunk_size must be a positive integer, got {chunk_size!r}")
    if check_targets:
        check_indices("linear_cross_entropy", t, weight.shape[0], ignore=ignore_index, what="target")
    C = h.shape[-1]
    h2 = h.reshape(-1, C) if h.ndim != 2 else h  # (N, C)
    extra = (bias,) if bias is not None else ()
    return LinearCrossEntropy.apply(h2, weight, *extra, targets=t.reshape(-1), ignore_index=ignore_index,
                                    label_smoothing=label_smoothing, chunk_size=chunk_size)


def _targets(*shape: int, high: int) -> Any:
    def make(rng: np.random.Generator) -> np.ndarray:  # host: gradcheck inputs are made on the host, then moved
        t = rng.integers(0, high, shape)
        t.flat[::4] = -100
        return t

    return spec("int " + "x".join(map(str, shape)) + " (some -100)", make)


register(LinearCrossEntropy, lambda h, w, t: linear_cross_entropy(h, w, t, chunk_size=2), (5, 3), (7, 3),
         _targets(5, high=7), name="LinearCrossEntropy (chunks of 2)")
register(LinearCrossEntropy, lambda h, w, b, t: linear_cross_entropy(h, w, t, b, label_smoothing=0.1, chunk_size=3),
         (2, 4, 3), (6, 3), (6,), _targets(2, 4, high=6), name="LinearCrossEntropy (B, T, C), bias, smoothing")
