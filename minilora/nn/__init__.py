"""minilora.nn: the module system, layers, attention and the GPT models (see docs/models.md)."""

from minilora.nn.attention import CausalSelfAttention, KVCache, LayerKVCache
from minilora.nn.causal_lm import CausalLMBase, CausalLMMixin, SequenceClassifierMixin
from minilora.nn.gpt import GPT, MLP, Block, GPTBase, GPTConfig, GPTForSequenceClassification
from minilora.nn.layers import GELU, Dropout, Embedding, LayerNorm, Linear, RMSNorm, skip_init
from minilora.nn.module import LoadResult, Module, ModuleDict, ModuleList, Parameter, StateDictError

__all__ = [
    "GELU", "GPT", "MLP", "Block", "CausalLMBase", "CausalLMMixin", "CausalSelfAttention", "Dropout", "Embedding",
    "GPTBase", "GPTConfig", "GPTForSequenceClassification", "KVCache", "LayerKVCache", "LayerNorm", "Linear",
    "LoadResult", "Module", "ModuleDict", "ModuleList", "Parameter", "RMSNorm", "SequenceClassifierMixin",
    "StateDictError", "skip_init",
]
