"""Communicators: a world of one in-process, MPI's buffer methods under mpiexec -n 2."""

from __future__ import annotations

import os

import numpy as np
import pytest

from minilora import distributed
from minilora.distributed import LocalCommunicator
from minilora.testing import strict

WORKER = os.path.join(os.path.dirname(__file__), "..", "train", "dp_worker.py")


def test_a_world_of_one_leaves_arrays_as_they_are():
    comm = distributed.get_communicator("cpu")
    a = np.arange(6.0).reshape(2, 3)
    assert comm.all_reduce(a, op="mean") is a and a.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert comm.broadcast(a) is a
    assert comm.allgather_bytes(b"abc") == [b"abc"]
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    distributed.barrier()


@pytest.mark.parametrize(
    ("array", "op", "error", "match"),
    [
        (np.zeros(3), "max", ValueError, "op must be one of"),
        (np.zeros(3, dtype=np.int64), "mean", TypeError, "op 'mean' needs a floating array"),
        (np.zeros((3, 4))[:, 1], "sum", ValueError, "C-contiguous"),
        ([1.0, 2.0], "sum", TypeError, "expected an array, got list"),
    ],
)
def test_bad_buffers_are_one_line_errors(array, op, error, match):
    with pytest.raises(error, match=match):
        LocalCommunicator().all_reduce(array, op)


def test_an_array_on_another_device_is_refused_naming_the_right_communicator():
    from minilora import backend

    with backend.use_cuda_module(strict):
        a = backend.to_device(np.zeros(2), "cuda")
        with pytest.raises(TypeError, match=r"on cuda.*use get_communicator\('cuda'\)"):
            LocalCommunicator("cpu").all_reduce(a)


def test_mpi_all_reduce_broadcast_and_allgather_over_two_ranks(mpirun, tmp_path):
    proc = mpirun([WORKER, "comm", str(tmp_path)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    for r in (0, 1):  # each rank's own file (the ranks' stdout lines may interleave)
        assert (tmp_path / f"comm-rank{r}.txt").read_text(encoding="utf-8") == f"rank {r} of 2 comm ok"
