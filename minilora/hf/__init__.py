"""Interoperability with Hugging Face: GPT-2/Llama/Qwen2 folders, tokenizers, PEFT adapters (see docs/interop.md).

Needs the optional extra ``pip install 'minilora[hf]'`` (safetensors, tokenizers);
importing this package does not, the functions that read or write files do.
``from_pretrained`` / ``save_pretrained`` dispatch on the model family (minilora.models);
the per-family converters are minilora.hf.gpt2 and minilora.hf.llama.
"""

from minilora.hf.auto import from_pretrained, save_pretrained
from minilora.hf.base import load_base
from minilora.hf.gpt2 import UnsupportedCheckpointError, is_hf_folder
from minilora.hf.tokenizer import GPT2Tokenizer

HFTokenizer = GPT2Tokenizer  # tokenizer.json through the tokenizers library: any family's folder

__all__ = [
    "GPT2Tokenizer", "HFTokenizer", "UnsupportedCheckpointError", "from_pretrained", "is_hf_folder", "load_base",
    "save_pretrained",
]
