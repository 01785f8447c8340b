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
    "relu", "tanh", "sigmoid", "rotary_embedding", "swiglu",
]
MINE = ("activation", "attention", "dropout", "embedding", "linear", "loss", "normalization", "rope", "softmax")


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


def test_dim_keyword_is_accepted_for_axis():
    x = ml.tensor(np.random.default_rng(0).standard_normal((3, 4)))
    np.testing.assert_allclose(F.softmax(x, dim=0).numpy(), F.softmax(x, axis=0).numpy())
    np.testing.assert_allclose(F.log_softmax(x, dim=-1).numpy(), F.log_softmax(x).numpy())
    assert F.cat([x, x], dim=1).shape == (3, 8) and F.concat([x, x], dim=0).shape == (6, 4)
    assert F.stack([x, x], dim=-1).shape == (3, 4, 2)
    assert [p.shape for p in F.split(x, 2, dim=1)] == [(3, 2), (3, 2)]
    with pytest.raises(TypeError, match="softmax: got both axis=0 and dim=1"):
        F.softmax(x, axis=0, dim=1)
