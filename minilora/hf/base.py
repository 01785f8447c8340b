"""One loader for a base model: a minilora checkpoint file or a Hugging Face folder (any family), with its tokenizer.

The command line (``minilora generate --base PATH``, ``minilora finetune --base PATH``)
calls ``load_base`` so that both kinds of base work everywhere a base is accepted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from minilora.hf.auto import from_pretrained
from minilora.hf.gpt2 import INDEX_NAME, WEIGHTS_NAME, is_hf_folder, read_hf_tensors
from minilora.hf.tokenizer import GPT2Tokenizer
from minilora.io import resolve_folder


def load_base(path: str | os.PathLike[str], device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) from a Hugging Face folder or a minilora checkpoint (detected from ``path``).

    A folder (GPT-2, Llama, Qwen2) needs config.json, model.safetensors and tokenizer files (tokenizer.json,
    or vocab.json + merges.txt); a missing piece is named in the error.
    """
    if is_hf_folder(path):
        path = resolve_folder(path)  # a save killed mid-swap: the complete set still on disk
        if not (Path(path) / WEIGHTS_NAME).is_file() and not (Path(path) / INDEX_NAME).is_file():
            read_hf_tensors(path)  # raises FileNotFoundError naming what is there instead (e.g. a pickle)
        if not GPT2Tokenizer.is_available(path):
            raise FileNotFoundError(
                2, "the Hugging Face folder has no tokenizer (tokenizer.json, or vocab.json + merges.txt)",
                os.fspath(path),
            )
        tokenizer = GPT2Tokenizer.from_pretrained(path)  # first: a broken tokenizer fails before the big load
        model = from_pretrained(path, device=device)
        if tokenizer.vocab_size > model.config.vocab_size:
            raise ValueError(
                f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                f"{model.config.vocab_size} embeddings"
            )
        return model, tokenizer
    from minilora.train import build_model, load_checkpoint  # noqa: PLC0415  (training stack, loaded on use)

    ckpt = load_checkpoint(path)
    return build_model(ckpt, device), ckpt.tokenizer()
