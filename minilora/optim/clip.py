"""Gradient clipping by global norm, and the guard that stops training on a non-finite loss or gradient."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from minilora import backend
from minilora.tensor import Tensor


class NonFiniteError(FloatingPointError):
    """The loss or a gradient is NaN or infinite: training stops before the weights are touched."""


def _with_grad(params: Iterable[Any]) -> list[Tensor]:
    if isinstance(params, Tensor):
        params = [params]
    out = []
    for p in params:
        p = p[1] if isinstance(p, tuple) else p
        if p.grad is not None:
            out.append(p)
    return out


def grad_norm(params: Iterable[Any]) -> Tensor:
    """The global L2 norm sqrt(sum_p sum(g_p^2)) of every gradient, as a 0-d Tensor on the grads' device.

    No host sync: the value stays on the device until someone reads it.
    """
    ps = _with_grad(params)
    if not ps:
        return Tensor(backend.to_device(0.0, "cpu", "float32"))
    xp = ps[0].xp
    total = None
    for p in ps:
        s = xp.sum(p.grad * p.grad)
        total = s if total is None else total + s
    return Tensor(xp.sqrt(total))


def clip_grad_norm(params: Iterable[Any], max_norm: float) -> Tensor:
    """Scale all gradients by min(1, max_norm / (total_norm + 1e-6)); return total_norm (before clipping).

    As ``torch.nn.utils.clip_grad_norm_``. The norm is returned as a 0-d Tensor on the
    gradients' device (read it with ``Tensor.item``, a host transfer). The scaling is
    branch-free on the device (no sync) and out of place: each ``p.grad`` is replaced
    by a new array, so an array that backward shared is never modified.
    """
    if max_norm <= 0:
        raise ValueError(f"clip_grad_norm: max_norm must be > 0, got {max_norm}")
    ps = _with_grad(params)
    total = grad_norm(ps)
    scale_grads(ps, max_norm, total)
    return total


clip_grad_norm_ = clip_grad_norm  # PyTorch's name (torch.nn.utils.clip_grad_norm_)


def scale_grads(params: Iterable[Any], max_norm: float, total_norm: Tensor) -> None:
    """The clipping half of clip_grad_norm, for a norm computed already (the trainer checks it is finite first)."""
    ps = _with_grad(params)
    if not ps:
        return
    coef = ps[0].xp.minimum(max_norm / (total_norm.data + 1e-6), 1.0)
    for p in ps:
        p.grad = p.grad * coef.astype(p.grad.dtype)


def check_finite(step: int, loss: float, norm: float, named_params: Iterable[tuple[str, Tensor]]) -> None:
    """Raise NonFiniteError naming the step and the first parameter whose gradient is NaN/inf.

    ``loss`` and ``norm`` are host floats the caller read in its one sync per step; only
    when one is not finite do we look further (more syncs, but training is stopping anyway).
    """
    if math.isfinite(loss) and math.isfinite(norm):
        return
    bad = _nonfinite(named_params, lambda p: p.grad)
    where = f"in the gradient of {bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "") if bad else ""
    if not math.isfinite(loss):
        raise NonFiniteError(f"step {step}: the loss is {loss}" + (f"; non-finite values {where}" if bad else ""))
    raise NonFiniteError(f"step {step}: non-finite gradient {where or '(norm ' + str(norm) + ')'}; weights untouched")


def _nonfinite(named_params: Iterable[tuple[str, Tensor]], get: Any) -> list[str]:
    """Names whose array (``get(p)``) holds NaN/inf, in backward order: the first is where the values arose.

    Backward visits the parameters last-used-first (the head, then the blocks from the top down), and a
    NaN flows from where it appears to everything computed after it in that order, so the earliest in
    backward order is the culprit, not the first in the model's order.
    """
    bad = []
    for name, p in reversed(list(named_params)):
        a = get(p)
        if a is not None and not bool(backend.to_host(p.xp.isfinite(a).all())):  # host: only when stopping
            bad.append(name)
    return bad


def check_updated(step: int, named_params: Iterable[tuple[str, Tensor]], lr: float) -> None:
    """Raise NonFiniteError when an optimizer update left NaN/inf in a parameter (e.g. ``lr`` inf); one host sync.

    Called after every update, before anything (metrics, checkpoint) is written, so a run that goes
    non-finite stops at that step and no checkpoint with its values is ever written.
    """
    named = list(named_params)
    if not named:
        return
    xp = named[0][1].xp
    flags = xp.stack([xp.isfinite(p.data).all() for _, p in named])
    if bool(backend.to_host(flags.all())):  # host: the guard's one sync after the update
        return
    bad = _nonfinite(named, lambda p: p.data)
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise NonFiniteError(f"step {step}: the update left non-finite values in {bad[0]}{more} (learning rate {lr}); "
                         "try a lower --lr or --grad-clip")
