"""Finite-difference checks of a whole Module: every trainable parameter, and the inputs.

``minilora.gradcheck.check_grad`` checks the tensors passed to a function; a
module's parameters live inside it. ``check_module_grad`` passes them in: for
the duration of the check each parameter slot of the module (both slots of a
tied parameter) holds the float64 tensor that check_grad perturbs, so the
numeric derivative moves every use of a tied weight at once, exactly what its
summed analytic gradient must match. Small tensors are checked element by
element, larger ones along random directions (two forwards per direction).

    model = GPT(cfg).double()
    check_module_grad(model, lambda idx, tgt: model(idx, tgt)[1], [idx, targets])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minilora import backend
from minilora.gradcheck import Report, check_grad
from minilora.nn.module import Module
from minilora.tensor import Tensor


def check_module_grad(
    module: Module,
    fn: Callable[..., Tensor],
    inputs: Sequence[Any] = (),
    *,
    params: Sequence[str] | None = None,
    full_max: int = 64,
    n_directions: int = 3,
    **check_kwargs: Any,
) -> list[Report]:
    """Check fn(*inputs) (which calls ``module``) against central differences in float64.

    Checked: the floating inputs that require grad (arrays count as requiring it, as in
    check_grad) and the module's trainable parameters (or those named in ``params``).
    Tensors of at most ``full_max`` elements are checked element by element, larger ones
    along ``n_directions`` random directions. The module must already be float64
    (``module.double()``); it is left as it was. Raises GradcheckError on a mismatch.
    """
    if module.dtype != np.float64:
        raise TypeError(f"check_module_grad: convert the module to float64 first (module.double()), got {module.dtype}")
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad and (params is None or n in params)]
    if params is not None:
        unknown = sorted(set(params) - {n for n, _ in named})
        if unknown:
            raise KeyError(f"check_module_grad: no trainable parameter named {unknown}")
    slots: dict[int, list[tuple[Module, str]]] = {}
    for m in module.modules():
        for attr, p in m._parameters.items():
            if p is not None:
                slots.setdefault(id(p), []).append((m, attr))
    n_in = len(inputs)

    def wrapped(*xs: Tensor) -> Tensor:
        for (_, p), x in zip(named, xs[n_in:]):
            for m, attr in slots[id(p)]:
                m._parameters[attr] = x  # the float64 copy check_grad perturbs, in every slot of p
        return fn(*xs[:n_in])

    reports = []
    try:
        for mode in ("full", "random_directions"):
            small = mode == "full"

            def wanted(size: int, small: bool = small) -> bool:
                return (size <= full_max) == small

            ins: list[Any] = []
            for x in inputs:
                data = x.data if isinstance(x, Tensor) else x
                if not backend.is_array(data):
                    data = backend.to_device(data, "cpu")
                if not backend.is_floating(data.dtype):
                    ins.append(x)  # integer ids and targets pass through
                    continue
                req = x.requires_grad if isinstance(x, Tensor) else True
                ins.append(Tensor(data, requires_grad=req and wanted(data.size)))
            ps = [Tensor(p.data, requires_grad=wanted(p.size)) for _, p in named]
            if not any(isinstance(t, Tensor) and t.requires_grad for t in ins + ps):
                continue
            names = [f"input {i}" for i in range(n_in)] + [n for n, _ in named]
            reports.append(check_grad(wrapped, ins + ps, mode=mode, n_directions=n_directions, names=names,
                                      **check_kwargs))
    finally:
        for _, p in named:
            for m, attr in slots[id(p)]:
                m._parameters[attr] = p
    return reports
