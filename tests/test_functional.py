"""The public F namespace: every contract name is there, every fused op has gradcheck cases that pass."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import F, gradcheck
from minilora.autograd import FUNCTIONS

CONTRACT = [
    "linear", "gelu", "silu", "softmax", "log_softmax", "layer_norm", "rms_norm", "embedding", "dropout",
    "cross_entropy", "scaled_dot_product_attention", "concat", "stack", "split", "where", "masked_fill",
    "relu", "tanh", "sigmoid",
]
MINE = ("activation", "attention", "dropout", "embedding", "linear", "loss", "normalization", "softmax")


def test_contract_names():
    for name in CONTRACT:
        assert callable(getattr(F, name)), name
    assert ml.F is ml.functional


def test_every_fused_op_has_a_case():
    ops = {cls for key, cls in FUNCTIONS.items() if key.split(".")[2] in MINE}
    assert len(ops) >= 11
    covered = {case.op for case in gradcheck.CASES}
    assert ops <= covered, ops - covered


@pytest.mark.parametrize(
    "case", [c for c in gradcheck.CASES if c.op.__module__.split(".")[-1] in MINE], ids=lambda c: c.name
)
def test_registered_cases_pass(device, case):
    gradcheck.run_case(case, device)


def test_elementwise_wrappers(device):
    x = ml.tensor(np.array([-1.0, 0.5]), device=device)
    np.testing.assert_allclose(F.relu(x).numpy(), [0.0, 0.5])
    np.testing.assert_allclose(F.tanh(x).numpy(), np.tanh([-1.0, 0.5]))
    np.testing.assert_allclose(F.sigmoid(x).numpy(), 1 / (1 + np.exp([1.0, -0.5])))
