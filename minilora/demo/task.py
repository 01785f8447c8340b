"""The demo's fine-tuning task: (prompt, answer) pairs, the loss on the answer only, greedy exact-match accuracy.

A training example is ``"\\n" + prompt + answer + "\\n"`` cut on the left to the window; its
targets are -100 (ignored) everywhere but at the answer's tokens and the closing newline, so the
loss is the cross entropy of the answer given the prompt (supervised fine-tuning on completions,
as instruction tuning does). Rows are right-padded; a causal model's real positions never see the pad.

Accuracy is greedy exact match of ``answer + "\\n"``, decided in the same teacher-forced forward
pass: greedy decoding emits the answer exactly when, at every answer position, the most likely
next token given the true prefix is the true next token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from minilora import backend
from minilora.autograd import no_grad
from minilora.train.tasks import LMTask


def completion_batch(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Host arrays: inputs (B, T) and targets (B, T), -100 except at the answer's (and newline's) positions."""
    rows = []
    for prompt, answer in pairs:
        ids = tokenizer.encode("\n" + prompt + answer + "\n")[-(window + 1):]
        x, y = ids[:-1], ids[1:].copy()
        y[: max(0, len(y) - len(answer) - 1)] = -100
        rows.append((x, y))
    T = max(len(x) for x, _ in rows)
    xs = np.zeros((len(rows), T), np.int64)
    ys = np.full((len(rows), T), -100, np.int64)
    for j, (x, y) in enumerate(rows):
        xs[j, : len(x)], ys[j, : len(y)] = x, y
    return xs, ys


class CompletionTask:
    """The trainer's task interface over (prompt, answer) pairs (see the module docstring)."""

    def __init__(
        self,
        train_pairs: Sequence[tuple[str, str]],
        val_pairs: Sequence[tuple[str, str]],
        tokenizer: Any,
        window: int,
        batch_size: int,
        seed: int = 0,
        device: str = "cpu",
        eval_batch_size: int = 64,
    ) -> None:
        if not train_pairs or not val_pairs:
            raise ValueError(f"CompletionTask: need training and validation pairs, got {len(train_pairs)} and "
                             f"{len(val_pairs)}")
        self.train_pairs, self.val_pairs = list(train_pairs), list(val_pairs)
        self.tokenizer, self.window, self.batch_size, self.device = tokenizer, window, batch_size, device
        self.eval_batch_size = eval_batch_size
        self.rng = np.random.default_rng(seed)  # host: batches are drawn on the host, then moved

    def next_batch(self) -> tuple[Any, Any]:
        pick = self.rng.integers(0, len(self.train_pairs), size=self.batch_size)
        x, y = completion_batch(self.tokenizer, [self.train_pairs[i] for i in pick], self.window)
        return backend.to_device(x, self.device), backend.to_device(y, self.device)

    # a completion batch is an (inputs, targets) pair like a language-modelling one
    loss = LMTask.loss
    num_tokens = LMTask.num_tokens

    def evaluate(self, model: Any, max_batches: int | None = None) -> dict[str, float]:
        """Loss per answer token and exact-match accuracy over every validation pair (no graph)."""
        xp = backend.module_for(self.device)
        totals = None
        with no_grad():
            for i in range(0, len(self.val_pairs), self.eval_batch_size):
                x, y = completion_batch(self.tokenizer, self.val_pairs[i : i + self.eval_batch_size], self.window)
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
