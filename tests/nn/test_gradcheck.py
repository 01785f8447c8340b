"""check_module_grad: it checks every trainable parameter (tied ones through every use) and catches wrong gradients."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.gradcheck import GradcheckError
from minilora.nn import Linear, Module
from minilora.nn.gradcheck import check_module_grad


class Tied(Module):
    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.a, self.b = Linear(3, 3), Linear(3, 3, bias=False)
        self.b.weight = self.a.weight
        self.broken = broken

    def forward(self, x):
        h = self.a(x).tanh()
        w = ml.Tensor(self.b.weight.data) if self.broken else self.b.weight  # broken: second use detached
        return h @ w.T


def test_checks_tied_parameters_through_every_use(device, rng):
    m = Tied().to(device).double()
    x = ml.tensor(rng.standard_normal((2, 3)), device=device, requires_grad=True)
    reports = check_module_grad(m, lambda x: m(x), [x], full_max=4)
    checked = set().union(*(r.per_input for r in reports))
    assert checked == {"input 0", "a.weight", "a.bias"}
    assert m.a.weight is m.b.weight and isinstance(m.a.weight, ml.nn.Parameter)  # restored


def test_catches_a_missing_gradient_and_refuses_float32(device, rng):
    m = Tied(broken=True).to(device).double()
    x = ml.tensor(rng.standard_normal((2, 3)), device=device)
    with pytest.raises(GradcheckError, match="a.weight"):
        check_module_grad(m, lambda x: m(x), [x])
    with pytest.raises(TypeError, match=r"module.double\(\)"):
        check_module_grad(Linear(2, 2), lambda: Linear(2, 2)(ml.tensor(np.ones((1, 2)))))
