"""Llama (and Qwen2, Llama with biases on q/k/v) on the causal-LM core, with Hugging Face's parameter names.

    idx (B, T) -> model.embed_tokens (B, T, C)                    (no position table: RoPE rotates q and k)
               -> num_hidden_layers x LlamaDecoderLayer:
                      x = x + self_attn(input_layernorm(x), cos, sin)
                      x = x + mlp(post_attention_layernorm(x))
               -> model.norm -> lm_head (B, T, V)                  [LlamaForCausalLM]
               -> model.norm -> last real token -> score (B, K)   [LlamaForSequenceClassification]

    self_attn: q = rope(q_proj(x)) (B, nh, T, hd), k = rope(k_proj(x)) (B, nkv, T, hd), v = v_proj(x),
               grouped-query attention (each k/v head serves nh / nkv query heads), o_proj
    mlp:       down_proj(silu(gate_proj(x)) * up_proj(x))          (SwiGLU)
    norms:     RMSNorm, float32 statistics then the weight, as transformers' LlamaRMSNorm

Names match transformers' LlamaForCausalLM one to one (model.layers.0.self_attn.q_proj.weight,
...; every projection is an nn.Linear, stored (out, in) as here), so Hugging Face folders
load without transposes. Positions: a KV cache and prompt-tuning tokens shift them as they
do for GPT-2; prefix-tuning keys count as the first positions (real tokens start at P), as
with transformers' past_key_values under PEFT.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from minilora import functional as F  # noqa: N812
from minilora.nn.attention import LayerKVCache, attend
from minilora.nn.causal_lm import CausalLMBase, CausalLMMixin, SequenceClassifierMixin
from minilora.nn.containers import ModuleDict, ModuleList
from minilora.nn.layers import Embedding, Linear, RMSNorm, skip_init
from minilora.nn.module import Module
from minilora.ops.rope import rope_cos_sin
from minilora.tensor import Tensor
from minilora.validate import check_fields, from_dict

# the public face: minilora.nn and minilora.models hand on exactly these
__all__ = [
    "LlamaConfig", "LlamaForCausalLM", "LlamaForSequenceClassification", "Qwen2Config", "Qwen2ForCausalLM",
    "Qwen2ForSequenceClassification",
]


def _alias(field: str) -> property:
    """A read-only property giving the value of another field."""
    return property(lambda self: getattr(self, field), doc=f"The same as ``{field}``.")


@dataclasses.dataclass
class LlamaConfig:
    """Shape of a Llama, with transformers' LlamaConfig field names (num_key_value_heads None = num_attention_heads)."""

    model_type: ClassVar[str] = "llama"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int | None = None
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Llama: a bias on q, k, v and o_proj
    mlp_bias: bool = False
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    attention_dropout: float = 0.0
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        check_fields(self)  # types first: "no" flags, float layer counts, NaN epsilons are refused by name
        name = type(self).__name__
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        for f in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "max_position_embeddings"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name}: {f} must be a positive integer, got {v!r}")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(f"{name}: hidden_size {self.hidden_size} is not divisible by "
                                 f"num_attention_heads {self.num_attention_heads}")
            self.head_dim = self.hidden_size // self.num_attention_heads
        if not isinstance(self.head_dim, int) or self.head_dim <= 0 or self.head_dim % 2:
            raise ValueError(f"{name}: head_dim must be a positive even integer (RoPE rotates pairs), "
                             f"got {self.head_dim!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"{name}: num_attention_heads {self.num_attention_heads} is not divisible by "
                             f"num_key_value_heads {self.num_key_value_heads}")
        if not self.rms_norm_eps > 0 or not self.rope_theta > 0:
            raise ValueError(f"{name}: rms_norm_eps and rope_theta must be > 0, got {self.rms_norm_eps}, "
                             f"{self.rope_theta}")
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"{name}: attention_dropout must be in [0, 1), got {self.attention_dropout}")

    # the core's and PEFT's names for the same numbers (GPTConfig has these fields)
    n_layer = _alias("num_hidden_layers")
    n_head = _alias("num_attention_heads")
    n_kv_head = _alias("num_key_value_heads")  # an int once __post_init__ has run
    n_embd = _alias("hidden_size")
    block_size = _alias("max_position_embeddings")
    qkv_bias = _alias("attention_bias")
    o_bias = _alias("attention_bias")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        return from_dict(cls, d)


@dataclasses.dataclass
class Qwen2Config(LlamaConfig):
    """Qwen2: Llama with a bias on q_proj, k_proj and v_proj (none on o_proj); attention_bias is not used."""

    model_type: ClassVar[str] = "qwen2"
    qkv_bias = True  # not fields: Qwen2's layout, whatever attention_bias says
    o_bias = False


