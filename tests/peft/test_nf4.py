"""NF4: level table, nearest-level rounding, nibble packing, error bounds, double quantisation, bytes used."""

from __future__ import annotations

import numpy as np
import pytest

from minilora import backend
from minilora.peft.nf4 import (
    NF4_LEVELS,
    dequantize_nf4,
    dequantize_scales,
    nf4_levels_from_normal,
    nf4_nbytes,
    quantize_nf4,
)

PAPER_LEVELS = [
    -1.0, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1847734, -0.0910500, 0.0,
    0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0,
]  # fmt: skip
LEVELS = np.array(PAPER_LEVELS)
MAX_HALF_GAP = np.max(np.diff(LEVELS)) / 2


def _on(device, a):
    return backend.to_device(a, device)


def _host_codes(q) -> np.ndarray:
    """Unpack the stored bytes on the host with plain NumPy (high nibble first)."""
    packed = backend.to_host(q.codes)
    return np.stack([packed >> 4, packed & 15], axis=1).reshape(-1)


def test_level_table_is_the_papers_and_comes_from_normal_quantiles():
    assert list(NF4_LEVELS) == PAPER_LEVELS
    assert NF4_LEVELS[7] == 0.0 and len(set(NF4_LEVELS)) == 16
    np.testing.assert_allclose(nf4_levels_from_normal(), PAPER_LEVELS, rtol=0, atol=2e-7)


