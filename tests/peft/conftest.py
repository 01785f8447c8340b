"""Shared by the PEFT tests: greedy decoding by full recomputation, the reference for ``generate``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import minilora as ml


@pytest.fixture
def greedy_by_recomputation() -> Callable[..., np.ndarray]:
    """``greedy_by_recomputation(model, idx, steps, **kw)``: host ids after ``steps`` argmax tokens, each from a
    fresh forward pass over the whole sequence (no KV cache)."""

    def decode(model: Any, idx: np.ndarray, steps: int, **kw: Any) -> np.ndarray:
        ids = idx.copy()
        with ml.no_grad():
            for _ in range(steps):
                logits, _ = model(ids, **kw)
                ids = np.concatenate([ids, logits.numpy()[:, -1].argmax(-1)[:, None]], axis=1)
        return ids

    return decode
