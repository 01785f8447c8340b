"""Batches: shifted windows, determinism from the seed, resumable state, classification padding, split."""

from __future__ import annotations

import numpy as np
import pytest

from minilora import backend
from minilora.data import BatchSampler, CharTokenizer, ExampleSampler, eval_windows, pad_examples, train_val_split


def test_windows_are_shifted_by_one_and_deterministic(device):
    tokens = np.arange(100)
    s1, s2 = BatchSampler(tokens, 4, 8, seed=5, device=device), BatchSampler(tokens, 4, 8, seed=5, device=device)
    x, y = s1.sample()
    assert backend.device_of(x) == device and x.shape == (4, 8) and x.dtype == np.int64
    xh, yh = backend.to_host(x), backend.to_host(y)
    np.testing.assert_array_equal(yh, xh + 1)  # tokens are arange: y is x shifted
    x2, _ = s2.sample()
    np.testing.assert_array_equal(backend.to_host(x2), xh)


def test_sampler_state_resumes():
    s = BatchSampler(np.arange(50), 2, 4, seed=1)
    s.sample()
    state = s.state_dict()
    expected = backend.to_host(s.sample()[0])
    t = BatchSampler(np.arange(50), 2, 4, seed=99)
    t.load_state_dict(state)
    np.testing.assert_array_equal(backend.to_host(t.sample()[0]), expected)


def test_too_few_tokens():
    with pytest.raises(ValueError, match="10 tokens are too few for windows of block_size 16"):
        BatchSampler(np.arange(10), 2, 16)


def test_eval_windows_cover_in_order():
    batches = list(eval_windows(np.arange(41), batch_size=3, block_size=5))
    xs = np.concatenate([backend.to_host(x) for x, _ in batches])
    np.testing.assert_array_equal(xs.reshape(-1), np.arange(40))
    assert len(list(eval_windows(np.arange(41), 3, 5, max_batches=1))) == 1


def test_split():
    train, val = train_val_split(np.arange(100), 0.1)
    assert len(train) == 90 and list(val) == list(range(90, 100))
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(np.arange(10), 1.5)


def test_classification_padding(device):
    tok = CharTokenizer.default()
    idx, mask, labels = pad_examples([("ab", 1), ("abcd", 0)], tok, block_size=3, device=device)
    np.testing.assert_array_equal(backend.to_host(mask), [[1, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(backend.to_host(idx)[1], tok.encode("bcd"))  # keeps the end
    np.testing.assert_array_equal(backend.to_host(labels), [1, 0])
    s = ExampleSampler([("ab", 1), ("cd", 0)], tok, batch_size=4, block_size=8, seed=0, device=device)
    assert s.sample()[0].shape == (4, 2)


def test_samplers_iterate_one_epoch_like_a_loader():
    tokens = np.arange(200) % 7
    s = BatchSampler(tokens, batch_size=4, block_size=10, seed=0)
    batches = list(s)
    assert len(s) == len(batches) == 5  # ceil(199 / 40)
    assert all(x.shape == (4, 10) and y.shape == (4, 10) for x, y in batches)
    np.testing.assert_array_equal(batches[0][0][:, 1:], batches[0][1][:, :-1])
    ex = ExampleSampler([("ab", 0), ("abc", 1), ("b", 0)], CharTokenizer.default(), batch_size=2, block_size=8)
    assert len(ex) == 2 and [labels.shape for _, _, labels in ex] == [(2,), (2,)]
