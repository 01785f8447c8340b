"""Shared fixtures: every op and model test runs on NumPy, on the strict CuPy stand-in, and on real CuPy."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import minilora
from minilora import backend
from minilora.testing import strict


def _real_cupy_or_skip() -> None:
    if not backend.cuda_available() or backend.module_for("cuda") is strict:
        pytest.skip(f"real CuPy run skipped: {backend.cuda_unavailable_reason()}")


@pytest.fixture(params=["cpu", "strict", "cupy"])
def device(request: pytest.FixtureRequest) -> Iterator[str]:
    """The device name to put tensors on: "cpu" (NumPy) or "cuda" (strict stand-in or real CuPy)."""
    minilora.manual_seed(0)
    if request.param == "cpu":
        yield "cpu"
    elif request.param == "strict":
        with backend.use_cuda_module(strict):
            yield "cuda"
    else:
        _real_cupy_or_skip()
        yield "cuda"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per distinct skip reason (hundreds of real-CuPy cases skip for the same reason)."""
    reasons: dict[str, int] = {}
    for rep in terminalreporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped, by reason")
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{n:5d} skipped: {reason}")
