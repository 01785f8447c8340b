"""GPT-2 tokenization (byte-level BPE) through the ``tokenizers`` package, with CharTokenizer's interface.

GPT-2 maps text to UTF-8 bytes, shows each byte as a printable character (the
space becomes "Ġ"), splits the text into words with a regular expression, and
merges byte pairs by the ranks in merges.txt. The ids come from vocab.json
(50,257 entries for GPT-2, the last being ``<|endoftext|>``). A Hugging Face
folder holds the same thing either as one tokenizer.json or as vocab.json +
merges.txt; both are read here. Decoding undoes the byte mapping exactly, so
``decode(encode(text)) == text`` for any text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from minilora import backend
from minilora.hf.safetensors_io import require

EOS_TOKEN = "<|endoftext|>"


def _tokenizers() -> Any:
    return require("tokenizers", "GPT-2 tokenization")


class GPT2Tokenizer:
    """Byte-level BPE: ``encode(text) -> int64 ids``, ``decode(ids) -> text``, ``vocab_size``, save/load."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> GPT2Tokenizer:
        """Read a tokenizer.json (the ``tokenizers`` serialisation Hugging Face folders carry)."""
        tk = _tokenizers()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(2, "no such tokenizer file", str(path))
        try:
            return cls(tk.Tokenizer.from_file(str(path)))
        except Exception as exc:  # the Rust side raises a bare Exception on malformed files
            raise ValueError(f"{path}: not a valid tokenizer.json ({exc})") from None

    @classmethod
    def from_vocab_merges(cls, vocab: str | os.PathLike[str], merges: str | os.PathLike[str]) -> GPT2Tokenizer:
        """Build GPT-2's byte-level BPE from vocab.json and merges.txt (no prefix space, like GPT-2)."""
        tk = _tokenizers()
        for f in (vocab, merges):
            if not Path(f).is_file():
                raise FileNotFoundError(2, "no such tokenizer file", str(f))
        try:
            tok = tk.Tokenizer(tk.models.BPE.from_file(str(vocab), str(merges)))
        except Exception as exc:
            raise ValueError(f"{vocab} + {merges}: not a valid BPE vocabulary ({exc})") from None
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        tok.post_processor = tk.processors.ByteLevel(trim_offsets=False)
        if tok.token_to_id(EOS_TOKEN) is not None:
            tok.add_special_tokens([EOS_TOKEN])  # kept whole, never split into bytes
        return cls(tok)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> GPT2Tokenizer:
        """From a folder: tokenizer.json if present, else vocab.json + merges.txt."""
        p = Path(path)
        if (p / "tokenizer.json").is_file():
            return cls.from_file(p / "tokenizer.json")
        if (p / "vocab.json").is_file() and (p / "merges.txt").is_file():
            return cls.from_vocab_merges(p / "vocab.json", p / "merges.txt")
        raise FileNotFoundError(2, "no tokenizer.json, and no vocab.json + merges.txt, in the folder", str(p))

    @staticmethod
    def is_available(path: str | os.PathLike[str]) -> bool:
        """True when a folder holds tokenizer files this class reads."""
        p = Path(path)
        return (p / "tokenizer.json").is_file() or ((p / "vocab.json").is_file() and (p / "merges.txt").is_file())

    # ------------------------------------------------------------------ the CharTokenizer interface
    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    @property
    def eos_token_id(self) -> int | None:
        return self._tok.token_to_id(EOS_TOKEN)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self._tok.id_to_token(i)

    def encode(self, text: str) -> np.ndarray:
        """The ids of ``text`` as a host int64 array."""
        if not isinstance(text, str):
            raise TypeError(f"GPT2Tokenizer.encode: expected a str, got {type(text).__name__}")
        return np.fromiter(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def decode(self, ids: Any) -> str:
        """The text of a sequence of ids (a list, a NumPy/CuPy array or a Tensor); special tokens are kept."""
        ids = getattr(ids, "data", ids)  # a Tensor
        if backend.is_array(ids):
            ids = backend.to_host(ids)  # host
        flat = [int(i) for i in np.reshape(ids, -1)]  # host: ids are host data here
        n = self.vocab_size
        bad = [i for i in flat if not 0 <= i < n]
        if bad:
            raise ValueError(f"GPT2Tokenizer.decode: id {bad[0]} is outside the vocabulary (size {n})")
        return self._tok.decode(flat, skip_special_tokens=False)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "bpe", "tokenizer": json.loads(self._tok.to_str())}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPT2Tokenizer:
        if not isinstance(d, dict) or d.get("type") != "bpe" or not isinstance(d.get("tokenizer"), dict):
            raise ValueError("GPT2Tokenizer.from_dict: expected {'type': 'bpe', 'tokenizer': {...tokenizer.json...}}")
        return cls(_tokenizers().Tokenizer.from_str(json.dumps(d["tokenizer"])))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer as one tokenizer.json file at ``path``."""
        Path(path).write_text(self._tok.to_str(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GPT2Tokenizer:
        """Read a tokenizer.json file, or a folder (see from_pretrained)."""
        return cls.from_pretrained(path) if Path(path).is_dir() else cls.from_file(path)

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Write folder/tokenizer.json, as a Hugging Face folder holds it."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.save(Path(folder) / "tokenizer.json")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GPT2Tokenizer) and self._tok.to_str() == other._tok.to_str()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GPT2Tokenizer(vocab_size={self.vocab_size})"
