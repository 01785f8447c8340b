"""Data-parallel training on existing engines: MPI (mpi4py) for CPU processes, NCCL (CuPy) for GPUs.

    mpiexec -n 2 minilora finetune --method lora ...   # 2 processes, one code path

``init()`` joins the world the launcher started (a world of one without a launcher, which needs
no MPI); ``rank()``, ``world_size()``, ``is_main()``, ``barrier()``; ``get_communicator(device)``
returns the communicator for arrays on that device (MPI for "cpu", NCCL for "cuda") with
``all_reduce(array, op="sum"|"mean")`` and ``broadcast(array, root=0)``, both in place.
``GradBuckets`` packs gradients into flat buffers for one all-reduce per bucket. The Trainer
uses all of it (minilora.train.data_parallel); docs/distributed.md tells the whole story.
"""

from __future__ import annotations

from typing import Any

from minilora.distributed.buckets import GradBuckets
from minilora.distributed.communicator import Communicator, LocalCommunicator, MPICommunicator
from minilora.distributed.world import (
    DistributedError,
    abort,
    barrier,
    init,
    is_main,
    launcher_variable,
    rank,
    report,
    world_size,
)

_device_comms: dict[str, Any] = {}


def get_communicator(device: str = "cpu") -> Communicator:
    """The communicator for arrays on ``device`` ("cpu": MPI, "cuda": NCCL); every rank must ask for the same.

    Collective: the ranks compare their devices over the host channel at every call, and mixed
    devices are a one-line DistributedError naming them.
    """
    world = init()
    devices = [d.decode() for d in world.allgather_bytes(device.encode())]
    if device in _device_comms and len(set(devices)) == 1:
        return _device_comms[device]
    if len(set(devices)) > 1:
        listing = ", ".join(f"rank {r} {d}" for r, d in enumerate(devices))
        raise DistributedError(f"the ranks use different devices ({listing}): give every rank "
                               "the same --device", collective=True)
    if world.size == 1:
        comm: Communicator = LocalCommunicator(device)
    elif device == "cpu":
        comm = world
    else:
        from minilora.distributed.nccl import NCCLCommunicator  # noqa: PLC0415

        comm = NCCLCommunicator(world)
    _device_comms[device] = comm
    return comm


__all__ = [
    "Communicator",
    "DistributedError",
    "GradBuckets",
    "LocalCommunicator",
    "MPICommunicator",
    "abort",
    "barrier",
    "get_communicator",
    "init",
    "is_main",
    "launcher_variable",
    "rank",
    "report",
    "world_size",
]
