"""CharTokenizer: round trip, the shared default vocabulary, save/load, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.data import CharTokenizer


def test_round_trip_default_vocabulary():
    tok = CharTokenizer.default()
    text = "Hello, world!\n12+34=46 ~|"
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert tok.decode(ids) == text
    assert tok.decode(ids.tolist()) == text
    assert tok.vocab_size == 96


def test_decode_device_arrays_and_tensors(device):
    tok = CharTokenizer.default()
    ids = ml.tensor(tok.encode("abc"), device=device)
    assert tok.decode(ids) == "abc"
    assert tok.decode(ids.data) == "abc"


def test_from_text_keeps_default_when_it_fits():
    assert CharTokenizer.from_text("plain ascii") == CharTokenizer.default()
    tok = CharTokenizer.from_text("héllo")
    assert tok.chars == sorted(set("héllo"))
    assert tok.decode(tok.encode("olé")) == "olé"


def test_save_load(tmp_path):
    tok = CharTokenizer.from_text("ünïcode text")
    tok.save(tmp_path / "vocab.json")
    assert CharTokenizer.load(tmp_path / "vocab.json") == tok


def test_errors_name_the_problem(tmp_path):
    tok = CharTokenizer.default()
    with pytest.raises(ValueError, match=r"character 'é' at position 1"):
        tok.encode("hé")
    with pytest.raises(ValueError, match="id 200 is outside"):
        tok.decode([1, 200])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a JSON vocabulary"):
        CharTokenizer.load(bad)
    bad.write_text('{"type": "bpe"}')
    with pytest.raises(ValueError, match="bad.json"):
        CharTokenizer.load(bad)
