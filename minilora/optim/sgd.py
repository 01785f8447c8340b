"""Stochastic gradient descent with momentum and Nesterov momentum, PyTorch's update rule exactly."""

from __future__ import annotations

from typing import Any

from minilora.optim.optimizer import Optimizer
from minilora.tensor import Tensor


class SGD(Optimizer):
    r"""SGD, as ``torch.optim.SGD`` with dampening 0.

    For each parameter p with gradient g, at step t (buffer b created at t = 1)::

        g = g + weight_decay * p              (L2 penalty, in the gradient)
        b = g                      if t == 1
        b = momentum * b + g       otherwise
        d = g + momentum * b       (nesterov)   or   d = b   (plain momentum)   or   d = g   (momentum 0)
        p = p - lr * d

    The momentum buffer is the only state (none when momentum == 0).
    """

    def __init__(
        self, params: Any, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0 (got {lr}, {momentum}, {weight_decay})")
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov momentum needs momentum > 0")
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay})

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd != 0:
            grad = grad + wd * p.data  # out of place: the .grad array is left as backward wrote it
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= mu
                buf += grad
            grad = grad + mu * buf if group["nesterov"] else buf
        p.data -= lr * grad
