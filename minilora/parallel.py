"""Elementwise and row-wise work in cache-sized row blocks, split over the CPU cores.

Two things make NumPy's elementwise code faster without changing its math. Blocks: an op
that makes several passes (GELU: ~12) over a 10 MB activation reads it from memory each
time; done ~64K elements at a time, the block and its temporaries stay in the core's
cache. Threads: NumPy's ufuncs and reductions release the GIL, so a few Python threads,
each running the same NumPy code on its own run of blocks, use every core for work that
NumPy runs on one. BLAS calls are never made inside the pool: the GEMMs keep BLAS's own
threads, and the two never run at once.

One code path for the math: an op writes it once as ``fn(r0, r1)`` over rows [r0, r1) and
calls ``for_rows(xp, n_rows, row_size, fn)``. On CuPy (and the strict stand-in)
``fn(0, n_rows)`` runs once, as the plain code would. The blocks do not depend on the
thread count, so neither do the results: an op that sums over rows keeps one partial
sum per block and adds them in block order.

The thread count: ``MINILORA_NUM_THREADS`` if set (1 turns the pool off), else the cores
this process may run on (``os.sched_getaffinity``); work under ``MIN_PARALLEL_SIZE``
elements stays on the calling thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np

ENV_VAR = "MINILORA_NUM_THREADS"
CHUNK = 1 << 16  # elements per block: a few float32 temporaries of this size stay in a core's L2 cache
MIN_PARALLEL_SIZE = 1 << 18  # elements: below ~1 MB of float32 a thread hand-off costs more than it saves

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()
_local = threading.local()  # set inside pool work: a nested for_rows runs inline


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - macOS, Windows


_CORES = _cores()


def num_threads() -> int:
    """How many threads for_rows uses: $MINILORA_NUM_THREADS, else the usable cores."""
    env = os.environ.get(ENV_VAR)
    if env is None or env == "":
        return _CORES
    try:
        n = int(env)
    except ValueError:
        raise ValueError(f"{ENV_VAR} must be a positive integer, got {env!r}") from None
    if n < 1:
        raise ValueError(f"{ENV_VAR} must be a positive integer, got {env!r}")
    return n


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minilora")
            _pool_size = workers
        return _pool


def row_blocks(n_rows: int, row_size: int, chunk: int | None = None) -> list[tuple[int, int]]:
    """[0, n_rows) cut into blocks of about ``chunk`` (default CHUNK) elements, at least one row each."""
    step = max(1, (CHUNK if chunk is None else chunk) // max(1, row_size))
    return [(r, min(r + step, n_rows)) for r in range(0, n_rows, step)]


def threads_for(xp: ModuleType, size: int) -> int:
    """How many threads for_rows uses for ``size`` elements on ``xp`` (1: no pool)."""
    if xp is not np or size < MIN_PARALLEL_SIZE or getattr(_local, "busy", False):
        return 1
    return num_threads()


def _run(fn: Callable[[int, int], None], blocks: list[tuple[int, int]]) -> None:
    _local.busy = True  # a for_rows inside fn runs inline: no pool inside the pool
    try:
        for r0, r1 in blocks:
            fn(r0, r1)
    finally:
        _local.busy = False


def for_rows(xp: ModuleType, n_rows: int, row_size: int, fn: Callable[[int, int], None]) -> None:
    """Run ``fn(r0, r1)`` over rows [0, n_rows) of ``row_size`` elements each.

    On CuPy (or the strict stand-in) ``fn(0, n_rows)`` runs once: one kernel per op. On NumPy
    the rows go in cache-sized blocks (row_blocks: the same blocks whatever the thread count),
    shared out in contiguous runs over threads_for(...) threads; the calling thread takes the
    first run, and an exception in any block is raised here once every block has finished.
    """
    if xp is not np:
        fn(0, n_rows)
        return
    blocks = row_blocks(n_rows, row_size)
    parts = min(threads_for(xp, n_rows * row_size), len(blocks))
    if parts <= 1:
        for r0, r1 in blocks:
            fn(r0, r1)
        return
    q, r = divmod(len(blocks), parts)
    runs, start = [], 0
    for i in range(parts):
        stop = start + q + (1 if i < r else 0)
        runs.append(blocks[start:stop])
        start = stop
    futures = [_get_pool(parts - 1).submit(_run, fn, run) for run in runs[1:]]
    try:
        _run(fn, runs[0])
    finally:
        errors = [f.exception() for f in futures]  # waits for every block, even when this one failed
    for e in errors:
        if e is not None:
            raise e
