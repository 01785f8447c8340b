"""The gradient checker: passes right backwards, fails wrong ones loudly, and every op has a registered case."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import autograd, gradcheck
from minilora.autograd import Function
from minilora.cli.gradcheck_cmd import import_all_modules
from minilora.gradcheck import GradcheckError, check_grad


class _WrongSquare(Function):
    """y = x^2 with a deliberately wrong backward (g_x = g_y * x, missing the factor 2). Not registered."""

    def forward(self, x):
        self.save_for_backward(x)
        return x * x

    def backward(self, g_y):
        (x,) = self.saved
        return (g_y * x,)


@pytest.mark.parametrize("mode", ["full", "random_directions"])
def test_passes_correct_ops(device, rng, mode):
    x = ml.tensor(rng.standard_normal((3, 4)), device=device, requires_grad=True)
    w = ml.tensor(rng.standard_normal((4, 2)), device=device, requires_grad=True)
    report = check_grad(lambda a, b: (a @ b).tanh().sum(axis=0), [x, w], mode=mode, names=["x", "w"])
    assert set(report.per_input) == {"x", "w"} and report.max_abs_err < 1e-6


def test_fails_a_wrong_backward_naming_input_element_and_values(device):
    x = ml.tensor(np.array([[1.0, 2.0], [3.0, -1.5]]), device=device, requires_grad=True)
    with pytest.raises(GradcheckError) as info:
        check_grad(lambda t: _WrongSquare.apply(t), [x], names=["x"])
    msg = str(info.value)
    assert "gradient mismatch for x (shape (2, 2)) at element (0, 0)" in msg
    for part in ("analytic", "numeric", "abs err", "rel err"):
        assert part in msg


def test_fails_a_wrong_backward_in_random_directions_mode(device, rng):
    x = ml.tensor(rng.standard_normal((20, 10)), device=device, requires_grad=True)
    msg = r"gradient mismatch for input 0 \(shape \(20, 10\)\) at random direction 0"
    with pytest.raises(GradcheckError, match=msg):
        check_grad(lambda t: _WrongSquare.apply(t), [x], mode="random_directions")


def test_exact_zero_gradients_pass(device):
    x = ml.tensor(-np.linspace(0.5, 2.0, 6), device=device, requires_grad=True)  # relu is flat here
    report = check_grad(lambda t: t.relu(), [x])
    assert report.max_abs_err == 0.0 and report.max_rel_err == 0.0
    y = ml.tensor(np.ones(3), device=device, requires_grad=True)
    check_grad(lambda a, b: a * 2.0, [y, ml.tensor(np.ones(3), device=device, requires_grad=True)])  # b unused


def test_integer_inputs_pass_through_and_inputs_are_not_mutated(device, rng):
    w = rng.standard_normal((5, 3))
    tw = ml.tensor(w, device=device, requires_grad=True)
    idx = ml.tensor(np.array([4, 0, 4]), device=device)
    check_grad(lambda a, i: a[i], [tw, idx])
    np.testing.assert_array_equal(tw.numpy(), w)
    assert tw.grad is None  # the checker works on float64 copies


def test_bad_arguments(device):
    x = ml.tensor(np.ones(2), device=device)
    with pytest.raises(ValueError, match="no input requires grad"):
        check_grad(lambda t: t * 2.0, [x])
    with pytest.raises(ValueError, match="mode must be 'full' or 'random_directions'"):
        check_grad(lambda t: t * 2.0, [x], mode="fast")


def _minilora_functions() -> dict[str, type]:
    """Every Function class defined inside the minilora package (test-local helpers are excluded)."""
    import_all_modules()
    return {name: cls for name, cls in autograd.FUNCTIONS.items() if cls.__module__.startswith("minilora.")}


def test_every_function_has_a_registered_case():
    functions = _minilora_functions()
    assert len(functions) >= 20
    covered = {case.op for case in gradcheck.CASES}
    missing = sorted(name for name, cls in functions.items() if cls not in covered)
    assert not missing, f"Functions without a gradcheck.register(...) case: {missing}"


def test_command_line_runs_and_prints_every_case(capsys):
    from minilora.cli import main

    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    import_all_modules()
    for case in gradcheck.CASES:
        assert case.name in out
    assert " 0 failed" in out and "FAIL" not in out


def test_command_line_single_op_and_unknown_op(capsys):
    from minilora.cli import main

    assert main(["gradcheck", "--op", "Exp"]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out
    assert main(["gradcheck", "--op", "NoSuchOp"]) == 2
    assert "no gradcheck case named" in capsys.readouterr().err


def test_registered_ops_mutate_neither_inputs_nor_incoming_gradient():
    import_all_modules()
    offenders = []
    for case in gradcheck.CASES:
        xs = gradcheck.case_inputs(case)
        before = [x.numpy() for x in xs]
        y = case.fn(*xs)
        if not y.requires_grad:
            continue
        g = np.random.default_rng(1).standard_normal(y.shape)
        g_before = g.copy()
        y.backward(ml.tensor(g))
        if not np.array_equal(g, g_before):
            offenders.append(f"{case.name}: changed the incoming gradient")
        offenders += [f"{case.name}: changed input {i}" for i, (x, b) in enumerate(zip(xs, before))
                      if not np.array_equal(x.numpy(), b, equal_nan=True)]
    assert not offenders, offenders
