"""OpenBLAS's worker threads go to sleep right after a GEMM instead of spinning for ~0.1 s.

After each multi-threaded GEMM, OpenBLAS keeps its workers spinning (calling ``sched_yield``) for
2^28 CPU cycles by default, in case another GEMM follows at once. In a training step the GEMMs
are separated by NumPy's elementwise work (GELU, LayerNorm, softmax, AdamW), so a worker spins
through all of it: it holds a core that minilora's row-block pool (``minilora.parallel``) or
another process wants, and on a shared machine a spinning worker delays the very GEMM its
siblings wait for. ``OPENBLAS_THREAD_TIMEOUT=4`` (OpenBLAS's minimum, 2^4 cycles) makes a worker
sleep at once; waking it for the next GEMM costs microseconds.

OpenBLAS reads the variable once, when NumPy loads it, so ``import minilora`` can only set it
when it comes before ``import numpy`` (the ``minilora`` command line always does); it never
overrides a value already in the environment, and ``MINILORA_TUNE_BLAS=0`` leaves it alone.
Otherwise set it yourself before starting Python: ``OPENBLAS_THREAD_TIMEOUT=4 python train.py``.
This module imports nothing, NumPy included; importing it sets the variable (minilora/__init__.py
imports it before anything else).
"""

from __future__ import annotations

import os
import sys

ENV_VAR = "MINILORA_TUNE_BLAS"
OPENBLAS_VAR = "OPENBLAS_THREAD_TIMEOUT"
TIMEOUT = "4"  # log2 of the spin in cycles; OpenBLAS accepts 4..30 and defaults to 28


def sleep_after_gemm() -> bool:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` (see above) if NumPy is not loaded yet; True when it is in effect."""
    if os.environ.get(ENV_VAR, "1") == "0":
        return False
    if "numpy" not in sys.modules:
        os.environ.setdefault(OPENBLAS_VAR, TIMEOUT)
    return os.environ.get(OPENBLAS_VAR) == TIMEOUT


sleep_after_gemm()
