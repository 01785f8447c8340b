"""Keep freed NumPy buffers in the process heap, so a training step does not page-fault its activations.

NumPy takes every array from ``malloc``. glibc serves a large request with its own ``mmap`` and
gives it back to the kernel at ``free``; a smaller one comes from the heap, whose free top is
trimmed back to the kernel too. The next step asks for the same sizes again, and every page of
the new buffer is then a page fault on first touch (the kernel zero-fills it). Measured
(benchmarks/vs_torch.py's model, one thread): the baby step made 6,848 minor faults costing
~13 ms of system time per ~70 ms step, the medium step ~30,000 faults and ~75 ms.

``keep_freed_memory()`` asks glibc (``mallopt``) to serve requests up to 32 MiB (its maximum)
from the heap and never to trim it, as PyTorch's and CuPy's caching allocators keep freed blocks
for reuse. A buffer freed in one step is then reused by the next without a fault. The cost: the
process keeps its peak heap mapped instead of returning it between steps (its peak is unchanged).
It runs once when minilora is imported, only under glibc; ``MINILORA_TUNE_MALLOC=0`` leaves
malloc as it was. GPU memory is CuPy's pool and is not affected.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV_VAR = "MINILORA_TUNE_MALLOC"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # glibc refuses more (half its 64 MiB heap maximum on 64-bit)
TRIM_THRESHOLD = (1 << 31) - 1  # an int: effectively never trim

_tuned: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds as above (once); True when they are set."""
    global _tuned
    if _tuned is None:
        _tuned = False
        if sys.platform.startswith("linux") and os.environ.get(ENV_VAR, "1") != "0":
            try:
                libc = ctypes.CDLL(None)
                if hasattr(libc, "gnu_get_libc_version"):  # glibc (musl has no mallopt thresholds)
                    _tuned = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):
                _tuned = False
    return _tuned