@pytest.mark.parametrize("shape", [(6, 64), (7, 50)])  # 50 * 7 = 350: the last block is padded
def test_codes_are_the_nearest_level_brute_force(device, rng, shape):
    w = rng.standard_normal(shape).astype(np.float32)
    q = quantize_nf4(_on(device, w), block_size=64, double_quant=False)
    n = w.size
    padded = np.zeros(-(-n // 64) * 64, np.float32)
    padded[:n] = w.reshape(-1)
    blocks = padded.reshape(-1, 64)
    absmax = np.abs(blocks).max(axis=1)
    x = blocks / absmax[:, None]
    ref = np.argmin(np.abs(x[..., None] - LEVELS.astype(np.float32)), axis=-1).reshape(-1)
    np.testing.assert_array_equal(_host_codes(q), ref)
    np.testing.assert_array_equal(backend.to_host(q.scales), absmax)
    deq = backend.to_host(dequantize_nf4(q))
    expect = (LEVELS.astype(np.float32)[ref].reshape(-1, 64) * absmax[:, None]).reshape(-1)[:n].reshape(shape)
    np.testing.assert_allclose(deq, expect, rtol=1e-6)


def test_packing_layout_first_value_in_high_nibble(device):
    w = np.array([[1.0, -1.0, 0.0, 0.5], [-0.2, 0.1, 1.0, -0.5]], np.float32)  # absmax 1 in both blocks of 4
    q = quantize_nf4(_on(device, w), block_size=4, double_quant=False)
    # codes: 1.0->15, -1.0->0, 0->7, 0.5->12 (0.4407 is nearer than 0.5626); -0.2->5, 0.1->8, 1.0->15, -0.5->2
    assert q.codes.dtype == np.uint8
    np.testing.assert_array_equal(backend.to_host(q.codes), [0xF0, 0x7C, 0x58, 0xF2])


@pytest.mark.parametrize("double_quant", [False, True])
def test_quantisation_error_bound(device, rng, double_quant):
    w = (rng.standard_normal((40, 70)) * rng.uniform(0.01, 3.0, (40, 1))).astype(np.float32)
    q = quantize_nf4(_on(device, w), block_size=64, double_quant=double_quant)
    deq = backend.to_host(dequantize_nf4(q))
    padded = np.zeros(q.n_blocks * 64, np.float32)
    padded[: w.size] = w.reshape(-1)
    absmax = np.abs(padded.reshape(-1, 64)).max(axis=1)
    s_hat = backend.to_host(dequantize_scales(q))
    # |w - l s_hat| <= |w - l s| + |l| |s - s_hat| <= s * max half-gap + |s - s_hat| (|l| <= 1)
    bound = absmax * MAX_HALF_GAP + np.abs(absmax - s_hat) + 1e-6 * absmax
    err = np.abs(padded - np.pad(deq.reshape(-1), (0, padded.size - w.size))).reshape(-1, 64)
    assert np.all(err <= bound[:, None])
    assert deq.shape == w.shape and deq.dtype == np.float32


def test_double_quantisation_scale_error_is_half_an_int8_step(device, rng):
    w = (rng.standard_normal((64, 600)) * rng.uniform(0.1, 2.0, (64, 1))).astype(np.float32)  # 600 blocks, 3 groups
    q = quantize_nf4(_on(device, w), double_quant=True)
    plain = quantize_nf4(_on(device, w), double_quant=False)
    assert q.scale_codes.dtype == np.int8 and q.scale_scales.shape == (3,) and q.scales is None
    s = backend.to_host(plain.scales)
    s_hat = backend.to_host(dequantize_scales(q))
    centred = np.pad(s - s.mean(), (0, 768 - 600)).reshape(3, 256)
    half_step = np.repeat(np.abs(centred).max(axis=1) / 254, 256)[:600]
    assert np.all(np.abs(s - s_hat) <= half_step * (1 + 1e-5) + 1e-7)
    # int8 steps are uniform, so scales far below their group's spread lose relative precision; for
    # weights of one distribution (a trained layer) the scales are alike and the relative error is small
    alike = _on(device, w / w.std(axis=1, keepdims=True))
    s_ref = backend.to_host(quantize_nf4(alike, double_quant=False).scales)
    s_dq = backend.to_host(dequantize_scales(quantize_nf4(alike, double_quant=True)))
    assert np.max(np.abs(s_dq - s_ref) / s_ref) < 0.005
    # the codes themselves do not depend on how the scales are stored
    np.testing.assert_array_equal(backend.to_host(q.codes), backend.to_host(plain.codes))


def test_bytes_used(device, rng):
    # 4096 x 4096 computed exactly: 2^24 / 2 code bytes + 2^18 int8 scale codes + 2^10 float32 group scales + offset
    assert nf4_nbytes((4096, 4096)) == 8_388_608 + 262_144 + 4 * 1024 + 4 == 8_654_852
    assert 8 * 8_654_852 / 4096**2 == pytest.approx(4.127, abs=1e-3)
    assert nf4_nbytes((4096, 4096), double_quant=False) * 8 / 4096**2 == 4.5
    q = quantize_nf4(_on(device, rng.standard_normal((256, 512)).astype(np.float32)))
    assert q.nbytes == nf4_nbytes((256, 512)) == 65_536 + 2_048 + 8 * 4 + 4
    assert q.bits_per_weight == pytest.approx(8 * 67_620 / 131_072)
    assert q.nbytes / (256 * 512 * 4) < 0.14


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_shape_padding_and_zeros(device, rng, dtype):
    w = rng.standard_normal((3, 5)).astype(dtype)
    w_dev = _on(device, w)
    q = quantize_nf4(w_dev, block_size=64)
    deq = dequantize_nf4(q)
    assert deq.shape == (3, 5) and deq.dtype == dtype and backend.device_of(deq) == backend.device_of(w_dev)
    np.testing.assert_array_equal(backend.to_host(w_dev), w)  # input not mutated
    assert dequantize_nf4(q, dtype=np.float64).dtype == np.float64
    zeros = dequantize_nf4(quantize_nf4(_on(device, np.zeros((2, 64), dtype))))
    assert np.all(backend.to_host(zeros) == 0)
    # an exact level times the absmax comes back exactly (no double quantisation)
    exact = np.array([LEVELS * 2.0], dtype)
    q_exact = quantize_nf4(_on(device, exact), block_size=16, double_quant=False)
    np.testing.assert_array_equal(backend.to_host(dequantize_nf4(q_exact)), exact)


def test_bad_input_is_refused_clearly(device):
    with pytest.raises(ValueError, match=r"quantize_nf4: expected a 2-D weight .* shape \(8,\)"):
        quantize_nf4(_on(device, np.ones(8, np.float32)))
    with pytest.raises(TypeError, match=r"quantize_nf4: expected a floating-point weight, got dtype int64"):
        quantize_nf4(_on(device, np.ones((2, 4), np.int64)))
    with pytest.raises(ValueError, match=r"block_size must be a positive even integer .* got 63"):
        quantize_nf4(_on(device, np.ones((2, 4), np.float32)), block_size=63)
    with pytest.raises(ValueError, match="empty"):
        quantize_nf4(_on(device, np.ones((0, 4), np.float32)))
    with pytest.raises(TypeError, match="expected a NumPy or CuPy array, got list"):
        quantize_nf4([[1.0, 2.0]])
