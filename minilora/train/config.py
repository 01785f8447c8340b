"""TrainConfig: every knob of the training loop, as a dataclass that round-trips through JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

from minilora.validate import check_fields, check_range, from_dict


@dataclasses.dataclass
class TrainConfig:
    """Settings of one training run (pre-training or fine-tuning).

    Steps count optimizer updates; with ``grad_accum_steps`` k each update sees k batches
    of ``batch_size`` on each rank (``mpiexec -n N``: k batches of N x ``batch_size``, or of
    ``global_batch_size`` when set, split evenly). ``grad_clip`` 0 disables clipping (the non-finite guard stays on).
    ``eval_interval`` / ``checkpoint_interval`` 0 mean "only at the end". ``out_dir`` None
    writes no checkpoint and no metrics log. ``gradient_checkpointing`` calls the model's
    ``gradient_checkpointing_enable()`` (docs/memory.md).
    """

    max_steps: int = 600
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    schedule: str = "cosine"  # constant | cosine | linear
    optimizer: str = "adamw"  # adamw | adam | sgd
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    momentum: float = 0.9  # sgd only
    grad_clip: float = 1.0
    grad_accum_steps: int = 1
    global_batch_size: int = 0  # data parallel: 0 means batch_size x the number of ranks (batch_size is per rank)
    eval_interval: int = 100
    eval_batches: int = 8
    eval_at_start: bool = True
    checkpoint_interval: int = 0
    out_dir: str | None = None
    seed: int = 1337
    device: str = "cpu"
    progress: bool = True
    gradient_checkpointing: bool = False  # rerun each block in backward instead of keeping its activations
    precision: str = "fp32"  # fp32 | bf16 | fp16: 16-bit GEMMs, float32 master weights (fp16: loss scaling)

    def __post_init__(self) -> None:
        check_fields(self)  # types first: "3.7" steps, "nan" rates and "no" flags are refused by name
        for name in ("max_steps", "batch_size", "grad_accum_steps", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "grad_clip", "warmup_steps", "eval_interval", "checkpoint_interval",
                     "global_batch_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig: {name} must be >= 0, got {getattr(self, name)}")
        check_range(self, "min_lr_ratio", 0.0, 1.0)
        for name in ("beta1", "beta2", "momentum"):
            check_range(self, name, 0.0, 1.0, high_open=True)
        if self.optimizer not in ("adamw", "adam", "sgd"):
            raise ValueError(f"TrainConfig: optimizer must be adamw, adam or sgd, got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine", "linear"):
            raise ValueError(f"TrainConfig: schedule must be constant, cosine or linear, got {self.schedule!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"TrainConfig: precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"TrainConfig: device must be 'cpu' or 'cuda', got {self.device!r}")
        self.warmup_steps = min(self.warmup_steps, self.max_steps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict; an unknown key is an error that lists the valid ones."""
        return from_dict(cls, d, noun="option")
