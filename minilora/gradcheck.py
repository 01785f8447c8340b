"""The gradient checker: hand-written backward passes against central finite differences.

Public and meant for users' own tests::

    from minilora.gradcheck import check_grad
    check_grad(lambda x, w: F.linear(x, w).tanh(), [x, w])

A non-scalar output y is reduced to L = sum(y * r) with a fixed random r, so
one backward pass gives the gradient of L for every input. "full" mode then
perturbs each element of each input by +-eps; "random_directions" (Chainer's
check_backward) compares <dL/dx, d> with (L(x + eps d) - L(x - eps d)) / 2 eps
along a few random unit directions d, which costs two forwards per direction
whatever the size of x. A value passes when |analytic - numeric| <= atol + rtol |numeric|.

Every op registers its cases in ``minilora.gradcheck_cases`` (a leaf module, re-exported here:
``from minilora.gradcheck import register`` works too); ``run_case`` checks one, and
``minilora gradcheck`` (``minilora/cli/gradcheck_cmd.py``) collects and runs them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minilora import backend
from minilora.autograd import no_grad
from minilora.gradcheck_cases import (  # noqa: F401  (re-exported: ``from minilora.gradcheck import register``)
    CASES,
    Case,
    InputSpec,
    away_from_zero,
    integers,
    register,
    spec,
    uniform,
)
from minilora.tensor import Tensor


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with finite differences."""


@dataclasses.dataclass
class Report:
    """Worst errors seen per checked input."""

    max_abs_err: float
    max_rel_err: float
    per_input: dict[str, tuple[float, float]]


def _as_float64(x: Any, device: str | None) -> Tensor:
    if isinstance(x, Tensor):
        data, req = x.data, x.requires_grad
    else:
        data, req = x, None
        if not backend.is_array(data):
            data = np.asarray(data)
    if device is not None and backend.device_of(data) != device:
        data = backend.to_device(data, device)
    if backend.is_floating(data.dtype):
        return Tensor(data.astype("float64"), requires_grad=True if req is None else req)
    return Tensor(data)


def check_grad(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    mode: str = "full",
    n_directions: int = 4,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> Report:
    """Compare fn's backward with central differences in float64; raise GradcheckError on mismatch.

    inputs: Tensors or arrays. Floating ones are cast to float64 copies (arrays
    become tensors that require grad; a Tensor keeps its requires_grad flag);
    integer ones pass through unchanged. Only inputs that require grad are checked.
    """
    if mode not in ("full", "random_directions"):
        raise ValueError(f"check_grad: mode must be 'full' or 'random_directions', got {mode!r}")
    devices = {x.device for x in inputs if isinstance(x, Tensor)}
    device = devices.pop() if len(devices) == 1 else None
    xs = [_as_float64(x, device) for x in inputs]
    names = list(names) if names is not None else [f"input {i}" for i in range(len(xs))]
    rng = np.random.default_rng(seed)

    y = fn(*xs)
    if not isinstance(y, Tensor):
        raise TypeError(f"check_grad: fn must return a Tensor, got {type(y).__name__}")
    r = backend.to_device(rng.standard_normal(y.shape), y.device, "float64")
    checked = [i for i, x in enumerate(xs) if x.requires_grad]
    if not checked:
        raise ValueError("check_grad: no input requires grad; nothing to check")
    for i in checked:
        xs[i].grad = None
    if y.requires_grad:
        y.backward(r)

    def loss() -> float:
        with no_grad():
            out = fn(*xs)
        return float(backend.to_host((out.data * r).sum()))  # host

    per_input: dict[str, tuple[float, float]] = {}
    for i in checked:
        x = xs[i]
        g = x.grad if x.grad is not None else x.xp.zeros_like(x.data)
        analytic_full = backend.to_host(g).astype(np.float64)
        if mode == "full":
            probes = _element_probes(x)
        else:
            probes = _direction_probes(x, rng, n_directions)
        worst_abs = worst_rel = 0.0
        for label, direction, analytic in probes(analytic_full):
            base = x.data.copy()
            x.data = base + eps * direction
            lp = loss()
            x.data = base - eps * direction
            lm = loss()
            x.data = base
            numeric = (lp - lm) / (2 * eps)
            abs_err = abs(analytic - numeric)
            rel_err = abs_err / max(abs(numeric), 1e-300)
            worst_abs = max(worst_abs, abs_err)
            if abs(numeric) > atol:  # relative error is meaningless for (near-)zero gradients
                worst_rel = max(worst_rel, rel_err)
            if abs_err > atol + rtol * abs(numeric):
                raise GradcheckError(
                    f"gradient mismatch for {names[i]} (shape {tuple(x.shape)}) at {label}: "
                    f"analytic {analytic:.10g}, numeric {numeric:.10g}, "
                    f"abs err {abs_err:.3g} (atol {atol:g}), rel err {rel_err:.3g} (rtol {rtol:g})"
                )
        per_input[names[i]] = (worst_abs, worst_rel)
    return Report(
        max(a for a, _ in per_input.values()),
        max(r_ for _, r_ in per_input.values()),
        per_input,
    )


def _element_probes(x: Tensor) -> Callable[[np.ndarray], Any]:
    def probes(analytic: np.ndarray) -> Any:
        xp = x.xp
        for flat in range(x.size):
            index = np.unravel_index(flat, x.shape)
            direction = xp.zeros(x.shape, dtype=x.dtype)
            direction[tuple(int(k) for k in index)] = 1.0
            yield f"element {tuple(int(k) for k in index)}", direction, float(analytic[index])

    return probes


def _direction_probes(x: Tensor, rng: np.random.Generator, n: int) -> Callable[[np.ndarray], Any]:
    def probes(analytic: np.ndarray) -> Any:
        for k in range(n):
            d = rng.standard_normal(x.shape)
            d /= np.linalg.norm(d) or 1.0
            yield f"random direction {k}", backend.to_device(d, x.device, x.dtype), float((analytic * d).sum())

    return probes


# ----------------------------------------------------------------------------- running registered cases
def case_inputs(case: Case, device: str = "cpu", seed: int = 0) -> list[Tensor]:
    """A registered case's inputs as float64 tensors on ``device`` (floating ones require grad)."""
    return [_as_float64(backend.to_device(a, device), None) for a in case.make_arrays(seed)]


def run_case(case: Case, device: str = "cpu") -> Report:
    """Check one registered case on ``device``; raise GradcheckError on a mismatch."""
    return check_grad(case.fn, case_inputs(case, device), atol=case.atol, rtol=case.rtol, mode=case.mode)
