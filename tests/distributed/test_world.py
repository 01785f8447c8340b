"""The world: no launcher needs no MPI; a launcher without mpi4py is a one-line error with the fix."""

from __future__ import annotations

import sys

import pytest

from minilora import distributed
from minilora.distributed import world


@pytest.fixture
def fresh_world(monkeypatch):
    monkeypatch.setattr(world, "_world", None)
    for rank_var, _ in world.LAUNCHER_VARIABLES:
        monkeypatch.delenv(rank_var, raising=False)
    yield monkeypatch


def test_one_process_without_a_launcher_is_a_world_of_one_without_mpi(fresh_world):
    fresh_world.setitem(sys.modules, "mpi4py", None)  # importing it would fail
    comm = distributed.init()
    assert (comm.rank, comm.size, comm.engine) == (0, 1, "local")
    assert distributed.init() is comm  # idempotent


def test_a_launcher_without_mpi4py_is_one_line_naming_the_fix(fresh_world, capsys):
    fresh_world.setitem(sys.modules, "mpi4py", None)
    fresh_world.setenv("PMI_RANK", "0")
    with pytest.raises(distributed.DistributedError) as info:
        distributed.init()
    assert str(info.value) == ("started by an MPI launcher (PMI_RANK is set) but mpi4py is not installed: "
                               "pip install 'minilora[mpi]' (mpi4py and the mpich wheel, which brings mpiexec)")
    assert info.value.collective
    distributed.report(info.value)
    assert capsys.readouterr().err.splitlines() == [f"minilora: error: {info.value}"]


def test_a_collective_error_is_reported_by_rank_0_alone(fresh_world, capsys):
    fresh_world.setenv("PMI_RANK", "1")
    distributed.report(distributed.DistributedError("same on every rank", collective=True))
    assert capsys.readouterr().err == ""
