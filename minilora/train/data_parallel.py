"""The Trainer's side of data parallelism: one rank per process, every rank the same model.

What makes N ranks with per-rank batch b train exactly the model one process trains with
batch N x b (DDP's contract, tested to 1e-6 in tests/train/test_data_parallel.py):

1. ``setup`` (collective, before anything is broadcast): every rank's fingerprint of its
   train config, model structure, loaded base weights and data is compared with rank 0's; a
   mismatch is a one-line error naming the ranks (a broadcast first would hide it). Then the
   task is split: every rank draws the same global batch of N x b from the seed and keeps
   its slice by rank. Then rank 0's trainable parameters are broadcast (freshly initialised
   parts such as LoRA's A become identical everywhere).
2. ``sync_gradients`` (between backward and clipping, once per optimizer step even with
   gradient accumulation): the trainable gradients, packed in flat buffers, are averaged with one
   all-reduce per buffer, and so is the loss; clipping and the non-finite guard then see the
   global gradient and every rank takes the same decision. A loss that averages over a varying
   number of terms (answer tokens) is first weighed by its slice's share of them (``weigh``).
3. Checkpoints: rank 0 writes, holding every rank's random state; every rank resumes from the
   same file (checked: same bytes on every rank) with its own state restored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from minilora import backend, distributed
from minilora.distributed import DistributedError, GradBuckets
from minilora.tensor import Tensor
from minilora.train.checkpoint import Checkpoint, CheckpointError

PARTS = ("train config", "model structure", "base weights", "data")


def _digest(*chunks: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for c in chunks:
        h.update(c)
    return h.digest()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, default=str).encode()


def fingerprint(model: Any, config: Any, task: Any, tokenizer: Any = None) -> dict[str, bytes]:
    """What must be identical on every rank before training, as a digest per part (see PARTS).

    Base weights: the values of the frozen state (the loaded base under PEFT), or of the whole
    state when nothing is frozen (full fine-tuning, pre-training: every rank built or loaded it
    from the same seed or file). The device and the progress bar may differ (the device is
    compared separately, with its own message).
    """
    cfg = {k: v for k, v in config.to_dict().items() if k not in ("device", "progress")}
    named = list(model.named_parameters())
    trainable = {n for n, p in named if p.requires_grad}
    state = model.state_dict()
    frozen = [k for k in state if k not in trainable] or list(state)
    structure = {"class": type(model).__name__, "config": getattr(getattr(model, "config", None), "to_dict", dict)(),
                 "params": [(n, list(p.shape), str(p.dtype), p.requires_grad) for n, p in named],
                 "state": sorted(state), "tokenizer": tokenizer.to_dict() if tokenizer is not None else None}
    weights = _digest(*(k.encode() + backend.to_host(state[k]).tobytes() for k in sorted(frozen)))  # host, once
    data_fp = getattr(task, "fingerprint", None)
    data = data_fp() if callable(data_fp) else _json([type(task).__name__, task.state_dict()])
    return {"train config": _digest(_json(cfg)), "model structure": _digest(_json(structure)),
            "base weights": weights, "data": _digest(data if isinstance(data, bytes) else str(data).encode())}


def _differences(world: Any, parts: dict[str, bytes]) -> dict[int, list[str]]:
    """{rank: the names of the parts (16-byte digests) in which it differs from rank 0}, the same on every rank."""
    names = list(parts)
    everyone = world.allgather_bytes(b"".join(parts[n] for n in names))
    split = [[fp[16 * i : 16 * (i + 1)] for i in range(len(names))] for fp in everyone]
    return {r: [n for i, n in enumerate(names) if split[r][i] != split[0][i]]
            for r in range(1, len(split)) if split[r] != split[0]}


class DataParallel:
    """The world as the Trainer sees it; every method is a no-op in a world of one process."""

    def __init__(self, config: Any) -> None:
        self.world = distributed.init()
        self.rank, self.size = self.world.rank, self.world.size
        self.is_main = self.rank == 0
        self.comm = distributed.get_communicator(config.device)  # collective; mixed devices refused
        self.batch_size = config.batch_size
        self.global_batch = config.global_batch_size or config.batch_size * self.size
        self.buckets: GradBuckets | None = None
        self.optimizer: Any = None

    @property
    def bytes_per_step(self) -> int:
        """Bytes of gradient each rank all-reduces per optimizer step (0 in a world of one)."""
        return self.buckets.nbytes if self.buckets is not None else 0

    def summary(self) -> str:
        """``world 2 ranks x batch 8 = global batch 16``: for the command line's summary line."""
        per_rank = self.global_batch // self.size
        ranks = f"{self.size} rank{'s' if self.size > 1 else ''}"
        return f"world {ranks} x batch {per_rank} = global batch {self.global_batch}"

    def setup(self, model: Any, task: Any, config: Any, trainable: list[Any], tokenizer: Any = None,
              optimizer: Any = None) -> None:
        """Compare fingerprints, split the task, broadcast rank 0's trainable parameters (collective)."""
        G, N = self.global_batch, self.size
        if N > 1:
            diffs = _differences(self.world, fingerprint(model, config, task, tokenizer))
            if diffs:
                listing = "; ".join(f"rank {r} differs from rank 0 in its {' and '.join(parts)}"
                                    for r, parts in diffs.items())
                raise DistributedError(f"data parallel: {listing}: start every rank with the same checkpoint, "
                                       "data and options (refused before any broadcast)", collective=True)
        if G < N:
            raise DistributedError(f"data parallel: {N} ranks but {G} example{'s' if G != 1 else ''} per step "
                                   f"(global batch {G}): start at most {G} ranks or use a larger batch",
                                   collective=True)
        if G % N:
            raise DistributedError(f"data parallel: the global batch of {G} does not split into {N} equal "
                                   f"slices: use a multiple of {N} (or --batch-size, which is per rank)",
                                   collective=True)
        if N > 1 or G != config.batch_size:
            if not callable(getattr(task, "shard", None)):
                raise DistributedError(f"data parallel: the task {type(task).__name__} has no "
                                       "shard(rank, world_size, global_batch) method, so it cannot be split across "
                                       f"{N} ranks", collective=True)
            task.shard(self.rank, N, G)
        if N > 1:
            self.buckets = GradBuckets([p for _, p in trainable], self.comm)
            self.buckets.broadcast_data(root=0)
            self.optimizer = optimizer

    def weigh(self, loss: Any, task: Any, batch: Any) -> Any:
        """A loss that is a mean over a number of terms varying from slice to slice (a completion task's answer
        tokens), times this slice's share ``n_r * N / sum_r n_r``: the ranks' mean is then the mean over the
        whole global batch, the loss one process computes. A task says it has such a loss with
        ``loss_weight(batch)`` (the number of terms); other losses (every row alike) pass through.

        One scalar all-reduce per micro-batch, on the device (no host sync).
        """
        weight = getattr(task, "loss_weight", None)
        if self.buckets is None or weight is None:
            return loss
        xp = loss.xp
        n = xp.asarray(weight(batch), dtype=xp.float64).reshape(1).copy()  # (1,)
        total = self.comm.all_reduce(n.copy(), "sum")  # (1,)
        share = xp.where(total > 0, n * self.size / xp.maximum(total, 1.0), 1.0).reshape(())  # ()
        return loss * Tensor(share.astype(loss.data.dtype))

    def sync_gradients(self, loss_sum: Any) -> Any:
        """Average the trainable gradients and the loss over the ranks: one all-reduce per flat buffer.

        The buffers are the optimizer's own flat gradient arrays where it keeps them (``flat_grads``:
        reduced in place, and its update reads them with no copy back), else GradBuckets'. A parameter
        without a gradient counts as zeros, and is left without one when no rank had one (one process
        would skip it in the update; zeros would still decay it).
        """
        if self.buckets is None:
            return loss_sum
        params = self.buckets.params
        had = [p.grad is not None for p in params]
        for p, present in zip(params, had):
            if not present:
                p.grad = p.xp.zeros_like(p.data)
        flats = self._optimizer_flats()
        if flats is None:
            self.buckets.all_reduce_grads("mean")
        for flat in flats or ():
            self.comm.all_reduce(flat, "mean")
        # the loss and, per parameter, the share of ranks that had its gradient: one small all-reduce
        xp = backend.get_array_module(loss_sum)
        small = xp.concatenate([xp.asarray(loss_sum, dtype=xp.float64).reshape(1),
                                backend.to_device(np.asarray(had, dtype=np.float64), self.comm.device)])  # (1 + P,)
        self.comm.all_reduce(small, "mean")
        if not all(had):  # host: read only where a gradient was missing here
            shares = backend.to_host(small[1:])
            for p, share in zip(params, shares):
                if share == 0:
                    p.grad = None
        return small[0].astype(xp.asarray(loss_sum).dtype)

    def _optimizer_flats(self) -> list[Any] | None:
        """The optimizer's flat gradient array of each group with trainable parameters, or None where one cannot
        be flat (mixed dtypes): structure alone decides, so every rank takes the same branch."""
        flat_grads = getattr(self.optimizer, "flat_grads", None)
        if flat_grads is None:
            return None
        groups = [i for i, g in enumerate(self.optimizer.param_groups) if any(p.requires_grad for p in g["params"])]
        try:
            return [flat_grads(i) for i in groups]
        except ValueError:
            return None

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_meta(self) -> dict[str, Any]:
        """What a checkpoint needs beyond rank 0's state: every rank's random state (collective)."""
        if self.size == 1:
            return {}
        states = [json.loads(b) for b in self.world.allgather_bytes(_json(backend.rng_state()))]
        return {"data_parallel": {"world_size": self.size, "global_batch": self.global_batch, "rng": states}}

    def check_resume(self, ckpt: Checkpoint) -> None:
        """Before anything is restored (collective): the same file on every rank, written by a world this size."""
        if self.size > 1:
            mine = _digest(_json(ckpt.meta), *(k.encode() + a.tobytes() for k, a in sorted(ckpt.weights.items())))
            diffs = _differences(self.world, {"checkpoint": mine})
            if diffs:
                raise DistributedError(f"data parallel: rank(s) {', '.join(map(str, diffs))} read a different "
                                       f"{ckpt.path} than rank 0: every rank must resume from the same checkpoint",
                                       collective=True)
        saved = (ckpt.meta.get("extra") or {}).get("data_parallel") or {"world_size": 1}
        if saved["world_size"] != self.size or saved.get("global_batch", self.global_batch) != self.global_batch:
            raise CheckpointError(
                f"{ckpt.path}: written by a world of {saved['world_size']} rank(s) with global batch "
                f"{saved.get('global_batch', '?')}, this run has {self.size} with global batch {self.global_batch}: "
                f"resume with mpiexec -n {saved['world_size']} and the same --batch-size")

    def after_resume(self, ckpt: Checkpoint) -> None:
        """This rank's random state (rank 0's was restored with the checkpoint)."""
        saved = (ckpt.meta.get("extra") or {}).get("data_parallel")
        if saved is not None:
            backend.set_rng_state(saved["rng"][self.rank])
