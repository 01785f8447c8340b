"""OpenBLAS's worker threads go to sleep right after a GEMM instead of spinning for ~0.1 s.

After each multi-threaded GEMM, OpenBLAS keeps its workers spinning (calling ``sched_yield``) for
2^28 CPU cycles by default, in case another GEMM follows at once. In a training step the GEMMs
are separated by NumPy's elementwise work (GELU, LayerNorm, softmax, AdamW), so a worker spins
through all of it: it holds a core that minilora's row-block pool (``minilora.parallel``) or
another process wants, and on a shared machine a spinning worker delays the very GEMM its
siblings wait for. ``OPENBLAS_THREAD_TIMEOUT=20`` (2^20 cycles, ~0.4 ms) keeps a worker awake
across the back-to-back GEMMs of a batched matmul and lets it sleep through the elementwise work.
Measured on the idle 2-core machine (default threads, whole steps): medium full 0.93x the default's
wall time, baby full 1.0x (the minimum, 4, woke the workers too often there: 1.07x); on the loaded
machine the baby step took 0.43-0.49x with 4, and 20 was within noise of 4.

OpenBLAS reads the variable once, when NumPy loads it, so ``import minilora`` can only set it
when it comes before ``import numpy`` (the ``minilora`` command line always does); it never
overrides a value already in the environment, and ``MINILORA_TUNE_BLAS=0`` leaves it alone.
Otherwise set it yourself before starting Python: ``OPENBLAS_THREAD_TIMEOUT=20 python train.py``.
This module imports nothing, NumPy included; importing it sets the variable (minilora/__init__.py
imports it before anything else).
"""

from __future__ import annotations

import os
import sys

ENV_VAR = "MINILORA_TUNE_BLAS"
OPENBLAS_VAR = "OPENBLAS_THREAD_TIMEOUT"
TIMEOUT = "20"  # log2 of the spin in cycles; OpenBLAS accepts 4..30 and defaults to 28


def sleep_after_gemm() -> bool:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` (see above) if NumPy is not loaded yet; True when it is in effect."""
    if os.environ.get(ENV_VAR, "1") == "0":
        return False
    if "numpy" not in sys.modules:
        os.environ.setdefault(OPENBLAS_VAR, TIMEOUT)
    return os.environ.get(OPENBLAS_VAR) == TIMEOUT


sleep_after_gemm()
