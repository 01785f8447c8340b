"""Generation written once (minilora.nn.generation): top_k off, top_p, eos, do_sample, bad options."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import GPT, GPTConfig
from minilora.nn.generation import next_tokens

TINY = {"vocab_size": 11, "block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 8}


def tiny(device):
    ml.manual_seed(0)
    return GPT(GPTConfig(**TINY)).to(device)


def prompt(device):
    return backend.to_device(np.array([[1, 2, 3], [4, 5, 6]]), device)


def test_top_k_zero_is_off_and_top_p_one_is_off(device):
    m = tiny(device)
    base = backend.to_host(m.generate(prompt(device), 4, seed=3))
    for kw in ({"top_k": 0}, {"top_p": 1.0}, {"top_k": 0, "top_p": 1.0}):
        np.testing.assert_array_equal(backend.to_host(m.generate(prompt(device), 4, seed=3, **kw)), base)


def test_tiny_top_p_or_top_k_one_is_greedy_and_do_sample_false_is_greedy(device):
    m = tiny(device)
    greedy = backend.to_host(m.generate(prompt(device), 5, temperature=0))
    for kw in ({"top_p": 1e-6}, {"top_k": 1}, {"do_sample": False}, {"do_sample": False, "temperature": 5.0}):
        np.testing.assert_array_equal(backend.to_host(m.generate(prompt(device), 5, seed=1, **kw)), greedy)


def test_top_p_samples_only_the_nucleus(device):
    xp = backend.module_for(device)
    probs = np.array([0.5, 0.3, 0.15, 0.05])  # top_p 0.7: {0, 1}; 0.85: {0, 1, 2} (0.8 < 0.85)
    logits = backend.to_device(np.log(np.tile(probs, (2000, 1))), device)
    rng = xp.random.default_rng(0)
    for top_p, support in ((0.7, {0, 1}), (0.85, {0, 1, 2}), (0.5, {0}), (0.500001, {0, 1})):
        drawn = set(backend.to_host(next_tokens(xp, logits, 1.0, None, top_p, rng)).ravel().tolist())
        assert drawn == support, top_p


def _eos_reference(free, T, eos, pad):
    """Greedy rows up to and including their first eos, then pad; cut where every row has finished."""
    rows, ends = [], []
    for row in free:
        hit = np.flatnonzero(row[T:] == eos)
        end = T + hit[0] + 1 if hit.size else len(row)
        rows.append(list(row[:end]) + [pad] * (len(row) - end))
        ends.append(end)
    return np.array(rows)[:, : max(ends)]


@pytest.mark.parametrize("pick", [3, 4])
def test_eos_stops_rows_and_pads_them(device, pick):
    m = tiny(device)
    free = backend.to_host(m.generate(prompt(device), 6, temperature=0))
    eos = int(free[0, pick])
    for use_cache in (True, False):
        out = m.generate(prompt(device), 6, temperature=0, eos_token_id=eos, pad_token_id=0, use_cache=use_cache)
        np.testing.assert_array_equal(backend.to_host(out), _eos_reference(free, 3, eos, 0))


def test_all_rows_finished_stops_early(device):
    m = tiny(device)
    x = prompt(device)[:1]
    first = int(backend.to_host(m.generate(x, 1, temperature=0))[0, -1])
    assert m.generate(x, 5, temperature=0, eos_token_id=first).shape == (1, 4)


@pytest.mark.parametrize("kw, field", [
    ({"temperature": float("nan")}, "temperature"), ({"temperature": float("inf")}, "temperature"),
    ({"temperature": -1.0}, "temperature"), ({"top_k": -1}, "top_k"), ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"), ({"do_sample": True, "temperature": 0}, "do_sample"),
    ({"eos_token_id": -2}, "eos_token_id"), ({"pad_token_id": 99, "eos_token_id": 1}, "pad_token_id"),
])
def test_bad_options_are_one_line_errors(kw, field):
    m = tiny("cpu")
    with pytest.raises(ValueError, match=field) as e:
        m.generate(np.array([[1, 2]]), 2, **kw)
    assert "\n" not in str(e.value)


def test_mask_positions_are_transformers_cumsum_minus_one():
    from minilora.nn import mask_positions

    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(mask_positions(mask), [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 1, 2, 0, 0]])
    np.testing.assert_array_equal(mask_positions(mask[:1], n_prompt=2), [[0, 1, 0, 0, 2, 3, 4]])


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_left_padded_row_generates_what_it_would_alone(device, rng, family, use_cache):
    """generate takes positions from the padding mask (as transformers' generate): the pads shift nothing.
    GPT-2's learned position table makes this fail with plain positions 0, 1, ... on the padded row."""
    from minilora.models import get_family

    fam = get_family(family)
    ml.manual_seed(1)
    m = fam.build(fam.sized_config(vocab_size=11, n_layer=1, n_head=2, n_embd=8, block_size=16)).to(device)
    ids = rng.integers(1, 11, (2, 6))
    ids[0, :3] = 0
    mask = np.ones_like(ids)
    mask[0, :3] = 0
    out = backend.to_host(m.generate(backend.to_device(ids, device), 6, do_sample=False, use_cache=use_cache,
                                     attention_mask=backend.to_device(mask, device)))
    alone = backend.to_host(m.generate(backend.to_device(ids[:1, 3:], device), 6, do_sample=False))
    np.testing.assert_array_equal(out[0, 3:], alone[0])
    np.testing.assert_array_equal(out[1], backend.to_host(m.generate(backend.to_device(ids[1:], device), 6,
                                                                     do_sample=False))[0])


def test_position_ids_shift_gpt2_positions_and_bad_ones_are_one_line(device, rng):
    m = tiny(device)
    ids = backend.to_device(rng.integers(0, 11, (1, 4)), device)
    plain, _ = m(ids)
    same, _ = m(ids, position_ids=backend.to_device(np.arange(4), device))
    shifted, _ = m(ids, position_ids=backend.to_device(np.arange(2, 6)[None], device))
    np.testing.assert_array_equal(backend.to_host(same.data), backend.to_host(plain.data))
    assert not np.allclose(backend.to_host(shifted.data), backend.to_host(plain.data))
    with pytest.raises(ValueError, match=r"position_ids must be \(1, 4\) or \(4,\).*got \(3,\)"):
        m(ids, position_ids=backend.to_device(np.arange(3), device))
    with pytest.raises(ValueError, match=r"position_ids reach 8, outside \[0, block_size 8\)"):
        m(ids, position_ids=backend.to_device(np.arange(5, 9), device))
