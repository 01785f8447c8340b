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

Every op registers a case here (``register``); ``minilora gradcheck`` runs them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from minilora import backend

if TYPE_CHECKING:  # imported lazily below: every op module imports this one to register its cases
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
    from minilora.tensor import Tensor  # noqa: PLC0415

    if isinstance(x, Tensor):
        data, req = x.data, x.requires_grad
    else:
        data, req = x, None
        if not backend.is_array(data):
            data = np.asarray(data)
    if device is not None and backend.device_of(data) != device:
        data = backend.to_device(data, device)
    if data.dtype.kind == "f":
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
    from minilora.autograd import no_grad  # noqa: PLC0415
    from minilora.tensor import Tensor  # noqa: PLC0415

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


# ----------------------------------------------------------------------------- registry of op cases
InputSpec = Any  # a shape tuple (standard normal), or a callable rng -> np.ndarray


@dataclasses.dataclass
class Case:
    """One registered finite-difference case of an op."""

    name: str
    op: type
    fn: Callable[..., Tensor]
    inputs: tuple[InputSpec, ...]
    atol: float = 1e-5
    rtol: float = 1e-4
    mode: str = "full"

    def make_inputs(self, device: str = "cpu", seed: int = 0) -> list[Tensor]:
        rng = np.random.default_rng(seed)
        arrays = [spec(rng) if callable(spec) else rng.standard_normal(spec) for spec in self.inputs]
        return [_as_float64(backend.to_device(a, device), None) for a in arrays]

    def shapes(self) -> str:
        return ", ".join(
            "x".join(map(str, s)) if isinstance(s, tuple) else getattr(s, "label", "?") for s in self.inputs
        )

    def run(self, device: str = "cpu") -> Report:
        return check_grad(self.fn, self.make_inputs(device), atol=self.atol, rtol=self.rtol, mode=self.mode)


CASES: list[Case] = []


def register(
    op: type,
    fn: Callable[..., Tensor],
    *inputs: InputSpec,
    name: str | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    mode: str = "full",
) -> None:
    """Register a float64 finite-difference case for ``op``; several cases per op are welcome."""
    CASES.append(Case(name or op.__name__, op, fn, inputs, atol, rtol, mode))


def spec(label: str, make: Callable[[np.random.Generator], np.ndarray]) -> Callable[[np.random.Generator], np.ndarray]:
    """An input spec with a readable label for the gradcheck table."""
    make.label = label  # type: ignore[attr-defined]
    return make


def uniform(low: float, high: float, *shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    """Inputs drawn from U(low, high): positive values for log and sqrt, say."""
    return spec("x".join(map(str, shape)), lambda rng: rng.uniform(low, high, shape))


def away_from_zero(*shape: int, margin: float = 0.1) -> Callable[[np.random.Generator], np.ndarray]:
    """Standard normal values pushed at least ``margin`` away from 0 (kinks: relu, abs, max ties)."""

    def make(rng: np.random.Generator) -> np.ndarray:
        v = rng.standard_normal(shape)
        return np.where(v >= 0, v + margin, v - margin)

    return spec("x".join(map(str, shape)), make)


def integers(high: int, *shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    """Integer inputs (indices, targets): passed through, never differentiated."""
    return spec("int " + "x".join(map(str, shape)), lambda rng: rng.integers(0, high, shape))


def import_all_modules() -> None:
    """Import every module of the minilora package, so every Function and its cases are registered.

    Modules that need an optional extra that is not installed (safetensors, tokenizers, ...) are skipped.
    """
    import importlib  # noqa: PLC0415
    import pkgutil  # noqa: PLC0415

    import minilora  # noqa: PLC0415

    for info in pkgutil.walk_packages(minilora.__path__, "minilora."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # running it would start the command line
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] == "minilora":
                raise


def run_all(device: str = "cpu", names: Sequence[str] | None = None) -> list[tuple[Case, Report | Exception]]:
    """Run every registered case (or those whose name is in ``names``) of every minilora module."""
    import_all_modules()
    results: list[tuple[Case, Report | Exception]] = []
    for case in CASES:
        if names and case.name not in names:
            continue
        try:
            results.append((case, case.run(device)))
        except Exception as exc:  # reported in the table, not raised
            results.append((case, exc))
    return results
