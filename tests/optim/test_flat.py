"""Flat parameter-group buffers (minilora.optim.flat): the same bits as the per-parameter update, views that
stay attached, state_dict and exact resume, flat_grads, and rebuilding after someone replaces an array."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import parallel
from minilora.optim import Adam, AdamW
from minilora.optim.flat import FlatGroup

SHAPES = [(5, 7), (7,), (3, 2, 4), (1,)]


def _params(device, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [ml.tensor(rng.standard_normal(s).astype(dtype), device=device, requires_grad=True) for s in SHAPES]


def _grads(step, device, dtype=np.float32):
    rng = np.random.default_rng(100 + step)
    return [ml.tensor(rng.standard_normal(s).astype(dtype), device=device).data for s in SHAPES]


def _train(opt, params, device, steps, start=0, gather=False):
    for t in range(start, start + steps):
        for p, g in zip(params, _grads(t, device)):
            p.grad = g
        if gather:
            opt.flat_grads(0)
        opt.step()


@pytest.mark.parametrize("cls", [Adam, AdamW])
@pytest.mark.parametrize("gather", [False, True])
def test_flat_update_equals_per_parameter_update(device, monkeypatch, cls, gather):
    monkeypatch.setattr(parallel, "CHUNK", 8)  # ranges that cut through parameters
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SIZE", 1)
    monkeypatch.setenv(parallel.ENV_VAR, "2")
    flat_p, ref_p = _params(device), _params(device)
    flat = cls(flat_p, lr=0.01, weight_decay=0.1)
    _train(flat, flat_p, device, 3, gather=gather)
    monkeypatch.setattr(FlatGroup, "can_flatten", staticmethod(lambda params: False))
    ref = cls(ref_p, lr=0.01, weight_decay=0.1)
    _train(ref, ref_p, device, 3)
    assert 0 not in ref._flat and 0 in flat._flat
    for a, b in zip(flat_p, ref_p):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(flat.state_dict()["state"].values(), ref.state_dict()["state"].values()):
        assert a["step"] == b["step"] == 3
        np.testing.assert_array_equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_params_and_moments_are_views_of_one_buffer(device):
    params, twins = _params(device), _params(device)
    opt, twin = AdamW(params, lr=0.01), AdamW(twins, lr=0.01)
    _train(opt, params, device, 1)
    _train(twin, twins, device, 1)
    flat = opt._flat[0]
    assert flat.size == sum(int(np.prod(s)) for s in SHAPES)
    assert all(p.data is v for p, v in zip(params, flat.views))
    assert all(opt.state[id(p)]["exp_avg"].shape == p.shape for p in params)
    if device == "cpu":
        assert all(np.shares_memory(p.data, flat.data) for p in params)
    for p, q, g in zip(params, twins, _grads(1, device)):
        p.grad, q.grad = g, g * 0.0
    grads = opt.flat_grads(0)
    assert grads.shape == (flat.size,) and all(p.grad is v for p, v in zip(params, flat.grad_views))
    grads *= 0.0  # in place, as an all-reduce would: step() must see it
    opt.step()
    twin.step()
    for p, q in zip(params, twins):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_state_dict_round_trip_and_exact_resume(device):
    params = _params(device)
    opt = AdamW(params, lr=0.01)
    _train(opt, params, device, 2)
    saved_p = [p.numpy().copy() for p in params]
    saved = opt.state_dict()
    _train(opt, params, device, 2, start=2)
    final = [p.numpy().copy() for p in params]
    # resume into a new model and optimizer: the same two steps give the same bits
    params2 = [ml.tensor(a, device=device, requires_grad=True) for a in saved_p]
    opt2 = AdamW(params2, lr=0.01)
    opt2.load_state_dict(saved)
    _train(opt2, params2, device, 2, start=2)
    for a, b in zip(final, params2):
        np.testing.assert_array_equal(a, b.numpy())
    # and loading into the running optimizer replaces its moments: it rebuilds its buffers from them
    opt.load_state_dict(saved)
    for p, a in zip(params, saved_p):
        p.data = ml.tensor(a, device=device).data  # replaced: detached from the flat buffer
    _train(opt, params, device, 2, start=2)
    for a, b in zip(final, params):
        np.testing.assert_array_equal(a, b.numpy())


def test_a_parameter_without_gradient_falls_back(device):
    params = _params(device)
    opt = Adam(params, lr=0.01)
    _train(opt, params, device, 1)
    for p, g in zip(params, _grads(1, device)):
        p.grad = g
    params[1].grad = None
    opt.step()
    assert opt.state[id(params[1])]["step"] == 1 and opt.state[id(params[0])]["step"] == 2
    with pytest.raises(ValueError, match="flat_grads: group 0"):
        opt.flat_grads(0)
    _train(opt, params, device, 1, start=2)  # step counts differ now: per parameter, still right
    assert [opt.state[id(p)]["step"] for p in params] == [3, 2, 3, 3]
