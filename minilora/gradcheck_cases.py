"""The registry of gradient-check cases: data only, so every op can import it without a loop.

Each differentiable op registers one or more float64 finite-difference cases right under its
Function::

    from minilora.gradcheck_cases import register
    register(Exp, lambda x: x.exp(), (3, 4))

This module imports nothing of minilora: the checker that runs a case (``minilora.gradcheck``)
sits above the engine, and the runner that imports the whole package to collect every case
lives with ``minilora gradcheck`` (``minilora/cli/gradcheck_cmd.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

InputSpec = Any  # a shape tuple (standard normal), or a callable rng -> np.ndarray


@dataclasses.dataclass
class Case:
    """One registered finite-difference case of an op: ``fn(*inputs)`` checked in float64."""

    name: str
    op: type
    fn: Callable[..., Any]
    inputs: tuple[InputSpec, ...]
    atol: float = 1e-5
    rtol: float = 1e-4
    mode: str = "full"

    def make_arrays(self, seed: int = 0) -> list[np.ndarray]:
        """The case's inputs as host arrays, drawn from a generator seeded with ``seed``."""
        rng = np.random.default_rng(seed)
        return [spec(rng) if callable(spec) else rng.standard_normal(spec) for spec in self.inputs]

    def shapes(self) -> str:
        return ", ".join(
            "x".join(map(str, s)) if isinstance(s, tuple) else getattr(s, "label", "?") for s in self.inputs
        )


CASES: list[Case] = []


def register(
    op: type,
    fn: Callable[..., Any],
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
