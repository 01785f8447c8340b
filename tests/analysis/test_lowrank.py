"""Energy shares and subspace overlaps on matrices whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from minilora import backend
from minilora.analysis.lowrank import (
    analyze_updates,
    energy_shares,
    left_subspace,
    random_energy_shares,
    random_overlap,
    singular_values,
    subspace_overlap,
    verdict,
)


def test_rank_two_update_has_all_its_energy_in_two_directions(device, rng):
    delta = rng.standard_normal((40, 2)) @ rng.standard_normal((2, 30))
    s = singular_values(backend.to_device(delta, device))
    shares = energy_shares(s)
    assert shares[1] < 0.999
    for k in (2, 4, 8, 16):
        assert shares[k] == pytest.approx(1.0, abs=1e-12)


def test_energy_shares_by_hand():
    s = np.array([3.0, 2.0, 1.0])  # energies 9, 4, 1 of 14
    assert energy_shares(s, (1, 2, 3, 8)) == pytest.approx({1: 9 / 14, 2: 13 / 14, 3: 1.0, 8: 1.0})
    assert energy_shares(np.zeros(3), (1,)) == {1: 0.0}
    with pytest.raises(ValueError, match="k must be"):
        energy_shares(s, (0,))


def test_random_matrix_is_spread_out():
    shares = random_energy_shares((128, 384), (8,))
    assert shares[8] < 0.2


def test_overlap_of_known_subspaces():
    eye = np.eye(6)
    assert subspace_overlap(eye[:, :2], eye[:, :2]) == pytest.approx(1.0)
    assert subspace_overlap(eye[:, :2], eye[:, 2:4]) == pytest.approx(0.0)
    assert subspace_overlap(eye[:, :4], eye[:, 2:4]) == pytest.approx(1.0)  # contained: / min(k, r)
    half = np.stack([eye[:, 0], (eye[:, 1] + eye[:, 2]) / np.sqrt(2)], axis=1)
    assert subspace_overlap(eye[:, :2], half) == pytest.approx(0.75)  # (1 + 1/2) / 2
    with pytest.raises(ValueError, match="same d"):
        subspace_overlap(eye[:, :2], np.eye(5)[:, :2])


def test_left_subspace_and_random_baseline(rng):
    u = np.linalg.qr(rng.standard_normal((20, 3)))[0]
    delta = u @ np.diag([5.0, 3.0, 1.0]) @ rng.standard_normal((3, 10))
    basis = left_subspace(delta, 8)
    assert basis.shape == (20, 3)  # only the rank's worth of directions
    assert subspace_overlap(basis, u) == pytest.approx(1.0)
    assert random_overlap(100, 8, 8) == pytest.approx(8 * 8 / 100 / 8)


def test_analyze_updates_finds_lora_inside_a_low_rank_update(rng):
    w0 = rng.standard_normal((32, 16))
    u = np.linalg.qr(rng.standard_normal((32, 2)))[0]
    full_delta = u @ rng.standard_normal((2, 16))
    lora_delta = u[:, :1] @ rng.standard_normal((1, 16))  # inside the full update's column space
    reports = analyze_updates({"h.0.attn.c_attn.weight": w0, "bias": np.zeros(3)},
                              {"h.0.attn.c_attn.weight": w0 + full_delta, "bias": np.ones(3)},
                              {"h.0.attn.c_attn.weight": lora_delta})
    (rep,) = reports  # 1-D parameters are not analysed
    assert rep.shares[2] == pytest.approx(1.0) and rep.rank90 <= 2
    assert rep.lora_rank == 1 and rep.overlap[2] == pytest.approx(1.0)
    assert rep.relative_change == pytest.approx(np.linalg.norm(full_delta) / np.linalg.norm(w0))
    text = verdict(reports, 2)
    assert "100%" in text and "holds here" in text and "LoRA" in text


def test_verdict_on_noise(rng):
    w0 = np.zeros((64, 64))
    reports = analyze_updates({"w": w0}, {"w": rng.standard_normal((64, 64))})
    assert "does not hold" in verdict(reports, 8)
    assert verdict([], 8).startswith("no weight matrix changed")


def test_float32_low_rank_product_keeps_its_rank(rng):
    b = rng.standard_normal((384, 8)).astype(np.float32)
    a = rng.standard_normal((8, 128)).astype(np.float32)
    assert left_subspace(2.0 * (b @ a), 128).shape == (384, 8)  # rounding noise is not counted as rank
