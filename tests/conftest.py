"""Shared fixtures: every op and model test runs on NumPy, on the strict CuPy stand-in, and on real CuPy."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

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


# ----------------------------------------------------------------------------- data parallel: mpiexec subprocesses
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")


@pytest.fixture(scope="session")
def mpirun() -> Callable[..., subprocess.CompletedProcess]:
    """``mpirun(args, n=2, timeout=60)``: ``mpiexec -n N python ARGS`` with one BLAS thread per rank.

    Skips (the reason is shown) only where mpiexec or mpi4py is missing. A run past ``timeout``
    fails the test after its whole process group is killed (a hang never outlives the test).
    """
    if MPIEXEC is None or importlib.util.find_spec("mpi4py") is None:
        pytest.skip("data-parallel run skipped: mpiexec or mpi4py not found (pip install -e '.[mpi]')")
    flags, env = [], {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARS}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if "Open MPI" in subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True).stdout:
        flags = ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])

    def run(args: list[str], n: int = 2, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [MPIEXEC, *flags, "-n", str(n), sys.executable, *args]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{' '.join(cmd)} still running after {timeout} s (a hang):\n{err[-2000:]}")
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    return run


_LAUNCHER_VARS = {"PMI_RANK", "PMI_SIZE", "PMI_FD", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"}
