"""minilora.nn: the module system, layers, attention and the GPT models (see docs/models.md)."""

from minilora.nn.attention import CausalSelfAttention, KVCache, LayerKVCache
from minilora.nn.causal_lm import CausalLMBase, CausalLMMixin, SequenceClassifierMixin
from minilora.nn.gpt import GPT, MLP, Block, GPTBase, GPTConfig, GPTForSequenceClassification
from minilora.nn.layers import GELU, Dropout, Embedding, LayerNorm, Linear, RMSNorm, skip_init
from minilora.nn.module import LoadResult, Module, ModuleDict, ModuleList, Parameter, StateDictError
from minilora.nn.transaction import Snapshot, all_or_nothing

__all__ = [
    "GELU", "GPT", "MLP", "Block", "CausalLMBase", "CausalLMMixin", "CausalSelfAttention", "Dropout", "Embedding",
    "GPTBase", "GPTConfig", "GPTForSequenceClassification", "KVCache", "LayerKVCache", "LayerNorm", "Linear",
    "LoadResult", "Module", "ModuleDict", "ModuleList", "Parameter", "RMSNorm", "SequenceClassifierMixin",
    "Snapshot", "StateDictError", "all_or_nothing", "skip_init",
]
