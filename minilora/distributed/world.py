"""The world: which process this is, how many there are, and what happens when one of them fails.

``init()`` reads the launcher's environment. Without a launcher (``python train.py``) the
world is this one process, and neither MPI nor mpi4py is needed. Under ``mpiexec -n N``
(MPICH's Hydra sets ``PMI_RANK``/``PMI_SIZE``, Open MPI ``OMPI_COMM_WORLD_SIZE``, PMIx
launchers ``PMIX_RANK``) it imports mpi4py, which joins ``MPI.COMM_WORLD``.

Failure, the part a home-made launcher gets wrong: a rank that raises while the others
wait in an all-reduce would leave them waiting forever (MPI collectives have no timeout).
So ``init()`` installs an exception hook that prints the traceback, then one line naming
the rank, then calls ``MPI_Abort``, which makes the launcher end every rank. A rank that
is killed is noticed by the launcher itself, which ends the others.
"""

from __future__ import annotations

import os
import sys
import traceback
from types import TracebackType
from typing import Any

from minilora.distributed.communicator import LocalCommunicator, MPICommunicator

# environment variables a launcher sets in every process it starts: (rank, size)
LAUNCHER_VARIABLES = (
    ("PMI_RANK", "PMI_SIZE"),  # MPICH (Hydra), Intel MPI, MVAPICH
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),  # Open MPI
    ("PMIX_RANK", "PMIX_SIZE"),  # PMIx launchers (Open MPI 5's prterun, srun --mpi=pmix)
)

INSTALL_HINT = "pip install 'minilora[mpi]' (mpi4py and the mpich wheel, which brings mpiexec)"


class DistributedError(RuntimeError):
    """A distributed-training mistake, as one line. ``collective``: every rank raises the same error
    (say a fingerprint mismatch), so rank 0 alone reports it and no rank needs to abort the others."""

    def __init__(self, message: str, collective: bool = False) -> None:
        super().__init__(message)
        self.collective = collective


def launcher_variable() -> str | None:
    """The name of the launcher's rank variable found in the environment, or None (no launcher)."""
    for rank_var, _ in LAUNCHER_VARIABLES:
        if rank_var in os.environ:
            return rank_var
    return None


def launcher_rank() -> int:
    """This process's rank as the launcher's environment says (0 without a launcher); needs no MPI."""
    var = launcher_variable()
    try:
        return int(os.environ[var]) if var else 0
    except ValueError:
        return 0


_world: Any = None  # the host Communicator once init() ran


def init() -> Any:
    """Join the world the launcher started (idempotent) and return its host communicator.

    One process without a launcher: a world of size 1 (no MPI needed). Under a launcher:
    mpi4py's ``COMM_WORLD``; a one-line DistributedError with the fix when mpi4py is missing.
    With more than one rank it installs the abort-on-exception hook and, where CuPy sees GPUs,
    makes GPU ``local_rank % count`` current (one GPU per rank: call init() before anything is
    put on a GPU; the Trainer and the command line do).
    """
    global _world
    if _world is not None:
        return _world
    var = launcher_variable()
    if var is None:
        _world = LocalCommunicator()
        return _world
    try:
        from mpi4py import MPI  # noqa: PLC0415  (optional dependency)
    except ImportError:
        raise DistributedError(
            f"started by an MPI launcher ({var} is set) but mpi4py is not installed: "
            f"{INSTALL_HINT}", collective=True) from None
    _world = MPICommunicator(MPI.COMM_WORLD)
    if _world.size > 1:
        sys.excepthook = _abort_on_exception
        _use_local_gpu(_world)
    return _world


def _use_local_gpu(world: Any) -> None:
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec("cupy") is None:
        return
    try:
        import cupy  # noqa: PLC0415

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # a CUDA driver error on a machine without a GPU
        return
    if count > 0:
        cupy.cuda.Device(world.local_rank % count).use()


def rank() -> int:
    """This process's rank, 0 to world_size() - 1."""
    return init().rank


def world_size() -> int:
    """How many processes train together (1 without a launcher)."""
    return init().size


def is_main() -> bool:
    """True on rank 0, the one that writes checkpoints, adapters, metrics and the progress bar."""
    return init().rank == 0


def barrier() -> None:
    """Wait until every rank has arrived here."""
    init().barrier()


def abort(code: int = 1) -> None:
    """End every rank now (MPI_Abort); in a world of one, exit with ``code``."""
    world = init()
    if world.size > 1:
        _let_the_launcher_forward_output()
        world.abort(code)
    raise SystemExit(code)


def report(exc: BaseException, prefix: str = "minilora: error") -> None:
    """Print ``exc`` as one line on stderr: a collective error on rank 0 only, any other on the rank that raised."""
    collective = isinstance(exc, DistributedError) and exc.collective
    here = _world.rank if _world is not None else launcher_rank()
    if collective and here != 0:
        return
    size = _world.size if _world is not None else 1
    where = f" (rank {here} of {size})" if size > 1 and not collective else ""
    print(f"{prefix}{where}: {exc}", file=sys.stderr, flush=True)


def _abort_on_exception(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """sys.excepthook with several ranks: the traceback, then one line, then MPI_Abort (never a hang)."""
    if isinstance(exc, DistributedError) and exc.collective:
        report(exc, "minilora.distributed: error")  # every rank raised it: each exits by itself
        return
    traceback.print_exception(kind, exc, tb)
    print(f"minilora.distributed: rank {_world.rank} of {_world.size} raised {kind.__name__}: {exc}; "
          f"aborting all {_world.size} ranks", file=sys.stderr, flush=True)
    _let_the_launcher_forward_output()
    _world.abort(1)


def _let_the_launcher_forward_output(seconds: float = 1.0) -> None:
    """Close stdout/stderr (the launcher's proxy reads them to the end) and give it a moment before MPI_Abort.

    MPI_Abort tears the job down at once; without this the launcher could end the job before it had
    forwarded the traceback and the one line above (seen under load: the line lost in about 1 run of 6).
    """
    import time  # noqa: PLC0415

    sys.stdout.flush()
    sys.stderr.flush()
    for fd in (1, 2):
        try:
            os.close(fd)
        except OSError:  # already closed
            pass
    time.sleep(seconds)
