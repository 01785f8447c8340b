"""minilora.ops.rope: rope_cos_sin and F.rotary_embedding against NumPy references written pair by pair."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import minilora as ml
from minilora import F, backend
from minilora.gradcheck import check_grad
from minilora.ops.rope import rope_cos_sin, rope_inv_freq

TORCH = np.load(pathlib.Path(__file__).parent / "fixtures" / "rope_gqa_torch.npz")  # benchmarks/make_rope_gqa.py


def rope_ref(x, positions, theta=10000.0):
    # each pair (x[i], x[i + d/2]) rotated by pos * theta^(-2i/d), written out as a 2-D rotation
    d = x.shape[-1]
    y = np.empty_like(x)
    for t, pos in enumerate(positions):
        for i in range(d // 2):
            a = pos * theta ** (-2.0 * i / d)
            x1, x2 = x[..., t, i], x[..., t, i + d // 2]
            y[..., t, i] = x1 * np.cos(a) - x2 * np.sin(a)
            y[..., t, i + d // 2] = x2 * np.cos(a) + x1 * np.sin(a)
    return y


def angles(device, positions, hs, dtype=np.float64, theta=10000.0):
    xp = backend.module_for(device)
    return rope_cos_sin(xp, backend.to_device(np.asarray(positions), device), hs, theta, dtype)


@pytest.mark.parametrize("offset", [0, 7])
def test_forward_matches_pairwise_rotation_and_grad(device, rng, offset):
    x = rng.standard_normal((2, 3, 4, 6))
    pos = np.arange(offset, offset + 4)
    tx = ml.tensor(x, device=device, requires_grad=True)
    cos, sin = angles(device, pos, 6)
    y = F.rotary_embedding(tx, cos, sin)
    np.testing.assert_allclose(y.numpy(), rope_ref(x, pos), rtol=1e-12, atol=1e-12)
    check_grad(lambda a: F.rotary_embedding(a, cos, sin), [tx])
    np.testing.assert_array_equal(tx.numpy(), x)  # the input is not modified


def test_offset_equals_the_tail_of_a_longer_sequence(device, rng):
    # what a KV cache relies on: positions [3, 5) of a 5-token sequence rotate the same way alone
    x = rng.standard_normal((1, 2, 5, 4))
    full = F.rotary_embedding(ml.tensor(x, device=device), *angles(device, np.arange(5), 4)).numpy()
    tail = F.rotary_embedding(ml.tensor(x[:, :, 3:], device=device), *angles(device, np.arange(3, 5), 4)).numpy()
    np.testing.assert_allclose(tail, full[:, :, 3:], rtol=1e-13)


def test_per_row_positions(device, rng):
    x = rng.standard_normal((2, 2, 3, 4))
    pos = np.array([[0, 1, 2], [4, 5, 6]])  # (B, T)
    cos, sin = angles(device, pos, 4)
    assert cos.shape == (2, 3, 4)
    tx = ml.tensor(x, device=device, requires_grad=True)
    y = F.rotary_embedding(tx, cos, sin).numpy()
    for b in range(2):
        np.testing.assert_allclose(y[b], rope_ref(x[b], pos[b]), rtol=1e-12, atol=1e-12)
    check_grad(lambda a: F.rotary_embedding(a, cos, sin), [tx])


def test_rotation_keeps_norms_and_relative_scores(device, rng):
    # the point of RoPE: q_m . k_n depends only on m - n
    q, k = rng.standard_normal((1, 1, 1, 8)), rng.standard_normal((1, 1, 1, 8))
    def rot(a, p):
        return F.rotary_embedding(ml.tensor(a, device=device), *angles(device, [p], 8)).numpy()
    np.testing.assert_allclose(np.linalg.norm(rot(q, 9)), np.linalg.norm(q), rtol=1e-13)
    s1 = (rot(q, 5) * rot(k, 2)).sum()
    s2 = (rot(q, 13) * rot(k, 10)).sum()
    np.testing.assert_allclose(s1, s2, rtol=1e-12)


def test_float32_angles_are_huggingfaces():
    # transformers computes inv_freq and pos * inv_freq in float32 (test_against_transformers checks the bits)
    cos, sin = rope_cos_sin(np, np.arange(4096), 64, 10000.0, np.float32)
    assert cos.dtype == np.float32 and cos.shape == (4096, 64)
    exact = np.cos(np.arange(4096)[:, None] * 10000.0 ** (-np.arange(0, 64, 2) / 64))
    err = np.abs(cos[:, :32] - exact).max()
    assert 1e-6 < err < 2e-3  # float32 angles: large positions carry the float32 rounding of pos * inv_freq
    c64, _ = rope_cos_sin(np, np.arange(4096), 64, 10000.0, np.float64)
    np.testing.assert_allclose(c64[:, :32], exact, atol=1e-9)  # a float64 model gets float64 angles


def test_against_transformers(device):
    # LlamaRotaryEmbedding's float32 numbers (torch 2.13, transformers 5.24) for head_dim 16, theta 1e4
    xp = backend.module_for(device)
    np.testing.assert_array_equal(backend.to_host(rope_inv_freq(xp, 16, 10000.0)), TORCH["rope16_inv_freq"])
    cos, sin = rope_cos_sin(xp, backend.to_device(TORCH["rope16_positions"], device), 16, 10000.0, np.float32)
    for mine, theirs in ((cos, TORCH["rope16_cos"]), (sin, TORCH["rope16_sin"])):
        assert np.abs(backend.to_host(mine) - theirs).max() <= 6e-8  # one float32 ulp: torch's cos is not exact


def test_dtype_and_frozen_input(device, rng):
    x = ml.tensor(rng.standard_normal((1, 2, 3, 4)).astype(np.float32), device=device, requires_grad=True)
    cos, sin = angles(device, np.arange(3), 4, np.float32)
    y = F.rotary_embedding(x, cos, sin)
    assert y.dtype == np.float32
    y.backward(ml.tensor(np.ones(y.shape, np.float32), device=device))
    assert x.grad.dtype == np.float32
    frozen = F.rotary_embedding(x.detach(), cos, sin)
    assert frozen._ctx is None


def test_errors(device):
    xp = backend.module_for(device)
    with pytest.raises(ValueError, match=r"rope_cos_sin: head_dim must be a positive even number, got 5"):
        rope_cos_sin(xp, xp.arange(3), 5)
    x = ml.tensor(np.ones((1, 2, 3, 5)), device=device)
    cos, sin = angles(device, np.arange(3), 4)
    with pytest.raises(ValueError, match=r"rotary_embedding: x must be \(B, nh, T, hs\) with an even hs, "
                       r"got shape \(1, 2, 3, 5\)"):
        F.rotary_embedding(x, cos, sin)
    x = ml.tensor(np.ones((1, 2, 4, 4)), device=device)
    with pytest.raises(ValueError, match=r"rotary_embedding: cos of shape \(3, 4\) does not fit x"):
        F.rotary_embedding(x, cos, sin)
    c32, s32 = angles(device, np.arange(4), 4, np.float32)
    with pytest.raises(TypeError, match="rotary_embedding: cos has dtype float32, x has float64"):
        F.rotary_embedding(x, c32, s32)
