"""minilora.blas_threads: import minilora sets OPENBLAS_THREAD_TIMEOUT when it comes before NumPy, and only then."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minilora import blas_threads

SHOW = "import os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"


def _child(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in (blas_threads.OPENBLAS_VAR, blas_threads.ENV_VAR)}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize(("code", "env", "expected"), [
    ("import minilora; " + SHOW, {}, blas_threads.TIMEOUT),  # before NumPy: set
    ("import numpy, minilora; " + SHOW, {}, "None"),  # OpenBLAS already read its environment: left alone
    ("import minilora; " + SHOW, {blas_threads.OPENBLAS_VAR: "20"}, "20"),  # the user's value wins
    ("import minilora; " + SHOW, {blas_threads.ENV_VAR: "0"}, "None"),  # turned off
])
def test_import_minilora_sets_the_openblas_spin_only_before_numpy(code, env, expected):
    assert _child(code, **env) == expected
