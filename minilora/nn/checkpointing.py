"""Gradient checkpointing for a stack of blocks, with Hugging Face's method names.

``model.gradient_checkpointing_enable()`` makes every Transformer block of the model but the last run
through ``minilora.checkpoint`` while the model is training and gradients are recorded: a block then
keeps only its (B, T, C) input for backward and is rerun there (docs/memory.md measures the trade).
The last block is not checkpointed: its backward comes right after its forward (only the norm, head and
loss lie between), so its activations would be rebuilt at once, at the same peak (one block's
activations live), for one block's extra forward. Measured on the medium GPT with LoRA: step peak
61.4 vs 61.2 MiB, step time 1.36x vs 1.42x the unchecked step (benchmarks/bench_memory.py).
``num_layers=k`` checkpoints only the first k blocks (Megatron's ``--recompute-num-layers``): the rest keep
their activations. It trades the other way: with LoRA the rerun is most of the price (a no-grad forward is
~0.44 of a medium LoRA step), so checkpointing 4 of the medium GPT's 6 blocks measured 1.29x the step time
at 0.43x its peak, against 1.36x at 0.30x for the default (docs/memory.md).
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
    gradient_checkpointing_layers: int | None = None  # None: every block but the last
    training: bool
    blocks: Any

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict[str, Any] | None = None, num_layers: int | None = None
    ) -> None:
        """Checkpoint every block but the last in training, or only the first ``num_layers`` blocks
        (0 to n_layer). ``gradient_checkpointing_kwargs`` is accepted for HF compatibility; the only behaviour is
        PyTorch's non-reentrant one, so it must be empty or ``{"use_reentrant": False}``."""
        extra = dict(gradient_checkpointing_kwargs or {})
        if extra.pop("use_reentrant", False) or extra:
            raise ValueError(
                f"gradient_checkpointing_enable: unsupported gradient_checkpointing_kwargs "
                f"{gradient_checkpointing_kwargs} (minilora's checkpoint always behaves as use_reentrant=False)"
            )
        n = len(self.blocks)
        if num_layers is not None and (type(num_layers) is not int or not 0 <= num_layers <= n):
            raise ValueError(f"gradient_checkpointing_enable: num_layers must be a whole number from 0 to {n} "
                             f"(the model's blocks) or None, got {num_layers!r}")
        self.gradient_checkpointing, self.gradient_checkpointing_layers = True, num_layers

    def gradient_checkpointing_disable(self) -> None:
        self.gradient_checkpointing, self.gradient_checkpointing_layers = False, None

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.gradient_checkpointing

    def run_block(self, block: Any, x: Tensor, index: int, n_blocks: int, **kwargs: Any) -> Tensor:
        """``block(x, **kwargs)`` for block ``index`` of ``n_blocks``: checkpointed when enabled, training, and
        recording a graph without a KV cache, if it is one of the blocks chosen (see the module docstring)."""
        k = n_blocks - 1 if self.gradient_checkpointing_layers is None else self.gradient_checkpointing_layers
        if (self.gradient_checkpointing and index < k and self.training and is_grad_enabled()
                and kwargs.get("kv_cache") is None):
            return checkpoint(block, x, **kwargs)
        return block(x, **kwargs)
