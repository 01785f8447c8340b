"""GPT (GPT-2 / nanoGPT architecture and parameter names) and a sequence classifier on the same backbone.

    idx (B, T) -> wte (B, T, C) + wpe (T, C) -> drop
               -> n_layer x Block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))
               -> ln_f -> lm_head (B, T, V)          [GPT]
               -> ln_f -> last real token -> score (B, K)   [GPTForSequenceClassification]

Parameter names match nanoGPT and Hugging Face's GPT-2 one to one
(transformer.h.0.attn.c_attn.weight, ...; HF stores Conv1D weights transposed),
and lm_head.weight is the same Parameter as transformer.wte.weight.

Hooks for fine-tuning: ``prefix_kv`` (prefix tuning: per-layer keys and values in
front of K and V), ``prompt_embeds`` (prompt tuning: soft prompts in front of the
token embeddings, before positions are added), ``attention_mask`` (padding) and
``kv_cache`` (generation), all in the causal-LM core (minilora.nn.causal_lm), which
this file supplies with GPT-2's blocks and learned positions. See docs/models.md.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from minilora import functional as F  # noqa: N812
from minilora.nn.attention import LayerKVCache, attend, key_mask
from minilora.nn.causal_lm import CausalLMBase, CausalLMMixin, SequenceClassifierMixin
from minilora.nn.containers import ModuleDict, ModuleList
from minilora.nn.layers import GELU, Dropout, Embedding, LayerNorm, Linear, skip_init
from minilora.nn.module import Module
from minilora.tensor import Tensor
from minilora.validate import check_fields, check_range, from_dict


@dataclasses.dataclass
class GPTConfig:
    """Shape of a GPT. ``layer_norm_epsilon`` is 1e-5 as in GPT-2 (and is honoured when loading GPT-2 checkpoints)."""

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GPTConfig: {name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")
        check_range(self, "layer_norm_epsilon", 0.0, low_open=True)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        return from_dict(cls, d)


class CausalSelfAttention(Module):
    """Multi-head causal self-attention with a fused q/k/v projection (c_attn) and an output projection (c_proj)."""

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"CausalSelfAttention: n_embd {n_embd} is not divisible by n_head {n_head}")
        self.n_embd, self.n_head, self.dropout = n_embd, n_head, dropout
        self.c_attn = Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        attention_mask: Any = None,
        prefix_kv: tuple[Tensor, Tensor] | None = None,
        kv_cache: LayerKVCache | None = None,
    ) -> Tensor:
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        p = self.dropout if self.training else 0.0
        if kv_cache is None and prefix_kv is None:  # training and plain scoring: one fused op from c_attn's output
            mask = key_mask("CausalSelfAttention", attention_mask, T, T, 0, x.device)  # (B, 1, T, T)
            y = F.self_attention(self.c_attn(x), nh, mask=mask, causal=True, dropout_p=p)  # (B, T, C)
            return self.resid_dropout(self.c_proj(y))  # (B, T, C)
        q, k, v = F.split(self.c_attn(x), 3, axis=2)  # 3 x (B, T, C)
        q = q.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        k = k.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        v = v.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        y = attend("CausalSelfAttention", q, k, v, attention_mask, prefix_kv, kv_cache, p)  # (B, nh, T, hs)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)

    def extra_repr(self) -> str:
        return f"n_embd={self.n_embd}, n_head={self.n_head}"


class MLP(Module):
    """c_fc (C -> 4C), GELU (tanh), c_proj (4C -> C), dropout."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        C = config.n_embd
        self.c_fc = Linear(C, 4 * C, bias=config.bias)
        self.gelu = GELU("tanh")
        self.c_proj = Linear(4 * C, C, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(Module):
    """Pre-LayerNorm Transformer block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        C, eps = config.n_embd, config.layer_norm_epsilon
        self.ln_1 = LayerNorm(C, eps=eps, bias=config.bias)
        self.attn = CausalSelfAttention(C, config.n_head, bias=config.bias, dropout=config.dropout)
        self.ln_2 = LayerNorm(C, eps=eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, attention_mask: Any = None, prefix_kv: Any = None, kv_cache: Any = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), attention_mask=attention_mask, prefix_kv=prefix_kv, kv_cache=kv_cache)
        return x + self.mlp(self.ln_2(x))  # (B, T, C)


class GPTBase(CausalLMBase):
    """The shared backbone: ``transformer`` (wte, wpe, drop, h, ln_f) and ``hidden_states``.

    GPT and GPTForSequenceClassification differ only in their head; the plumbing (prompt, prefix,
    padding mask, KV cache) is the causal-LM core's (minilora.nn.causal_lm). What is GPT-2's own:
    the learned position table ``wpe``, added to the embeddings before dropout.
    """

    module_paths = {"embed_tokens": "transformer.wte", "blocks": "transformer.h", "final_norm": "transformer.ln_f"}
    max_positions_field = "block_size"
    backbone_prefix = "transformer."

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        with skip_init():  # drawn once, by _init_weights
            self.transformer = self._build_transformer(config)

    @staticmethod
    def _build_transformer(config: GPTConfig) -> ModuleDict:
        return ModuleDict(
            {
                "wte": Embedding(config.vocab_size, config.n_embd),
                "wpe": Embedding(config.block_size, config.n_embd),
                "drop": Dropout(config.dropout),
                "h": ModuleList([Block(config) for _ in range(config.n_layer)]),
                "ln_f": LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
            }
        )

    def init_std(self, name: str) -> float:
        """GPT-2 init: N(0, 0.02), but the residual projections (attn.c_proj, mlp.c_proj) N(0, 0.02 / sqrt(2 n_layer)),
        so that the residual stream does not grow with depth."""
        return 0.02 / math.sqrt(2 * self.config.n_layer) if name.endswith("c_proj") else 0.02

    def positions(self, x: Tensor, pos: Any) -> tuple[Tensor, dict[str, Any]]:
        return self.transformer.drop(x + self.transformer.wpe(pos, check_ids=False)), {}  # (B, P + T, C)


class GPT(CausalLMMixin, GPTBase):
    """The GPT-2 language model (nanoGPT layout); lm_head.weight is tied to transformer.wte.weight.

    forward, generate (minilora.nn.generation) and save_pretrained come from the causal-LM core.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        with skip_init():
            self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # one Parameter in two places: both gradients sum into it
        self._init_weights()

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", dropout: float = 0.0) -> GPT:
        """Load a Hugging Face GPT-2 folder (config.json + model.safetensors): see minilora.hf.gpt2."""
        return super().from_pretrained(path, device=device, dropout=dropout)


class GPTForSequenceClassification(SequenceClassifierMixin, GPTBase):
    """A GPT backbone (same ``transformer`` names, so GPT weights load) with a ``score`` head on the last real token."""

    @classmethod
    def from_gpt(cls, gpt: GPTBase, num_classes: int) -> GPTForSequenceClassification:
        """A classifier whose backbone is a copy of ``gpt``'s (same device and dtype); ``score`` is new."""
        return cls.from_lm(gpt, num_classes)
