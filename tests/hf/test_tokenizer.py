"""GPT-2 byte-level BPE through `tokenizers`: known ids from a hand-built vocabulary, round trips, file formats."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("tokenizers", reason="needs the hf extra: pip install 'minilora[hf]'")

import minilora as ml  # noqa: E402
from minilora.hf import GPT2Tokenizer  # noqa: E402

TEXTS = ["hello the world", " the<|endoftext|>héllo ✓\n\ttabs  and   spaces", "", "日本語 🙂 ¡ÿ"]


def test_known_ids_from_vocab_and_merges(bpe_folder):
    tok = GPT2Tokenizer.from_pretrained(bpe_folder)
    assert tok.vocab_size == 262 and tok.eos_token_id == 261
    ids = tok.encode("hello the")
    assert ids.dtype == np.int64
    # "hello": h e -> he, l l -> ll, he ll -> hell (260), then "o" (byte 111); " the": Ġ t -> Ġt, h e -> he,
    # Ġt he -> Ġthe (258); printable ASCII bytes keep their byte value as id
    assert ids.tolist() == [260, ord("o"), 258]
    assert tok.encode(" t").tolist() == [256]
    assert tok.encode("<|endoftext|>").tolist() == [261]  # special token kept whole
    assert tok.encode("é").tolist() == [0xC3, 0xA9]  # UTF-8 bytes
    assert tok.decode([260, 111, 258]) == "hello the"


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(bpe_folder, text):
    tok = GPT2Tokenizer.from_pretrained(bpe_folder)
    assert tok.decode(tok.encode(text)) == text


def test_tokenizer_json_gives_the_same_ids(bpe_folder, tmp_path):
    tok = GPT2Tokenizer.from_pretrained(bpe_folder)
    tok.save_pretrained(tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "tokenizer.json").read_text())["model"]["type"] == "BPE"
    again = GPT2Tokenizer.from_pretrained(tmp_path / "hf")  # tokenizer.json wins over vocab.json + merges.txt
    assert again == tok
    for text in TEXTS:
        np.testing.assert_array_equal(again.encode(text), tok.encode(text))
    assert GPT2Tokenizer.from_dict(tok.to_dict()) == tok
    tok.save(tmp_path / "t.json")
    assert GPT2Tokenizer.load(tmp_path / "t.json") == tok


def test_decode_accepts_arrays_and_tensors_and_refuses_bad_ids(bpe_folder, device):
    tok = GPT2Tokenizer.from_pretrained(bpe_folder)
    ids = tok.encode("hello the")
    assert tok.decode(ml.tensor(ids, device=device)) == "hello the"
    assert tok.decode(ids[None, :]) == "hello the"
    with pytest.raises(ValueError, match="id 262 is outside the vocabulary"):
        tok.decode([1, 262])


def test_missing_and_broken_files_are_named(bpe_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        GPT2Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json: not a valid tokenizer.json"):
        GPT2Tokenizer.from_pretrained(tmp_path)
    (bpe_folder / "merges.txt").write_text("#version: 0.2\nq z\n")  # merges tokens that are not in the vocabulary
    with pytest.raises(ValueError, match="merges.txt: not a valid BPE vocabulary"):
        GPT2Tokenizer.from_pretrained(bpe_folder)


def test_missing_package_says_how_to_install(monkeypatch, bpe_folder):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # what Python sees when the package is not installed
    with pytest.raises(ImportError, match=r"needs the 'tokenizers' package: pip install 'minilora\[hf\]'"):
        GPT2Tokenizer.from_pretrained(bpe_folder)
