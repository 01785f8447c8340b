"""nn/attention.py's hooks (padding mask, prefix_kv, KV cache) through GPT-2's CausalSelfAttention (nn/gpt.py).

NumPy reference, gradchecks (plain, padding mask, prefix_kv), causality, padding, KV cache.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import CausalSelfAttention, KVCache
from minilora.nn.gradcheck import check_module_grad

C, NH, HS = 4, 2, 2


def _t(a, device, requires_grad=False):
    return ml.tensor(a, device=device, requires_grad=requires_grad)


def _attn(device):
    ml.manual_seed(1)
    return CausalSelfAttention(C, NH).to(device).double()


def reference(attn, x, mask=None, prefix=None):
    """Plain NumPy multi-head causal attention, written independently of the fused op."""
    w_attn, b_attn = attn.c_attn.weight.numpy(), attn.c_attn.bias.numpy()
    w_proj, b_proj = attn.c_proj.weight.numpy(), attn.c_proj.bias.numpy()
    B, T, _ = x.shape
    q, k, v = np.split(x @ w_attn.T + b_attn, 3, axis=-1)
    q, k, v = (a.reshape(B, T, NH, HS).transpose(0, 2, 1, 3) for a in (q, k, v))
    P = 0
    if prefix is not None:
        kp, vp = (np.broadcast_to(p, (B,) + p.shape[1:]) for p in prefix)
        P = kp.shape[2]
        k, v = np.concatenate([kp, k], 2), np.concatenate([vp, v], 2)
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(HS)
    allowed = np.arange(P + T)[None, :] <= np.arange(T)[:, None] + P
    allowed = np.broadcast_to(allowed, (B, 1, T, P + T)).copy()
    if mask is not None:
        keys = np.concatenate([np.ones((B, P), bool), mask.astype(bool)], 1)
        allowed &= keys[:, None, None, :] | (np.arange(P + T)[None, :] == np.arange(T)[:, None] + P)
    s = np.where(allowed, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    y = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
    return y @ w_proj.T + b_proj


MASK = np.array([[1, 1, 1, 0], [0, 1, 1, 1]])  # right padding, left padding


@pytest.mark.parametrize("case", ["plain", "mask", "prefix", "mask+prefix"])
def test_forward_matches_reference_and_gradcheck(device, rng, case):
    attn = _attn(device)
    x = rng.standard_normal((2, 4, C))
    mask = MASK if "mask" in case else None
    prefix = (rng.standard_normal((1, NH, 3, HS)), rng.standard_normal((1, NH, 3, HS))) if "prefix" in case else None
    dmask = None if mask is None else backend.to_device(mask, device)
    dprefix = None if prefix is None else tuple(_t(p, device, True) for p in prefix)
    y = attn(_t(x, device), attention_mask=dmask, prefix_kv=dprefix)
    np.testing.assert_allclose(y.numpy(), reference(attn, x, mask, prefix), rtol=1e-10, atol=1e-12)

    extra = list(dprefix) if dprefix else []

    def fn(x, *pkv):
        return attn(x, attention_mask=dmask, prefix_kv=tuple(pkv) if pkv else None)

    check_module_grad(attn, fn, [_t(x, device, True), *extra], full_max=16)


def test_causality(device, rng):
    attn = _attn(device)
    x = rng.standard_normal((1, 5, C))
    base = attn(_t(x, device)).numpy()
    for t in range(5):
        x2 = x.copy()
        x2[:, t] += 1.0
        out = attn(_t(x2, device)).numpy()
        np.testing.assert_array_equal(out[:, :t], base[:, :t])
        assert not np.allclose(out[:, t], base[:, t])


def test_padded_positions_change_nothing_else(device, rng):
    attn = _attn(device)
    x = rng.standard_normal((2, 4, C))
    mask = backend.to_device(MASK, device)
    base = attn(_t(x, device), attention_mask=mask).numpy()
    x2 = x.copy()
    x2[MASK == 0] = 100.0
    out = attn(_t(x2, device), attention_mask=mask).numpy()
    real = MASK == 1
    np.testing.assert_allclose(out[real], base[real], rtol=1e-12, atol=1e-12)
    assert np.isfinite(out).all()
    # a right-padded row equals the same row without its padding
    short = attn(_t(x[:1, :3], device)).numpy()
    np.testing.assert_allclose(base[0, :3], short[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("with_prefix", [False, True])
def test_kv_cache_matches_full_forward(device, rng, with_prefix):
    attn = _attn(device)
    x = rng.standard_normal((2, 5, C))
    prefix = tuple(_t(rng.standard_normal((2, NH, 2, HS)), device) for _ in range(2)) if with_prefix else None
    mask = np.array([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    full = attn(_t(x, device), attention_mask=backend.to_device(mask, device), prefix_kv=prefix).numpy()
    cache = KVCache(n_layer=1, max_len=8)
    with ml.no_grad():
        outs = [attn(_t(x[:, :2], device), attention_mask=backend.to_device(mask[:, :2], device),
                     prefix_kv=prefix, kv_cache=cache[0]).numpy()]
        for t in range(2, 5):
            outs.append(attn(_t(x[:, t : t + 1], device), attention_mask=backend.to_device(mask[:, : t + 1], device),
                             prefix_kv=prefix, kv_cache=cache[0]).numpy())
    assert cache.length == 5
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, rtol=1e-12, atol=1e-12)


def test_cache_refuses_gradients_and_overflow(device, rng):
    attn = CausalSelfAttention(C, NH).to(device)
    x = _t(rng.standard_normal((1, 3, C)).astype(np.float32), device)
    with pytest.raises(RuntimeError, match="no_grad"):
        attn(x, kv_cache=KVCache(1, 8)[0])
    with ml.no_grad(), pytest.raises(ValueError, match="exceed the cache size 2"):
        attn(x, kv_cache=KVCache(1, 2)[0])


def test_bad_shapes_are_named(device, rng):
    attn = CausalSelfAttention(C, NH).to(device)
    x = _t(rng.standard_normal((2, 3, C)).astype(np.float32), device)
    bad = _t(np.zeros((1, 3, 2, HS), dtype=np.float32), device)
    with pytest.raises(ValueError, match=r"n_head=2, P, head_size=2\), got \(1, 3, 2, 2\)"):
        attn(x, prefix_kv=(bad, bad))
    with pytest.raises(ValueError, match=r"attention_mask must be \(B, T_total\) = \(2, 3\)"):
        attn(x, attention_mask=backend.to_device(np.ones((2, 4)), device))
    with pytest.raises(ValueError, match="not divisible"):
        CausalSelfAttention(5, 2)
