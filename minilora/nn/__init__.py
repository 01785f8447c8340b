"""minilora.nn: modules, layers, attention, the causal-LM core, the GPT-2 and Llama models (see docs/models.md)."""

from minilora.nn.attention import KVCache, LayerKVCache
from minilora.nn.causal_lm import CausalLMBase, CausalLMMixin, SequenceClassifierMixin
from minilora.nn.containers import ModuleDict, ModuleList
from minilora.nn.gpt import GPT, MLP, Block, CausalSelfAttention, GPTBase, GPTConfig, GPTForSequenceClassification
from minilora.nn.inputs import mask_positions
from minilora.nn.layers import GELU, Dropout, Embedding, LayerNorm, Linear, RMSNorm, skip_init
from minilora.nn.llama import *  # noqa: F403  (the Llama and Qwen2 models: listed once, in its __all__)
from minilora.nn.llama import __all__ as _llama_names
from minilora.nn.module import LoadResult, Module, Parameter, StateDictError
from minilora.nn.transaction import Snapshot, all_or_nothing

__all__ = [
    "GELU", "GPT", "MLP", "Block", "CausalLMBase", "CausalLMMixin", "CausalSelfAttention", "Dropout", "Embedding",
    "GPTBase", "GPTConfig", "GPTForSequenceClassification", "KVCache", "LayerKVCache", "LayerNorm", "Linear",
    "LoadResult", "Module", "ModuleDict", "ModuleList", "Parameter", "RMSNorm", "SequenceClassifierMixin",
    "Snapshot", "StateDictError", "all_or_nothing", "skip_init", "mask_positions", *_llama_names,
]
