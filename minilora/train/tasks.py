"""Tasks: what one training batch is, how its loss is computed, and how a model is validated.

The trainer is task-agnostic: it asks the task for a batch, the loss of the model on
it, the number of tokens in it (for tokens/s) and a validation report. Two tasks cover
pre-training and fine-tuning:

- ``LMTask``: next-token prediction on a token array (``logits, loss = model(x, y)``);
- ``ClassificationTask``: labelled texts for ``GPTForSequenceClassification``
  (``logits, loss = model(idx, labels=labels, attention_mask=mask)``), reporting accuracy.

Anything else (a PEFT model with a different call, a custom loss) is a task with these
five methods, or a ``loss_fn(model, batch) -> loss Tensor`` given to the Trainer.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from minilora import backend
from minilora.autograd import no_grad
from minilora.data.batches import BatchSampler, ExampleSampler, eval_windows, pad_examples
from minilora.data.tokenizer import CharTokenizer


def evaluate_lm(
    model: Any, tokens: np.ndarray, block_size: int, batch_size: int, max_batches: int | None, device: str = "cpu"
) -> dict[str, float]:
    """Mean next-token loss (and perplexity) over consecutive windows of ``tokens``; no graph, one host sync."""
    total, count = None, 0
    with no_grad():
        for x, y in eval_windows(tokens, batch_size, block_size, max_batches, device):
            _, loss = model(x, y)
            part = loss.data * x.shape[0]
            total = part if total is None else total + part
            count += x.shape[0]
    val_loss = float(backend.to_host(total)) / count  # host (one sync per evaluation)
    return {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0)), "windows": count}


class LMTask:
    """Language modelling on token arrays: random training windows, fixed validation windows."""

    def __init__(
        self,
        train_tokens: np.ndarray,
        val_tokens: np.ndarray,
        block_size: int,
        batch_size: int,
        seed: int = 0,
        device: str = "cpu",
        eval_batches: int = 8,
    ) -> None:
        self.sampler = BatchSampler(train_tokens, batch_size, block_size, seed=seed, device=device)
        self.val_tokens, self.block_size, self.batch_size = val_tokens, block_size, batch_size
        self.device, self.eval_batches = device, eval_batches
        if len(val_tokens) < block_size + 1:
            raise ValueError(
                f"LMTask: {len(val_tokens)} validation tokens are fewer than one window ({block_size + 1})"
            )

    def next_batch(self) -> tuple[Any, Any]:
        return self.sampler.sample()

    def shard(self, rank: int, world_size: int, global_batch: int) -> None:
        """Data parallel: every rank draws the same global batch and trains on its slice (see BatchSampler.shard).

        Validation then reads ``eval_batches`` batches of the global size on every rank: the same windows,
        and so the same report, as one process with that batch.
        """
        self.sampler.shard(rank, world_size, global_batch)
        self.batch_size = global_batch

    def fingerprint(self) -> bytes:
        """A digest of the data, compared across ranks before data-parallel training."""
        return hashlib.blake2b(self.sampler.tokens.tobytes() + np.asarray(self.val_tokens).tobytes()).digest()  # host

    def loss(self, model: Any, batch: tuple[Any, Any]) -> Any:
        _, loss = model(batch[0], batch[1])
        return loss

    def num_tokens(self, batch: tuple[Any, Any]) -> int:
        return int(batch[0].size)

    def evaluate(self, model: Any, max_batches: int | None = None) -> dict[str, float]:
        """Mean validation loss over the first ``eval_batches`` consecutive windows (the same ones every time)."""
        return evaluate_lm(
            model, self.val_tokens, self.block_size, self.batch_size, max_batches or self.eval_batches, self.device
        )

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


class ClassificationTask:
    """Sequence classification on (text, label) examples; validation reports loss and accuracy."""

    def __init__(
        self,
        train_examples: Sequence[tuple[str, int]],
        val_examples: Sequence[tuple[str, int]],
        tokenizer: CharTokenizer,
        block_size: int,
        batch_size: int,
        seed: int = 0,
        device: str = "cpu",
        eval_batches: int = 8,
    ) -> None:
        self.sampler = ExampleSampler(train_examples, tokenizer, batch_size, block_size, seed=seed, device=device)
        self.val_examples, self.tokenizer = list(val_examples), tokenizer
        self.block_size, self.batch_size, self.device, self.eval_batches = block_size, batch_size, device, eval_batches

    def next_batch(self) -> tuple[Any, Any, Any]:
        return self.sampler.sample()

    shard = LMTask.shard

    def fingerprint(self) -> bytes:
        return hashlib.blake2b(repr((self.sampler.examples, self.val_examples)).encode()).digest()

    def loss(self, model: Any, batch: tuple[Any, Any, Any]) -> Any:
        idx, mask, labels = batch
        _, loss = model(idx, labels=labels, attention_mask=mask)
        return loss

    def num_tokens(self, batch: tuple[Any, Any, Any]) -> int:
        return int(batch[0].size)

    def evaluate(self, model: Any, max_batches: int | None = None) -> dict[str, float]:
        """Loss and accuracy over the first ``eval_batches`` batches of the validation examples (in order)."""
        total_loss, correct, count = None, None, 0
        n = min(len(self.val_examples), (max_batches or self.eval_batches) * self.batch_size)
        with no_grad():
            for i in range(0, n, self.batch_size):
                idx, mask, labels = pad_examples(
                    self.val_examples[i : min(n, i + self.batch_size)], self.tokenizer, self.block_size, self.device
                )
                logits, loss = model(idx, labels=labels, attention_mask=mask)
                hits = (logits.data.argmax(axis=-1) == labels).sum()
                part = loss.data * labels.shape[0]
                total_loss = part if total_loss is None else total_loss + part
                correct = hits if correct is None else correct + hits
                count += labels.shape[0]
        xp = backend.get_array_module(total_loss)
        both = backend.to_host(xp.stack([total_loss.astype(xp.float64), correct.astype(xp.float64)]))  # host
        return {"val_loss": float(both[0]) / count, "val_accuracy": float(both[1]) / count}  # host values

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
