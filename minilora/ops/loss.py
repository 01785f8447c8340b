"""Fused cross entropy: log-softmax and negative log-likelihood in one Function.

Composed of log_softmax, a gather and a mean, the graph would save the full
(N, C) log-probabilities twice; fused, it saves p = softmax(logits) once and the
gradient is one subtraction at the target column.

Targets out of range are checked with one explicit host sync (CuPy would
silently wrap them); ``check_targets=False`` or
``minilora.ops.embedding.CHECK_INDICES = False`` switches it off.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.random import Generator

from minilora.autograd import Function
from minilora.gradcheck_cases import register, spec
from minilora.ops.embedding import as_index_array, check_indices

if TYPE_CHECKING:
    from minilora.tensor import Tensor


class CrossEntropy(Function):
    """Mean over valid rows n (t_n != ignore_index) of the smoothed NLL, from logits x (N, C):

    z = x - max(x),  lse = log(sum(exp(z))),  logp = z - lse,  p = exp(logp),
    loss_n = -(1 - eps) logp[n, t_n] - (eps / C) sum_c logp[n, c],  loss = sum_n valid_n loss_n / max(count, 1).
    g_x[n] = g_loss * valid_n / max(count, 1) * (p[n] - (1 - eps) onehot(t_n) - eps / C).
    With every target ignored, count is 0: the loss is 0 and so is the gradient (no NaN, no host sync).
    """

    def __init__(self, targets: Any, ignore_index: int, label_smoothing: float) -> None:
        self.targets, self.ignore_index, self.eps = targets, ignore_index, label_smoothing

    def forward(self, x: Any) -> Any:
        xp = self.xp
        shape = x.shape
        N, C = math.prod(shape[:-1]), shape[-1]
        x2 = x.reshape(N, C)  # (N, C)
        t = self.targets.reshape(N)  # (N,)
        valid = t != self.ignore_index
        t_safe = xp.where(valid, t, 0)  # ignored rows gather column 0, then get weight 0
        rows = xp.arange(N)
        z = x2 - x2.max(axis=-1, keepdims=True)  # (N, C)
        p = xp.exp(z)
        s = p.sum(axis=-1)  # (N,)
        lse = xp.log(s)
        eps = self.eps
        nll = lse - z[rows, t_safe]  # -logp[n, t_n]
        if eps:
            smooth = lse - z.mean(axis=-1)  # -(1/C) sum_c logp[n, c]
            nll = (1.0 - eps) * nll + eps * smooth
        del z
        count = xp.maximum(valid.sum(), 1).astype(x.dtype)
        weight = valid.astype(x.dtype) / count  # (N,): 1/count on valid rows, 0 on ignored
        loss = (nll * weight).sum()
        if self.needs_input_grad[0]:
            p /= s[:, None]  # softmax, in place
            self.save_for_backward(p, weight, t_safe, rows)
            self.x_shape = shape
        self.targets = None
        return loss.astype(x.dtype, copy=False)

    def backward(self, g_loss: Any) -> tuple[Any]:
        p, weight, t_safe, rows = self.saved
        g_x = p
        if self.eps:
            g_x = g_x - self.eps / p.shape[-1]
        else:
            g_x = g_x.copy()  # p belongs to the graph (retain_graph): do not overwrite it
        g_x[rows, t_safe] -= 1.0 - self.eps
        g_x *= (g_loss * weight)[:, None]
        return (g_x.reshape(self.x_shape),)


def cross_entropy(
    logits: Tensor,
    targets: Any,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    check_targets: bool = True,
) -> Tensor:
    """Mean cross entropy of logits (N, C) or (B, T, C) against integer targets (N,) or (B, T).

    Targets equal to ``ignore_index`` are left out of the mean; ``label_smoothing`` mixes the
    one-hot target with the uniform distribution as PyTorch does. ``check_targets`` raises on
    targets outside [0, C) (one host sync; pass False to skip it in a tight GPU loop).
    """
    t = as_index_array("cross_entropy", targets, logits.device)
    if logits.ndim < 2 or tuple(t.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"cross_entropy: logits of shape {tuple(logits.shape)} need targets of shape {tuple(logits.shape[:-1])}, "
            f"got {tuple(t.shape)}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if check_targets:
        check_indices("cross_entropy", t, logits.shape[-1], ignore=ignore_index, what="target")
    return CrossEntropy.apply(logits, targets=t, ignore_index=ignore_index, label_smoothing=label_smoothing)


def _with_ignored(*shape: int, high: int = 5) -> Any:
    def make(rng: Generator) -> np.ndarray:
        t = rng.integers(0, high, shape)
        t.flat[::3] = -100
        return t

    return spec("int " + "x".join(map(str, shape)) + " (some -100)", make)


register(CrossEntropy, lambda x, t: cross_entropy(x, t), (4, 5), _with_ignored(4, high=5), name="CrossEntropy")
register(CrossEntropy, lambda x, t: cross_entropy(x, t), (2, 3, 5), _with_ignored(2, 3), name="CrossEntropy (B, T, C)")
register(CrossEntropy, lambda x, t: cross_entropy(x, t, label_smoothing=0.1), (4, 5), _with_ignored(4),
         name="CrossEntropy (label smoothing)")
register(CrossEntropy, lambda x, t: cross_entropy(x, t), (3, 4),
         spec("int 3 (all -100)", lambda rng: np.full(3, -100)), name="CrossEntropy (all ignored)")