class LlamaAttention(Module):
    """Grouped-query causal self-attention with rotary positions: q_proj, k_proj, v_proj, o_proj."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        C, hd = config.hidden_size, int(config.head_dim)  # type: ignore[arg-type]
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, hd
        self.dropout = config.attention_dropout
        self.q_proj = Linear(C, self.n_head * hd, bias=config.qkv_bias)
        self.k_proj = Linear(C, self.n_kv_head * hd, bias=config.qkv_bias)
        self.v_proj = Linear(C, self.n_kv_head * hd, bias=config.qkv_bias)
        self.o_proj = Linear(self.n_head * hd, C, bias=config.o_bias)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Any, Any],
        attention_mask: Any = None,
        prefix_kv: tuple[Tensor, Tensor] | None = None,
        kv_cache: LayerKVCache | None = None,
    ) -> Tensor:
        """rope: (cos, sin), each (T, hd), for this call's absolute positions: required, and second, as
        transformers' ``position_embeddings``; the model computes it once for all layers (LlamaBase.positions)."""
        B, T, _ = x.shape
        nh, nkv, hd = self.n_head, self.n_kv_head, self.head_dim
        cos, sin = rope  # (T, hd) each
        q = self.q_proj(x).reshape(B, T, nh, hd).transpose(0, 2, 1, 3)  # (B, nh, T, hd)
        k = self.k_proj(x).reshape(B, T, nkv, hd).transpose(0, 2, 1, 3)  # (B, nkv, T, hd)
        v = self.v_proj(x).reshape(B, T, nkv, hd).transpose(0, 2, 1, 3)  # (B, nkv, T, hd)
        q, k = F.rotary_embedding(q, cos, sin), F.rotary_embedding(k, cos, sin)  # (B, nh|nkv, T, hd)
        p = self.dropout if self.training else 0.0
        y = attend("LlamaAttention", q, k, v, attention_mask, prefix_kv, kv_cache, p,  # rotated keys are cached
                   "num_key_value_heads", "head_dim")  # (B, nh, T, hd)
        return self.o_proj(y.transpose(0, 2, 1, 3).reshape(B, T, nh * hd))  # (B, T, C)

    def extra_repr(self) -> str:
        return f"n_head={self.n_head}, n_kv_head={self.n_kv_head}, head_dim={self.head_dim}"


class LlamaMLP(Module):
    """down_proj(silu(gate_proj(x)) * up_proj(x)): C -> intermediate_size -> C."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        C, H, b = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = Linear(C, H, bias=b)
        self.up_proj = Linear(C, H, bias=b)
        self.down_proj = Linear(H, C, bias=b)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.swiglu(self.gate_proj(x), self.up_proj(x)))  # (B, T, C) -> (B, T, H) -> (B, T, C)


class LlamaDecoderLayer(Module):
    """Pre-RMSNorm block: x = x + self_attn(input_layernorm(x)); x = x + mlp(post_attention_layernorm(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        C, eps = config.hidden_size, config.rms_norm_eps
        self.input_layernorm = RMSNorm(C, eps=eps)
        self.self_attn = LlamaAttention(config)
        self.post_attention_layernorm = RMSNorm(C, eps=eps)
        self.mlp = LlamaMLP(config)

    def forward(self, x: Tensor, rope: tuple[Any, Any], attention_mask: Any = None, prefix_kv: Any = None,
                kv_cache: Any = None) -> Tensor:  # fmt: skip
        x = x + self.self_attn(self.input_layernorm(x), rope, attention_mask=attention_mask, prefix_kv=prefix_kv,
                               kv_cache=kv_cache)  # fmt: skip
        return x + self.mlp(self.post_attention_layernorm(x))  # (B, T, C)


class LlamaBase(CausalLMBase):
    """The backbone ``model`` (embed_tokens, layers, norm); positions are RoPE angles handed to every layer."""

    module_paths = {"embed_tokens": "model.embed_tokens", "blocks": "model.layers", "final_norm": "model.norm"}
    max_positions_field = "max_position_embeddings"
    backbone_prefix = "model."

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"{type(self).__name__}: expected a LlamaConfig, got {type(config).__name__}")
        self.config = config
        with skip_init():  # drawn once, by _init_weights
            self.model = ModuleDict({
                "embed_tokens": Embedding(config.vocab_size, config.hidden_size),
                "layers": ModuleList([LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers)]),
                "norm": RMSNorm(config.hidden_size, eps=config.rms_norm_eps),
            })

    def init_std(self, name: str) -> float:
        return self.config.initializer_range  # transformers' init: one N(0, initializer_range) for every weight

    def positions(self, x: Tensor, pos: Any) -> tuple[Tensor, dict[str, Any]]:
        cos, sin = rope_cos_sin(x.xp, pos, int(self.config.head_dim), self.config.rope_theta, x.dtype)  # (T, hd)
        return x, {"rope": (cos, sin)}

    def position_offset(self, n_prefix: int) -> int:
        return n_prefix  # prefix keys take the first positions, as past_key_values do in transformers


class LlamaForCausalLM(CausalLMMixin, LlamaBase):
    """The Llama language model; with tie_word_embeddings, lm_head.weight is model.embed_tokens.weight."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        with skip_init():
            self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.model.embed_tokens.weight = self.lm_head.weight  # one Parameter, both gradients sum into it
        self._init_weights()


class LlamaForSequenceClassification(SequenceClassifierMixin, LlamaBase):
    """A Llama backbone with a ``score`` head (no bias, as transformers) on each row's last real token."""


class Qwen2ForCausalLM(LlamaForCausalLM):
    """Qwen2 (a Qwen2Config: biases on q/k/v): the Llama computation, under its own class and model_type."""


class Qwen2ForSequenceClassification(LlamaForSequenceClassification):
    """Qwen2's sequence classifier."""
