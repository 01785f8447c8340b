"""Supervised fine-tuning on completions: the loss on the answer only, greedy exact-match accuracy, samples.

An example is a list of (text, trained?) segments: a (prompt, answer) pair is
``[("\\n" + prompt, False), (answer + "\\n", True)]``; a chat is its template's turns with the
assistant turns trained (minilora/data/jsonl.py). The example's ids are cut on the left to the
window; its targets are -100 (ignored) everywhere but at the trained segments' tokens, so the
loss is the cross entropy of the answers given their context (supervised fine-tuning, as
instruction tuning does). Rows are right-padded; a causal model's real positions never see the pad.

Accuracy is greedy exact match of every trained segment, decided in the same teacher-forced
forward pass: greedy decoding emits the answer exactly when, at every answer position, the most
likely next token given the true prefix is the true next token. ``greedy_samples`` decodes a few
held-out answers for real, to show them beside the expected ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from minilora import backend
from minilora.autograd import no_grad
from minilora.data.batches import right_pad, shard_batch
from minilora.data.jsonl import Segments, completion_segments, split_answer
from minilora.data.tokenizer import decode_known
from minilora.train.tasks import LMTask

Example = Segments | tuple[str, str]  # segments, or a (prompt, answer) pair


def as_segments(example: Example) -> Segments:
    """A (prompt, answer) pair as its segments; segments unchanged."""
    if isinstance(example, tuple):
        return completion_segments(*example)
    return example


def segments_batch(tokenizer: Any, examples: Sequence[Example], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Host arrays: inputs (B, T) and targets (B, T), -100 except at the trained segments' positions."""
    rows = []
    for example in examples:
        ids, trained = [], []
        for text, train in as_segments(example):
            piece = tokenizer.encode(text)
            ids.append(piece)
            trained.append(np.full(len(piece), train))
        ids_a, trained_a = np.concatenate(ids)[-(window + 1):], np.concatenate(trained)[-(window + 1):]
        x, y = ids_a[:-1], np.where(trained_a[1:], ids_a[1:], -100)
        rows.append((x, y))
    return right_pad([x for x, _ in rows]), right_pad([y for _, y in rows], fill=-100)


def completion_batch(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], window: int
) -> tuple[np.ndarray, np.ndarray]:
    """``segments_batch`` of (prompt, answer) pairs: the loss on each answer and its closing newline."""
    return segments_batch(tokenizer, pairs, window)


class CompletionTask:
    """The trainer's task interface over examples with answers (see the module docstring)."""

    def __init__(
        self,
        train_pairs: Sequence[Example],
        val_pairs: Sequence[Example],
        tokenizer: Any,
        window: int,
        batch_size: int,
        seed: int = 0,
        device: str = "cpu",
        eval_batch_size: int = 64,
    ) -> None:
        if not train_pairs or not val_pairs:
            raise ValueError(f"CompletionTask: need training and validation examples, got {len(train_pairs)} and "
                             f"{len(val_pairs)}")
        self.train_pairs, self.val_pairs = list(train_pairs), list(val_pairs)
        self.tokenizer, self.window, self.batch_size, self.device = tokenizer, window, batch_size, device
        self.eval_batch_size = eval_batch_size
        self.rng = np.random.default_rng(seed)  # host: batches are drawn on the host, then moved
        self.part = slice(None)  # this rank's slice of every batch drawn (all of it in one process)

    def shard(self, rank: int, world_size: int, global_batch: int) -> None:
        """Data parallel: draw ``global_batch`` examples from the seed (the same on every rank), keep this rank's."""
        shard_batch(self, rank, world_size, global_batch)

    def fingerprint(self) -> bytes:
        """A digest of the examples, compared across ranks before data-parallel training."""
        return hashlib.blake2b(repr((self.train_pairs, self.val_pairs)).encode()).digest()

    def next_batch(self) -> tuple[Any, Any]:
        pick = self.rng.integers(0, len(self.train_pairs), size=self.batch_size)[self.part]
        x, y = segments_batch(self.tokenizer, [self.train_pairs[i] for i in pick], self.window)
        return backend.to_device(x, self.device), backend.to_device(y, self.device)

    def loss_weight(self, batch: tuple[Any, Any]) -> Any:
        """The number of answer tokens the loss averages over (data parallel weighs each rank's loss by it)."""
        return (batch[1] != -100).sum()

    # a completion batch is an (inputs, targets) pair like a language-modelling one
    loss = LMTask.loss
    num_tokens = LMTask.num_tokens

    def evaluate(self, model: Any, max_batches: int | None = None) -> dict[str, float]:
        """Loss per answer token and exact-match accuracy over every validation example (no graph)."""
        xp = backend.module_for(self.device)
        totals = None
        with no_grad():
            for i in range(0, len(self.val_pairs), self.eval_batch_size):
                x, y = segments_batch(self.tokenizer, self.val_pairs[i : i + self.eval_batch_size], self.window)
                x, y = backend.to_device(x, self.device), backend.to_device(y, self.device)
                logits, loss = model(x, y)  # (B, T, V), mean over answer tokens
                n_answer = (y != -100).sum()
                hits = ((logits.data.argmax(axis=-1) == y) | (y == -100)).all(axis=1).sum()
                part = xp.stack([loss.data.astype(xp.float64) * n_answer, n_answer.astype(xp.float64),
                                 hits.astype(xp.float64)])
                totals = part if totals is None else totals + part
        loss_sum, n_tokens, correct = backend.to_host(totals).tolist()  # host: one transfer per evaluation
        return {"val_loss": loss_sum / n_tokens, "val_accuracy": correct / len(self.val_pairs)}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def greedy_samples(
    model: Any, tokenizer: Any, examples: Sequence[Example], window: int, device: str = "cpu", max_new_tokens: int = 0,
) -> list[tuple[str, str, str]]:
    """(prompt, expected, generated) for each example: greedy decoding of its last answer, cut at the newline.

    The prompt is everything before the last answer (cut on the left to the window, as in training);
    ``max_new_tokens`` defaults to the expected answer's length plus 4.
    """
    out = []
    newline = tokenizer.encode("\n")
    eos = int(newline[0]) if len(newline) == 1 else None  # host: stop at the end of the answer
    with no_grad():
        for example in examples:
            prompt, expected = split_answer(as_segments(example))
            ids = tokenizer.encode(prompt)[-window:]
            n = max_new_tokens or len(tokenizer.encode(expected)) + 4
            idx = backend.to_device(ids.reshape(1, -1), device)
            new = model.generate(idx, n, temperature=0.0, eos_token_id=eos)[0, len(ids):]
            got = decode_known(tokenizer, new)[0].split("\n")[0]  # a padded model vocabulary: U+FFFD
            out.append((prompt, expected, got))
    return out
