"""Training: the Trainer (one loop for pre-training and fine-tuning), tasks, and safe checkpoints."""

from minilora.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write_npz,
    build_model,
    load_checkpoint,
    restore_model,
    restore_optimizer,
    save_checkpoint,
)
from minilora.train.completion import CompletionTask, greedy_samples
from minilora.train.config import TrainConfig
from minilora.train.tasks import ClassificationTask, LMTask
from minilora.train.trainer import History, Trainer, make_optimizer

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ClassificationTask",
    "CompletionTask",
    "History",
    "LMTask",
    "TrainConfig",
    "Trainer",
    "atomic_write_npz",
    "build_model",
    "greedy_samples",
    "load_checkpoint",
    "make_optimizer",
    "restore_model",
    "restore_optimizer",
    "save_checkpoint",
]
