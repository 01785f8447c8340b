"""Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019), PyTorch's update rules exactly."""

from __future__ import annotations

import math
from typing import Any

from minilora.optim.optimizer import Optimizer
from minilora.tensor import Tensor


def _check(name: str, lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    if lr < 0 or eps < 0 or weight_decay < 0:
        raise ValueError(f"{name}: lr, eps and weight_decay must be >= 0 (got {lr}, {eps}, {weight_decay})")
    if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
        raise ValueError(f"{name}: betas must be in [0, 1), got {tuple(betas)}")


class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam``. For gradient g of parameter p at step t = 1, 2, ...::

        g   = g + weight_decay * p                   (L2 penalty, in the gradient: coupled)
        m   = beta1 * m + (1 - beta1) * g            (m, v start at zero)
        v   = beta2 * v + (1 - beta2) * g^2
        p   = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    State per trainable parameter: m ("exp_avg") and v ("exp_avg_sq"), each the parameter's size,
    plus the step count t (a Python int, so bias correction needs no device sync).
    """

    decoupled = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        _check(type(self).__name__, lr, betas, eps, weight_decay)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = p.xp
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        t = state["step"]
        if "exp_avg" not in state:
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if wd != 0:
            if self.decoupled:
                p.data *= 1.0 - lr * wd  # AdamW: shrink the weight itself, outside the adaptive scaling
            else:
                grad = grad + wd * p.data
        # m = m + (1 - beta1) (g - m) is torch's lerp form of beta1 m + (1 - beta1) g
        m += (1.0 - beta1) * (grad - m)
        v *= beta2
        v += (1.0 - beta2) * (grad * grad)
        step_size = lr / (1.0 - beta1**t)
        denom = xp.sqrt(v) / math.sqrt(1.0 - beta2**t)
        denom += eps
        p.data -= step_size * (m / denom)


class AdamW(Adam):
    r"""AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay. At step t::

        p   = p * (1 - lr * weight_decay)            (decay applied to the weight, not the gradient)
        m   = beta1 * m + (1 - beta1) * g
        v   = beta2 * v + (1 - beta2) * g^2
        p   = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
