"""Tiny Hugging Face GPT-2 folders and byte-level BPE files, written here as transformers would (no downloads)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HF_REASON = "needs the hf extra: pip install 'minilora[hf]'"
TINY = {"vocab_size": 11, "n_positions": 8, "n_embd": 8, "n_layer": 2, "n_head": 2}


def hf_tensors(cfg: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """GPT2LMHeadModel's state dict in Hugging Face's layout: Conv1D weights are (in, out)."""
    d, v, t = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.3, shape).astype(np.float32)

    out = {"transformer.wte.weight": w(v, d), "transformer.wpe.weight": w(t, d)}
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        out.update({
            p + "ln_1.weight": 1 + w(d), p + "ln_1.bias": w(d),
            p + "attn.c_attn.weight": w(d, 3 * d), p + "attn.c_attn.bias": w(3 * d),
            p + "attn.c_proj.weight": w(d, d), p + "attn.c_proj.bias": w(d),
            p + "ln_2.weight": 1 + w(d), p + "ln_2.bias": w(d),
            p + "mlp.c_fc.weight": w(d, 4 * d), p + "mlp.c_fc.bias": w(4 * d),
            p + "mlp.c_proj.weight": w(4 * d, d), p + "mlp.c_proj.bias": w(d),
        })  # fmt: skip
    out.update({"transformer.ln_f.weight": 1 + w(d), "transformer.ln_f.bias": w(d)})
    return out


@pytest.fixture
def make_hf_folder(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, np.ndarray]]]:
    """make_hf_folder(name, tensors=None, **config) -> (folder, tensors): config.json + model.safetensors."""
    from safetensors.numpy import save_file

    def make(name: str = "gpt2", tensors: dict[str, np.ndarray] | None = None, seed: int = 0, **overrides: Any):
        cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "activation_function": "gelu_new",
               "layer_norm_epsilon": 1e-5, **TINY, **overrides}  # fmt: skip
        if tensors is None:
            tensors = hf_tensors(cfg, np.random.default_rng(seed))
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(cfg))
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return folder, tensors

    return make


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for every byte (the space 0x20 becomes 'Ġ')."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


TINY_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("he", "ll")]


def write_bpe_files(folder: Path) -> dict[str, int]:
    """vocab.json (256 byte tokens in byte order, 5 merges, <|endoftext|>) and merges.txt; returns the vocab."""
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    for a, b in TINY_MERGES:
        vocab[a + b] = len(vocab)  # Ġt 256, he 257, Ġthe 258, ll 259, hell 260
    vocab["<|endoftext|>"] = len(vocab)  # 261
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in TINY_MERGES)
    (folder / "merges.txt").write_text(lines, encoding="utf-8")
    return vocab


@pytest.fixture
def bpe_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "bpe"
    write_bpe_files(folder)
    return folder
