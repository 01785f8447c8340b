"""The demo's fine-tuning task, now ``minilora.train.completion`` (kept so these names keep working)."""

from minilora.train.completion import CompletionTask, completion_batch

__all__ = ["CompletionTask", "completion_batch"]
