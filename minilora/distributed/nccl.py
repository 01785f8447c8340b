"""NCCL through CuPy: all-reduce and broadcast of GPU arrays, one GPU per rank.

As ChainerMN did: rank 0 asks NCCL for a unique id, MPI broadcasts it (128 bytes), and every
rank joins the NCCL communicator with it; from then on arrays move GPU to GPU (NVLink,
PCIe or the network, as NCCL finds best) on the current CUDA stream, never through the host.
MPI stays the host channel for metadata and for aborting.

Written against ``cupy.cuda.nccl`` and documented in docs/distributed.md; no GPU was available
where it was written, so it has not run on hardware yet (CI has no GPU).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minilora.distributed.communicator import Communicator, _check_op, check_buffer
from minilora.distributed.world import DistributedError

NCCL_TYPES = {"float16": "NCCL_FLOAT16", "bfloat16": "NCCL_BFLOAT16", "float32": "NCCL_FLOAT32",
              "float64": "NCCL_FLOAT64", "int32": "NCCL_INT32", "int64": "NCCL_INT64", "uint8": "NCCL_UINT8"}


class NCCLCommunicator(Communicator):
    """NCCL collectives on CuPy arrays; ``host`` (an MPICommunicator) carries the unique id and metadata."""

    engine = "nccl"
    device = "cuda"

    def __init__(self, host: Any) -> None:
        try:
            import cupy  # noqa: PLC0415  (optional dependency)
            from cupy.cuda import nccl  # noqa: PLC0415
        except ImportError as exc:
            raise DistributedError(f"--device cuda with several ranks needs CuPy with NCCL "
                                   f"({exc}): pip install 'minilora[gpu]'", collective=True) from None
        self.cupy, self.nccl, self.host = cupy, nccl, host
        self.rank, self.size, self.local_rank = host.rank, host.size, host.local_rank
        count = cupy.cuda.runtime.getDeviceCount()
        if self.local_rank >= count:
            raise DistributedError(f"rank {self.rank} is rank {self.local_rank} on its machine, "
                                   f"which has {count} GPU(s): start at most {count} ranks per machine (one GPU each)")
        cupy.cuda.Device(self.local_rank).use()
        uid = np.zeros(128, dtype=np.int8)  # host: NCCL_UNIQUE_ID_BYTES
        if self.rank == 0:
            uid[:] = np.array(nccl.get_unique_id(), dtype=np.int8)  # host
        host.broadcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(self.size, tuple(int(c) for c in uid), self.rank)

    def _type(self, array: Any) -> int:
        name = NCCL_TYPES.get(array.dtype.name)
        if name is None or not hasattr(self.nccl, name):
            raise TypeError(f"NCCL: no NCCL type for dtype {array.dtype}")
        return getattr(self.nccl, name)

    def all_reduce(self, array: Any, op: str = "sum") -> Any:
        check_buffer("all_reduce", array, "cuda")
        _check_op("all_reduce", op, array)
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, self._type(array), self.nccl.NCCL_SUM, stream)
        if op == "mean":
            array *= 1.0 / self.size
        return array

    def broadcast(self, array: Any, root: int = 0) -> Any:
        check_buffer("broadcast", array, "cuda")
        if not 0 <= root < self.size:
            raise ValueError(f"broadcast: root {root} is not a rank of a world of {self.size}")
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.bcast(array.data.ptr, array.size, self._type(array), root, stream)
        return array

    def barrier(self) -> None:
        self.cupy.cuda.get_current_stream().synchronize()
        self.host.barrier()

    def allgather_bytes(self, data: bytes) -> list[bytes]:
        return self.host.allgather_bytes(data)

    def abort(self, code: int = 1) -> None:
        self.host.abort(code)
