"""Write your own op and check its hand-written gradient by finite differences.

softplus(x) = log(1 + exp(x)), computed stably as max(x, 0) + log1p(exp(-|x|)).
Its derivative is the logistic sigmoid: d softplus / dx = 1 / (1 + exp(-x)).

    python examples/custom_op.py
"""

from __future__ import annotations

from typing import Any

import numpy as np

import minilora as ml
from minilora.autograd import Function
from minilora.gradcheck import GradcheckError, check_grad, register


class Softplus(Function):
    """y = log(1 + exp(x));  g_x = g_y * sigmoid(x)."""

    def forward(self, x: Any) -> Any:
        xp = self.xp  # numpy or cupy: the same code runs on both
        e = xp.exp(-xp.abs(x))  # <= 1: never overflows
        self.save_for_backward(x, e)  # only what backward needs (nothing is kept if no input needs a gradient)
        return xp.maximum(x, 0) + xp.log1p(e)

    def backward(self, g_y: Any) -> tuple[Any]:
        x, e = self.saved
        s = self.xp.where(x >= 0, 1 / (1 + e), e / (1 + e))  # sigmoid(x), reusing exp(-|x|)
        return (g_y * s,)  # one gradient per input


def softplus(x: ml.Tensor) -> ml.Tensor:
    return Softplus.apply(x)


# A registered case joins `minilora gradcheck` (and the test that insists every op has one).
register(Softplus, softplus, (3, 4))


class _BrokenSoftplus(Softplus):
    """The same op with a classic mistake: the derivative of log(1 + exp(x)) taken as exp(x)."""

    def backward(self, g_y: Any) -> tuple[Any]:
        x, _ = self.saved
        return (g_y * self.xp.exp(x),)


def main() -> None:
    ml.manual_seed(0)
    x = ml.tensor(np.array([-30.0, -1.0, 0.0, 2.0, 40.0], dtype=np.float32), requires_grad=True)
    y = softplus(x)
    y.sum().backward()
    print("x            ", x.numpy())
    print("softplus(x)  ", y.numpy())
    print("d/dx (ours)  ", x.grad)

    # Every element of every input, by central differences in float64 (inputs are cast to float64 copies).
    rng = np.random.default_rng(0)
    report = check_grad(lambda t: softplus(t) * t, [rng.standard_normal((4, 5))], names=["x"])
    print(f"check_grad (full):              max abs err {report.max_abs_err:.1e}, max rel err {report.max_rel_err:.1e}")

    # A big input: compare directional derivatives along random unit directions instead.
    report = check_grad(softplus, [rng.standard_normal((256, 256))], mode="random_directions", n_directions=4)
    print(f"check_grad (random_directions): max abs err {report.max_abs_err:.1e}")

    try:
        check_grad(lambda t: _BrokenSoftplus.apply(t), [rng.standard_normal(3)], names=["x"])
    except GradcheckError as err:
        print("the broken backward is caught:", err)


if __name__ == "__main__":
    main()
