"""Smoke test: examples/custom_op.py runs, its op passes the checker and the broken variant is caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "custom_op.py"


def test_custom_op_example_runs():
    # a separate process: the example registers its op, which must not leak into this session's registry
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=180, check=True).stdout
    assert "check_grad (full)" in out and "check_grad (random_directions)" in out
    assert "the broken backward is caught: gradient mismatch for x" in out
