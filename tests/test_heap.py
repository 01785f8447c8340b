"""minilora.heap: a freed NumPy buffer is reused by the next one of its size without page faults."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import numpy as np
import pytest

import minilora  # noqa: F401  (the import tunes malloc)
from minilora import heap


@pytest.mark.skipif(not heap.keep_freed_memory(), reason="glibc's mallopt is not available here")
def test_a_steps_freed_activations_come_back_without_page_faults():
    def step() -> list[np.ndarray]:  # six 2 MiB activations alive at once, then all freed, as in a step
        return [np.ones((2 << 20) // 4, dtype=np.float32) for _ in range(6)]

    step()
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 300, f"{faults} page faults for five reused steps (untuned glibc trims the heap: ~15,000)"


def test_the_environment_variable_leaves_malloc_alone():
    env = {**os.environ, heap.ENV_VAR: "0"}
    code = "import minilora.heap as h; print(h.keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
