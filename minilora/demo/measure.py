"""What the demo measures besides the loss: step time, memory, weight bytes and task accuracy.

- ms/step: the median wall time between the starts of consecutive training steps, leaving out
  steps that contained a validation run and the one traced for memory. Each step ends with the
  trainer's one host sync (the loss), so on a GPU the time includes the device work.
- peak memory: the bytes alive when a step starts (weights and buffers, optimizer state) plus the
  highest extra allocation during one training step (the second: the optimizer state exists by then),
  measured with ``tracemalloc``, which sees NumPy's array allocations (activations, gradients,
  temporaries). On a GPU: CuPy's memory pool (``total_bytes``, which keeps freed blocks and so
  tracks the high-water mark) after that step, the pool emptied first.
- weight memory: every parameter and buffer as stored (NF4 codes and scales for QLoRA), tied
  parameters once (``minilora.peft.qlora.storage_report``).
- accuracy: greedy exact match of the answer after the prompt (task.py).
"""

from __future__ import annotations

import math
import statistics
import time
import tracemalloc
from typing import Any

from minilora import backend


class ProbedTask:
    """Wraps a trainer task: times every step and traces the memory of one (see the module docstring)."""

    def __init__(self, task: Any, device: str = "cpu", trace_step: int = 1) -> None:
        self.task, self.device, self.trace_step = task, device, trace_step
        self.step_times: list[float] = []
        self.traced_peak: int | None = None  # extra bytes at the peak of the traced step
        self._n, self._last, self._skip, self._tracing = 0, None, False, False

    # the trainer's task interface
    def next_batch(self) -> Any:
        now = time.perf_counter()
        if self._last is not None and not self._skip:
            self.step_times.append(now - self._last)
        self._finish_trace()
        self._skip = False
        if self._n == self.trace_step:
            self._start_trace()
            self._skip = True
        self._n += 1
        self._last = time.perf_counter()
        return self.task.next_batch()

    def evaluate(self, model: Any, max_batches: int | None = None) -> dict[str, float]:
        self._finish_trace()
        self._skip = True  # this step's time includes a validation run
        return self.task.evaluate(model, max_batches)

    def loss(self, model: Any, batch: Any) -> Any:
        return self.task.loss(model, batch)

    def num_tokens(self, batch: Any) -> int:
        return self.task.num_tokens(batch)

    def state_dict(self) -> dict[str, Any]:
        return self.task.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task.load_state_dict(state)

    # measurements
    def ms_per_step(self) -> float:
        return 1e3 * statistics.median(self.step_times) if self.step_times else math.nan

    def _start_trace(self) -> None:
        if self.device == "cpu":
            if tracemalloc.is_tracing():  # someone else traces: measure relative to now
                tracemalloc.reset_peak()
                self._base = tracemalloc.get_traced_memory()[0]
                self._owned = False
            else:
                tracemalloc.start()
                self._base, self._owned = 0, True
        else:
            pool = _memory_pool(self.device)
            if pool is None:
                return
            pool.free_all_blocks()
            self._base = pool.used_bytes()
        self._tracing = True

    def _finish_trace(self) -> None:
        if not self._tracing:
            return
        self._tracing = False
        if self.device == "cpu":
            peak = tracemalloc.get_traced_memory()[1]
            if self._owned:
                tracemalloc.stop()
            self.traced_peak = max(0, peak - self._base)
        else:
            self.traced_peak = max(0, _memory_pool(self.device).total_bytes() - self._base)

    def close(self) -> None:
        self._finish_trace()


def _memory_pool(device: str) -> Any:
    """CuPy's default memory pool, or None for an array module without one (the tests' strict stand-in)."""
    get_pool = getattr(backend.module_for(device), "get_default_memory_pool", None)
    return get_pool() if get_pool is not None else None


def weight_bytes(model: Any) -> int:
    """Bytes of every parameter and buffer as stored (NF4 buffers included, tied parameters once)."""
    from minilora.peft.qlora import storage_report  # noqa: PLC0415

    return storage_report(model).model_bytes
