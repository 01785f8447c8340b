"""minilora.parallel: row blocks, the thread count, and for_rows over the pool."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from minilora import parallel
from minilora.testing import strict


@pytest.fixture
def pooled(monkeypatch):
    """Two threads and a tiny size threshold, so small test arrays go through the pool."""
    monkeypatch.setenv(parallel.ENV_VAR, "2")
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SIZE", 1)
    monkeypatch.setattr(parallel, "CHUNK", 8)


def test_row_blocks_cover_every_row_once():
    for n, row, chunk in [(10, 3, 8), (1, 100, 8), (7, 1, 7), (0, 4, 8)]:
        blocks = parallel.row_blocks(n, row, chunk)
        assert [r for b in blocks for r in range(*b)] == list(range(n))
        assert all(r1 - r0 == max(1, chunk // row) for r0, r1 in blocks[:-1])


def test_num_threads_from_env(monkeypatch):
    monkeypatch.setenv(parallel.ENV_VAR, "3")
    assert parallel.num_threads() == 3
    monkeypatch.delenv(parallel.ENV_VAR)
    assert parallel.num_threads() >= 1
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(parallel.ENV_VAR, bad)
        with pytest.raises(ValueError, match=parallel.ENV_VAR):
            parallel.num_threads()


def test_for_rows_uses_threads_and_visits_each_row_once(pooled):
    seen, names = np.zeros(50, int), set()

    def fn(r0, r1):
        seen[r0:r1] += 1
        names.add(threading.current_thread().name)

    parallel.for_rows(np, 50, 2, fn)
    assert (seen == 1).all()
    assert len(names) == 2  # the calling thread and one pool thread


def test_for_rows_inline_when_off_small_nested_or_device(pooled, monkeypatch):
    calls = []
    parallel.for_rows(strict, 50, 2, lambda r0, r1: calls.append((r0, r1)))
    assert calls == [(0, 50)]  # a device array module: one call, no blocks

    def outer(r0, r1):
        assert parallel.threads_for(np, 10**9) == 1  # no pool inside the pool

    parallel.for_rows(np, 50, 2, outer)
    monkeypatch.setenv(parallel.ENV_VAR, "1")
    names = set()
    parallel.for_rows(np, 50, 2, lambda r0, r1: names.add(threading.current_thread().name))
    assert names == {threading.current_thread().name}


def test_for_rows_raises_a_block_error_after_all_blocks(pooled):
    done = np.zeros(40, int)

    def fn(r0, r1):
        done[r0:r1] = 1
        if r0 == 36:
            raise RuntimeError("block failed")

    with pytest.raises(RuntimeError, match="block failed"):
        parallel.for_rows(np, 40, 2, fn)
    assert done.all()
