"""Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019), PyTorch's update rules exactly."""

from __future__ import annotations

import math
from typing import Any

from minilora import parallel
from minilora.optim.flat import FlatGroup
from minilora.optim.optimizer import Optimizer
from minilora.parallel import for_rows
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
    default_weight_decay = 0.0  # PyTorch's defaults: Adam 0, AdamW 0.01

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float | None = None,
    ) -> None:
        """``weight_decay`` None: the class's ``default_weight_decay``."""
        if weight_decay is None:
            weight_decay = self.default_weight_decay
        _check(type(self).__name__, lr, betas, eps, weight_decay)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def step(self) -> None:
        """One update of every trainable parameter that has a gradient.

        A group whose trainable parameters all have gradients (the usual case) is updated over its flat
        buffers (minilora.optim.flat): parameters, exp_avg and exp_avg_sq are views into one array each,
        and the update is a few large in-place ufunc calls over cache-sized ranges, shared over the cores
        on NumPy (parallel.for_rows). Otherwise (or with mixed dtypes) parameter by parameter, as
        Optimizer.step; both run the same arithmetic (_adam_update), so they give the same bits.
        """
        for index, group in enumerate(self.param_groups):
            live = [p for p in group["params"] if p.requires_grad and p.grad is not None]
            flat = self._flat_group(index, live)
            states = [self.state.setdefault(id(p), {"step": 0}) for p in live]
            if flat is None or len({s["step"] for s in states}) > 1:
                for p, state in zip(live, states):
                    state["step"] += 1
                    self._update(p, p.grad, state, group)
                continue
            for state in states:
                state["step"] += 1
            self._flat_update(flat, live, states, group)

    def _flat_update(self, flat: FlatGroup, live: list[Tensor], states: list[dict[str, Any]],
                     group: dict[str, Any]) -> None:
        xp = flat.xp
        m, v = flat.moment("exp_avg", states), flat.moment("exp_avg_sq", states)
        hyper = self._hyper(group, states[0]["step"])
        gathered = flat.grads_gathered()
        grads = None if gathered else [p.grad.reshape(-1) for p in live]  # views of each gradient, no copy
        work = flat.chunks(gathered)

        def run(i0: int, i1: int) -> None:
            for k, a, b in work[i0:i1]:
                if k < 0:
                    g = flat.grad[a:b]
                else:
                    start = flat.offsets[k][0]
                    g = grads[k][a - start:b - start]
                _adam_update(xp, flat.data[a:b], g, m[a:b], v[a:b], *hyper)

        for_rows(xp, len(work), parallel.CHUNK, run)

    def _hyper(self, group: dict[str, Any], t: int) -> tuple[Any, ...]:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        return lr, beta1, beta2, eps, wd, self.decoupled, lr / (1.0 - beta1**t), math.sqrt(1.0 - beta2**t)

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = p.xp
        if "exp_avg" not in state:
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        _adam_update(xp, p.data, grad, state["exp_avg"], state["exp_avg_sq"], *self._hyper(group, state["step"]))


def _adam_update(xp: Any, p: Any, g: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float,
                 wd: float, decoupled: bool, step_size: float, bc2_sqrt: float) -> None:
    """Adam(W)'s update of arrays p, m, v in place from gradient g (any matching shapes: a tensor or a range).

    The plain formulas (Adam's docstring): m = beta1 m + (1 - beta1) g (as torch's lerp m + (1 - beta1)(g - m)),
    v = beta2 v + (1 - beta2) g^2, p -= lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps);
    written with one scratch array t and in-place ufuncs.
    """
    if wd != 0:
        if decoupled:
            p *= 1.0 - lr * wd  # AdamW: shrink the weight itself, outside the adaptive scaling
        else:
            g = g + wd * p  # Adam's L2 penalty, in a new array: the gradient itself is left alone
    t = g - m
    t *= 1.0 - beta1
    m += t  # m + (1 - beta1) (g - m)
    v *= beta2
    xp.multiply(g, g, out=t)
    t *= 1.0 - beta2
    v += t  # beta2 v + (1 - beta2) g^2
    xp.sqrt(v, out=t)
    t /= bc2_sqrt
    t += eps  # sqrt(v) / sqrt(1 - beta2^t) + eps
    xp.divide(m, t, out=t)
    t *= step_size
    p -= t


class AdamW(Adam):
    r"""AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay. At step t::

        p   = p * (1 - lr * weight_decay)            (decay applied to the weight, not the gradient)
        m   = beta1 * m + (1 - beta1) * g
        v   = beta2 * v + (1 - beta2) * g^2
        p   = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    decoupled = True
    default_weight_decay = 0.01
