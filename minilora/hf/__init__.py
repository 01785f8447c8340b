"""Interoperability with Hugging Face: GPT-2 checkpoints, GPT-2 tokenization, PEFT adapters (see docs/interop.md).

Needs the optional extra ``pip install 'minilora[hf]'`` (safetensors, tokenizers);
importing this package does not, the functions that read or write files do.
"""

from minilora.hf.base import load_base
from minilora.hf.gpt2 import UnsupportedCheckpointError, from_pretrained, is_hf_folder, save_pretrained
from minilora.hf.tokenizer import GPT2Tokenizer

__all__ = [
    "GPT2Tokenizer", "UnsupportedCheckpointError", "from_pretrained", "is_hf_folder", "load_base", "save_pretrained",
]
