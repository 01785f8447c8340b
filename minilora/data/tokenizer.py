"""A character-level tokenizer: one token per character, vocabulary saved as JSON.

Every built-in corpus uses ``CharTokenizer.default()``: newline plus the 95
printable ASCII characters, in code-point order. One shared vocabulary is what
lets a model pre-trained on one corpus be fine-tuned on another (same embedding
rows, same meaning), and any plain-ASCII text file of a user's fits it too.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from minilora import backend

DEFAULT_CHARS = "\n" + "".join(chr(c) for c in range(32, 127))


class CharTokenizer:
    """Maps characters to ids 0..vocab_size-1 and back."""

    def __init__(self, chars: str | list[str]) -> None:
        chars = list(chars)
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer: the vocabulary must be distinct single characters")
        if not chars:
            raise ValueError("CharTokenizer: empty vocabulary")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def default(cls) -> CharTokenizer:
        """The shared vocabulary of every built-in corpus (newline + printable ASCII, 96 characters)."""
        return cls(DEFAULT_CHARS)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The default vocabulary when ``text`` fits it (keeps compatibility), else the sorted set of its characters."""
        used = set(text)
        if used <= set(DEFAULT_CHARS):
            return cls.default()
        return cls(sorted(used))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """The ids of ``text`` as a host int64 array; an unknown character is a clear error."""
        try:
            return np.fromiter((self.stoi[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as exc:
            pos = next(i for i, c in enumerate(text) if c not in self.stoi)
            raise ValueError(
                f"CharTokenizer.encode: character {exc.args[0]!r} at position {pos} is not in the vocabulary "
                f"({self.vocab_size} characters)"
            ) from None

    def decode(self, ids: Any, errors: str = "strict") -> str:
        """The text of a sequence of ids (a list, a NumPy/CuPy array or a Tensor).

        An id outside the vocabulary (a model with a padded vocabulary can sample one) is a ValueError naming it,
        or, with ``errors="replace"``, decoded as U+FFFD so the rest of the text is still shown.
        """
        from minilora.tensor import Tensor  # noqa: PLC0415

        if isinstance(ids, Tensor):
            ids = ids.data
        if backend.is_array(ids):
            ids = backend.to_host(ids)  # host
        flat = np.asarray(ids).reshape(-1).tolist()  # host
        bad = [i for i in flat if not 0 <= i < self.vocab_size]
        if bad and errors == "replace":
            return "".join(self.chars[i] if 0 <= i < self.vocab_size else "\ufffd" for i in flat)
        if bad:
            raise ValueError(f"CharTokenizer.decode: id {bad[0]} is outside the vocabulary (size {self.vocab_size})")
        return "".join(self.chars[i] for i in flat)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        if not isinstance(d, dict) or d.get("type") != "char" or not isinstance(d.get("chars"), str):
            raise ValueError("CharTokenizer.from_dict: expected {'type': 'char', 'chars': '...'}")
        return cls(d["chars"])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharTokenizer:
        """Read a vocabulary written by ``save``; a bad file names itself."""
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not a JSON vocabulary file ({exc.msg} at line {exc.lineno})") from None
        try:
            return cls.from_dict(d)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def decode_known(tokenizer: Any, ids: Any) -> tuple[str, list[int]]:
    """(the text of ``ids``, the ids the tokenizer lacks): those are shown as U+FFFD.

    A model's vocabulary may be larger than its tokenizer's (Llama-style folders pad it), so
    generated ids can fall outside what the tokenizer decodes.
    """
    data = getattr(ids, "data", ids) if not backend.is_array(ids) else ids  # a Tensor's array
    data = backend.to_host(data) if backend.is_array(data) else np.asarray(data)  # host: the text is printed
    flat = [int(i) for i in data.reshape(-1).tolist()]
    V = tokenizer.vocab_size
    unknown = sorted({i for i in flat if not 0 <= i < V})
    if not unknown:
        return tokenizer.decode(flat), []
    return "".join(tokenizer.decode([i]) if 0 <= i < V else "\ufffd" for i in flat), unknown
