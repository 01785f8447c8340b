"""Gradient checkpointing for a stack of blocks, with Hugging Face's method names.

``model.gradient_checkpointing_enable()`` makes every Transformer block of the model but the last run
through ``minilora.checkpoint`` while the model is training and gradients are recorded: a block then
keeps only its (B, T, C) input for backward and is rerun there (docs/memory.md measures the trade).
The last block is not checkpointed: its backward comes right after its forward (only the norm, head and
loss lie between), so its activations would be rebuilt at once, at the same peak (one block's
activations live), for one block's extra forward. Measured on the medium GPT with LoRA: step peak
61.4 vs 61.2 MiB, step time 1.36x vs 1.42x the unchecked step (benchmarks/bench_memory.py).
Generation (no_grad, KV cache) and evaluation are untouched: checkpointing only acts where a graph
would be kept, so the KV cache, which refuses a graph, never meets it.
"""

from __future__ import annotations

from typing import Any

from minilora.activation_checkpoint import checkpoint
from minilora.autograd import is_grad_enabled
from minilora.tensor import Tensor


class GradientCheckpointing:
    """Mixin for a model whose forward runs its blocks through ``run_block``."""

    gradient_checkpointing: bool = False
    training: bool

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Checkpoint every block but the last in training (``gradient_checkpointing_kwargs`` is accepted for HF
        compatibility; the only behaviour is PyTorch's non-reentrant one, so it must be empty or
        ``{"use_reentrant": False}``)."""
        extra = dict(gradient_checkpointing_kwargs or {})
        if extra.pop("use_reentrant", False) or extra:
            raise ValueError(
                f"gradient_checkpointing_enable: unsupported gradient_checkpointing_kwargs "
                f"{gradient_checkpointing_kwargs} (minilora's checkpoint always behaves as use_reentrant=False)"
            )
        self.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.gradient_checkpointing

    def run_block(self, block: Any, x: Tensor, last: bool = False, **kwargs: Any) -> Tensor:
        """``block(x, **kwargs)``, checkpointed when enabled, training, and recording a graph without a KV cache,
        unless it is the ``last`` block."""
        if (self.gradient_checkpointing and not last and self.training and is_grad_enabled()
                and kwargs.get("kv_cache") is None):
            return checkpoint(block, x, **kwargs)
        return block(x, **kwargs)
