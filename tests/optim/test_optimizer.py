"""The optimizer base: parameter forms and groups, frozen parameters, state_dict round trip."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.optim import SGD, AdamW, param_groups


def _named(device):
    rng = np.random.default_rng(0)
    return [
        ("layer.weight", ml.tensor(rng.standard_normal((3, 2)), device=device, requires_grad=True)),
        ("layer.bias", ml.tensor(rng.standard_normal(3), device=device, requires_grad=True)),
        ("ln.weight", ml.tensor(np.ones(3), device=device, requires_grad=True)),
        ("frozen.weight", ml.tensor(rng.standard_normal((4, 4)), device=device, requires_grad=False)),
    ]


def _fill_grads(named, value=0.1):
    for _, p in named:
        p.grad = p.xp.full(p.shape, value, dtype=p.dtype)


def test_default_groups_no_decay_on_1d_and_skip_frozen(device):
    named = _named(device)
    groups = param_groups(named, weight_decay=0.1)
    assert [g["names"] for g in groups] == [["layer.weight"], ["layer.bias", "ln.weight"]]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    opt = AdamW(groups, lr=1e-3)
    assert [list(g["names"]) for g in opt.param_groups] == [["layer.weight"], ["layer.bias", "ln.weight"]]


def test_state_only_for_trainable_params_with_grads(device):
    named = _named(device)
    opt = AdamW(named, lr=1e-2)  # (name, param) pairs, frozen one included on purpose
    _fill_grads(named)
    named[2][1].grad = None  # a parameter with no gradient this step is skipped
    frozen_before = named[3][1].numpy()
    ln_before = named[2][1].numpy()
    opt.step()
    np.testing.assert_array_equal(named[3][1].numpy(), frozen_before)
    np.testing.assert_array_equal(named[2][1].numpy(), ln_before)
    assert opt.state_size() == 2 * (6 + 3)  # exp_avg and exp_avg_sq of layer.weight and layer.bias only


def test_per_group_lr(device):
    a = ml.tensor(np.zeros(2), device=device, requires_grad=True)
    b = ml.tensor(np.zeros(2), device=device, requires_grad=True)
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    for p in (a, b):
        p.grad = p.xp.ones(2)
    opt.step()
    np.testing.assert_allclose(a.numpy(), [-0.1, -0.1])
    np.testing.assert_allclose(b.numpy(), [-1.0, -1.0])
    assert opt.param_groups[1]["initial_lr"] == 1.0


def test_zero_grad_and_tied_parameter_counted_once(device):
    p = ml.tensor(np.ones(2), device=device, requires_grad=True)
    opt = SGD([p, p], lr=1.0)
    assert len(opt.param_groups[0]["params"]) == 1
    p.grad = p.xp.ones(2)
    opt.step()
    np.testing.assert_allclose(p.numpy(), [0.0, 0.0])  # one update, not two
    opt.zero_grad()
    assert p.grad is None


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="not a Tensor"):
        SGD([np.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="unknown parameter-group option"):
        SGD([{"params": [ml.tensor([1.0], requires_grad=True)], "lrr": 1.0}], lr=0.1)
    with pytest.raises(ValueError, match="no trainable"):
        param_groups([("w", ml.tensor(np.ones((2, 2))))], 0.1)


def test_state_dict_restores_exactly(device):
    named = _named(device)
    opt = AdamW(param_groups(named, 0.1), lr=1e-2)
    _fill_grads(named)
    opt.step()
    saved = opt.state_dict()
    assert all(isinstance(v, (np.ndarray, int)) for s in saved["state"].values() for v in s.values())  # host
    assert saved["state"][0]["step"] == 1
    named2 = [(n, ml.tensor(p.numpy(), device=device, requires_grad=p.requires_grad)) for n, p in named]
    opt2 = AdamW(param_groups(named2, 0.1), lr=5.0)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == 1e-2
    for opt_, nm in ((opt, named), (opt2, named2)):
        _fill_grads(nm, 0.3)
        opt_.step()
    for (_, a), (_, b) in zip(named, named2):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_load_state_dict_refuses_mismatch_and_changes_nothing():
    named = _named("cpu")
    opt = AdamW(param_groups(named, 0.1))
    _fill_grads(named)
    opt.step()
    saved = opt.state_dict()
    saved["state"][0]["exp_avg"] = np.zeros((5, 5))
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"exp_avg.*layer\.weight.*\(5, 5\)"):
        opt.load_state_dict(saved)
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["exp_avg"], before["state"][0]["exp_avg"])
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})


def test_zero_grad_set_to_none_false_fills_zeros():
    w = ml.nn.Parameter(np.ones(3, np.float32))
    opt = SGD([w], lr=0.1)
    w.grad = np.full(3, 2.0, np.float32)
    kept = w.grad
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(w.grad, np.zeros(3))
    np.testing.assert_array_equal(kept, np.full(3, 2.0))  # out of place: an array backward shared is untouched
    opt.zero_grad(set_to_none=True)
    assert w.grad is None
    opt.zero_grad(set_to_none=False)  # no gradient yet: stays None
    assert w.grad is None
