"""The probe times steps and traces the memory of one."""

from __future__ import annotations

import numpy as np

from minilora.demo.measure import ProbedTask


class _Task:
    def next_batch(self):
        return np.ones((64, 64), np.float32)

    def evaluate(self, model, max_batches=None):
        return {"val_loss": 1.0}


def test_probe_times_steps_and_traces_one():
    probe = ProbedTask(_Task(), "cpu", trace_step=1)
    for _ in range(5):
        probe.next_batch()
    probe.close()
    assert probe.traced_peak is not None and probe.traced_peak >= 64 * 64 * 4
    assert len(probe.step_times) == 3  # step 1 was traced: left out of the timing
    assert probe.ms_per_step() >= 0


def test_steps_with_a_validation_run_are_not_timed():
    probe = ProbedTask(_Task(), "cpu", trace_step=99)
    probe.next_batch()
    probe.evaluate(None)
    probe.next_batch()  # closes step 0, which contained the evaluation
    probe.next_batch()
    assert len(probe.step_times) == 1
