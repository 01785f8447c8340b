"""Communicators: the collective operations data-parallel training needs, on one engine each.

- ``LocalCommunicator``: a world of one process; every collective is the identity.
- ``MPICommunicator``: mpi4py's buffer methods (``Allreduce``, ``Bcast``, ``Allgather``) on
  NumPy arrays, so arrays cross as raw memory, never pickled. It is also the host channel the
  NCCL communicator uses to agree on its unique id, and that every communicator uses for
  small metadata (fingerprints, random states).
- ``NCCLCommunicator`` (``minilora.distributed.nccl``): the same methods on CuPy arrays.

``all_reduce(array, op)`` and ``broadcast(array, root)`` work in place and return the array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minilora import backend

OPS = ("sum", "mean")


def check_buffer(name: str, array: Any, device: str) -> None:
    """The array a collective may work on in place: contiguous, writable, on ``device``."""
    if not backend.is_array(array):
        raise TypeError(f"{name}: expected an array, got {type(array).__name__}")
    if backend.device_of(array) != device:
        other = "get_communicator('cuda') (NCCL)" if device == "cpu" else "get_communicator('cpu') (MPI)"
        raise TypeError(f"{name}: the array is on {backend.device_of(array)}, this communicator works on {device} "
                        f"arrays; use {other}")
    if not array.flags.c_contiguous or (device == "cpu" and not array.flags.writeable):
        raise ValueError(f"{name}: the array must be C-contiguous and writable (shape {tuple(array.shape)}); "
                         "pass a contiguous copy")


def _check_op(name: str, op: str, array: Any) -> None:
    if op not in OPS:
        raise ValueError(f"{name}: op must be one of {OPS}, got {op!r}")
    if op == "mean" and array.dtype.kind != "f":
        raise TypeError(f"{name}: op 'mean' needs a floating array, got dtype {array.dtype}")


class Communicator:
    """What every communicator offers. ``rank``/``size``: this process's place in the world."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the rank among the processes on this machine (picks the GPU)
    engine: str = "local"
    device: str = "cpu"

    def all_reduce(self, array: Any, op: str = "sum") -> Any:
        """Replace ``array`` on every rank by the sum (or mean) of it over the ranks, in place."""
        raise NotImplementedError

    def broadcast(self, array: Any, root: int = 0) -> Any:
        """Replace ``array`` on every rank by rank ``root``'s, in place."""
        raise NotImplementedError

    def barrier(self) -> None:
        raise NotImplementedError

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data`` (small metadata), in rank order, on every rank."""
        raise NotImplementedError

    def abort(self, code: int = 1) -> None:
        raise SystemExit(code)


class LocalCommunicator(Communicator):
    """A world of one process: every collective leaves the array as it is."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def all_reduce(self, array: Any, op: str = "sum") -> Any:
        check_buffer("all_reduce", array, self.device)
        _check_op("all_reduce", op, array)
        return array

    def broadcast(self, array: Any, root: int = 0) -> Any:
        check_buffer("broadcast", array, self.device)
        if root != 0:
            raise ValueError(f"broadcast: root {root} is not a rank of a world of 1")
        return array

    def barrier(self) -> None:
        return None

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        return [bytes(data)]


# MPI has no standard 16-bit float type: such arrays are reduced through a float32 copy
_WIDEN = {"float16", "bfloat16"}


class MPICommunicator(Communicator):
    """mpi4py's buffer methods on host NumPy arrays (``comm`` defaults to ``MPI.COMM_WORLD``)."""

    engine = "mpi"

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI  # noqa: PLC0415  (optional dependency)

        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = node.Get_rank()
        node.Free()

    def all_reduce(self, array: Any, op: str = "sum") -> Any:
        check_buffer("all_reduce", array, "cpu")
        _check_op("all_reduce", op, array)
        buf = array.astype(np.float32) if array.dtype.name in _WIDEN else array  # host
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        if op == "mean":
            buf *= buf.dtype.type(1.0 / self.size)
        if buf is not array:
            array[...] = buf
        return array

    def broadcast(self, array: Any, root: int = 0) -> Any:
        check_buffer("broadcast", array, "cpu")
        if not 0 <= root < self.size:
            raise ValueError(f"broadcast: root {root} is not a rank of a world of {self.size}")
        self.comm.Bcast(array.reshape(-1).view(np.uint8), root=root)  # raw bytes: any dtype, bfloat16 too
        return array

    def barrier(self) -> None:
        self.comm.Barrier()

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        lengths = np.zeros(self.size, dtype=np.int64)  # host
        self.comm.Allgather(np.array([len(data)], dtype=np.int64), lengths)  # host
        width = int(lengths.max())
        mine = np.zeros(width, dtype=np.uint8)  # host
        mine[: len(data)] = np.frombuffer(data, dtype=np.uint8)  # host
        everyone = np.zeros((self.size, width), dtype=np.uint8)  # host
        self.comm.Allgather(mine, everyone)
        return [everyone[r, : int(lengths[r])].tobytes() for r in range(self.size)]

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)
