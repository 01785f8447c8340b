"""Batches: random windows of a token array (language modelling), padded labelled examples
(classification), and a train/validation split. Randomness is a host NumPy Generator
seeded by the caller, so a batch sequence is the same on CPU and GPU; batches are then
moved to the device in one explicit copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from minilora import backend
from minilora.data.tokenizer import CharTokenizer

T = TypeVar("T")


def train_val_split(data: Sequence[T] | np.ndarray, val_fraction: float = 0.1) -> tuple[Any, Any]:
    """(train, val): the last ``val_fraction`` of ``data`` (tokens or examples) is held out, contiguously.

    A contiguous tail, not a random subset, so no validation window overlaps a training window.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"train_val_split: val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, int(round(len(data) * val_fraction)))
    if n_val >= len(data):
        raise ValueError(f"train_val_split: {len(data)} items are too few to hold out {val_fraction:.0%}")
    return data[: len(data) - n_val], data[len(data) - n_val :]


class BatchSampler:
    """Random (x, y) windows from a 1-D token array: y is x shifted by one token.

    ``sample()`` returns two int64 device arrays of shape (batch_size, block_size).
    The generator's state is part of a checkpoint (``state_dict``), so a resumed run
    draws the very batches the uninterrupted run would have drawn.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, block_size: int, seed: int = 0, device: str = "cpu"):
        tokens = np.asarray(tokens, dtype=np.int64)  # host
        if tokens.ndim != 1:
            raise ValueError(f"BatchSampler: tokens must be 1-D, got shape {tokens.shape}")
        if len(tokens) < block_size + 2:
            raise ValueError(
                f"BatchSampler: {len(tokens)} tokens are too few for windows of block_size {block_size} "
                "(use more text or a smaller block size)"
            )
        self.tokens, self.batch_size, self.block_size, self.device = tokens, batch_size, block_size, device
        self.rng = np.random.default_rng(seed)
        self.part = slice(None)  # this rank's slice of every batch drawn (all of it in one process)

    def shard(self, rank: int, world_size: int, global_batch: int) -> None:
        """Data parallel: draw ``global_batch`` rows from the seed (the same on every rank), keep this rank's slice."""
        shard_batch(self, rank, world_size, global_batch)

    def sample(self) -> tuple[Any, Any]:
        """One random batch ``(x, y)``, each (batch_size, block_size) int64 on the device (sharded: this rank's)."""
        starts = self.rng.integers(0, len(self.tokens) - self.block_size - 1, size=self.batch_size)[self.part]
        offsets = starts[:, None] + np.arange(self.block_size + 1)  # (B, T + 1)
        window = self.tokens[offsets]
        return (backend.to_device(window[:, :-1], self.device), backend.to_device(window[:, 1:], self.device))

    def __len__(self) -> int:
        """Batches in one epoch: enough windows to cover the tokens once (on average; windows are random)."""
        return max(1, -(-(len(self.tokens) - 1) // (self.batch_size * self.block_size)))

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """``for x, y in sampler:`` one epoch of ``len(sampler)`` random batches (as a DataLoader loop)."""
        for _ in range(len(self)):
            yield self.sample()

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def shard_batch(sampler: Any, rank: int, world_size: int, global_batch: int) -> None:
    """Make ``sampler`` draw ``global_batch`` rows and keep rows [rank * b, (rank + 1) * b), b = global / world."""
    if world_size < 1 or not 0 <= rank < world_size or global_batch < world_size or global_batch % world_size:
        raise ValueError(f"{type(sampler).__name__}.shard: rank {rank} of {world_size} cannot take an equal slice "
                         f"of a global batch of {global_batch}")
    b = global_batch // world_size
    sampler.batch_size, sampler.part = global_batch, slice(rank * b, (rank + 1) * b)


def eval_windows(
    tokens: np.ndarray, batch_size: int, block_size: int, max_batches: int | None = None, device: str = "cpu"
) -> Iterator[tuple[Any, Any]]:
    """Consecutive non-overlapping (x, y) windows covering ``tokens`` from the start: deterministic, no RNG."""
    tokens = np.asarray(tokens, dtype=np.int64)  # host
    n_windows = (len(tokens) - 1) // block_size
    if n_windows < 1:
        raise ValueError(f"eval_windows: {len(tokens)} tokens are fewer than one window of {block_size + 1}")
    starts = np.arange(n_windows) * block_size
    for b, i in enumerate(range(0, n_windows, batch_size)):
        if max_batches is not None and b >= max_batches:
            return
        offsets = starts[i : i + batch_size, None] + np.arange(block_size + 1)
        window = tokens[offsets]
        yield backend.to_device(window[:, :-1], device), backend.to_device(window[:, 1:], device)


def right_pad(rows: Sequence[Any], fill: int = 0) -> np.ndarray:
    """Host int64 array (len(rows), longest row): each row from the left, ``fill`` after it."""
    out = np.full((len(rows), max(len(r) for r in rows)), fill, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def pad_examples(
    examples: Sequence[tuple[str, int]], tokenizer: CharTokenizer, block_size: int, device: str = "cpu"
) -> tuple[Any, Any, Any]:
    """(idx, attention_mask, labels) for labelled texts: right-padded with id 0, mask 1 on real tokens.

    Texts longer than ``block_size`` keep their last ``block_size`` characters (the verdict of a
    review is at its end, and the classifier reads the last real token).
    """
    encoded = [tokenizer.encode(t)[-block_size:] for t, _ in examples]
    idx = right_pad(encoded)
    mask = right_pad([np.ones(len(e), dtype=np.int64) for e in encoded])
    labels = np.array([y for _, y in examples], dtype=np.int64)
    return tuple(backend.to_device(a, device) for a in (idx, mask, labels))  # type: ignore[return-value]


class ExampleSampler:
    """Random batches of labelled examples for classification, as ``pad_examples`` returns them."""

    def __init__(
        self,
        examples: Sequence[tuple[str, int]],
        tokenizer: CharTokenizer,
        batch_size: int,
        block_size: int,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if not examples:
            raise ValueError("ExampleSampler: no examples")
        self.examples, self.tokenizer = list(examples), tokenizer
        self.batch_size, self.block_size, self.device = batch_size, block_size, device
        self.rng = np.random.default_rng(seed)
        self.part = slice(None)

    def sample(self) -> tuple[Any, Any, Any]:
        """One random batch ``(idx, attention_mask, labels)`` (see ``pad_examples``)."""
        pick = self.rng.integers(0, len(self.examples), size=self.batch_size)
        # padded to the longest of the whole (global) batch, then sliced: every rank's shapes match one process's
        batch = pad_examples([self.examples[i] for i in pick], self.tokenizer, self.block_size, self.device)
        return batch if self.part == slice(None) else tuple(a[self.part] for a in batch)  # type: ignore[return-value]

    def __len__(self) -> int:
        """Batches in one epoch: ceil(examples / batch_size)."""
        return -(-len(self.examples) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, Any, Any]]:
        """``for idx, mask, labels in sampler:`` one epoch of ``len(sampler)`` random batches."""
        for _ in range(len(self)):
            yield self.sample()

    shard = BatchSampler.shard
    state_dict = BatchSampler.state_dict
    load_state_dict = BatchSampler.load_state_dict
