"""Gradient buckets: many gradients packed into a few flat buffers, one all-reduce per buffer.

A collective costs a latency per call plus its bytes over the bandwidth; a GPT has dozens of
parameter tensors, so reducing them one by one pays the latency dozens of times. Horovod's
tensor fusion and PyTorch DDP's buckets pack them instead: consecutive parameters share a flat
buffer until it reaches ``cap_bytes`` (25 MiB, DDP's default), and each buffer is reduced once.

Only the parameters handed in are packed: the Trainer hands in the trainable ones, so LoRA
moves its small matrices and never the frozen base (``nbytes`` says how many bytes a step moves).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minilora import backend

DEFAULT_CAP_BYTES = 25 * 2**20


class GradBuckets:
    """The gradients of ``params`` in flat buffers of at most ``cap_bytes`` each (one dtype per buffer)."""

    def __init__(self, params: Sequence[Any], comm: Any, cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        if cap_bytes < 1:
            raise ValueError(f"GradBuckets: cap_bytes must be >= 1, got {cap_bytes}")
        self.comm, self.buckets, self.params = comm, [], list(params)
        current: list[Any] = []
        for p in params:
            size = int(p.data.size) * p.data.dtype.itemsize
            used = sum(int(q.data.size) * q.data.dtype.itemsize for q in current)
            if current and (current[0].data.dtype != p.data.dtype or used + size > cap_bytes):
                self.buckets.append(current)
                current = []
            current.append(p)
        if current:
            self.buckets.append(current)

    @property
    def nbytes(self) -> int:
        """Bytes one all_reduce_grads() reduces (every rank sends and receives about this much, ring or tree)."""
        return sum(int(p.data.size) * p.data.dtype.itemsize for b in self.buckets for p in b)

    @staticmethod
    def _flatten(arrays: list[Any]) -> Any:
        xp = backend.get_array_module(*arrays)
        return xp.concatenate([a.reshape(-1) for a in arrays])

    def all_reduce_grads(self, op: str = "mean") -> None:
        """Average (or sum) every gradient over the ranks; a parameter with no gradient counts as zeros."""
        for bucket in self.buckets:
            xp, dtype = bucket[0].xp, bucket[0].data.dtype
            grads = [p.grad.astype(dtype, copy=False) if p.grad is not None else xp.zeros(p.data.shape, dtype=dtype)
                     for p in bucket]
            flat = self.comm.all_reduce(self._flatten(grads), op)  # (sum of sizes,)
            offset = 0
            for p in bucket:
                n = int(p.data.size)
                old = p.grad
                # a view of the reduced buffer, rebound (never written into: backward may share p.grad's array)
                p.grad = flat[offset : offset + n].reshape(p.data.shape)
                if old is not None and old.dtype != dtype:
                    p.grad = p.grad.astype(old.dtype)
                offset += n

    def broadcast_data(self, root: int = 0) -> None:
        """Every rank's parameter values replaced by rank ``root``'s, in place (the same arrays stay)."""
        for bucket in self.buckets:
            flat = self.comm.broadcast(self._flatten([p.data for p in bucket]), root)
            offset = 0
            for p in bucket:
                n = int(p.data.size)
                p.data[...] = flat[offset : offset + n].reshape(p.data.shape)
                offset += n
