"""The Llama and Qwen2 families (minilora.nn.llama) in the registry, with PEFT's defaults for them."""

from __future__ import annotations

from typing import Any

from minilora.models.registry import Family, register
from minilora.nn.llama import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
)


def _sized(config_cls: type) -> Any:
    def sized(*, vocab_size: int, n_layer: int, n_head: int, n_embd: int, block_size: int, dropout: float,
              n_kv_head: int | None, intermediate_size: int | None, bias: bool | None) -> Any:  # fmt: skip
        # SwiGLU's three C x H matrices hold GPT-2's two C x 4C when H = 8C/3 (rounded to 8, as Llama's sizes are)
        H = intermediate_size or max(8, int(round(8 * n_embd / 3 / 8)) * 8)
        extra: dict[str, Any] = {} if bias is None else {"attention_bias": bias}
        return config_cls(vocab_size=vocab_size, hidden_size=n_embd, intermediate_size=H, num_hidden_layers=n_layer,
                          num_attention_heads=n_head, num_key_value_heads=n_kv_head, max_position_embeddings=block_size,
                          attention_dropout=dropout, **extra)

    return sized


_PEFT_FACTS = {
    "lora_targets": ("q_proj", "v_proj"),  # PEFT's default for llama and qwen2
    "ia3_targets": ("k_proj", "v_proj", "down_proj"),  # PEFT's default; down_proj is the feed-forward one
    "ia3_feedforward": ("down_proj",),
    "adapter_sites": {"attn": r"(.*\.)?layers\.\d+\.self_attn", "mlp": r"(.*\.)?layers\.\d+\.mlp"},
    "embed_path": LlamaForCausalLM.module_paths["embed_tokens"],
    "hf_module": "minilora.hf.llama",
    "tied_weights": lambda config: (
        (("model.embed_tokens.weight", "lm_head.weight"),) if config.get("tie_word_embeddings") else ()
    ),
}

LLAMA = register(Family(name="llama", config_cls=LlamaConfig, lm_cls=LlamaForCausalLM,
                        classifier_cls=LlamaForSequenceClassification, hf_model_types=("llama",),
                        sized=_sized(LlamaConfig), **_PEFT_FACTS))
QWEN2 = register(Family(name="qwen2", config_cls=Qwen2Config, lm_cls=Qwen2ForCausalLM,
                        classifier_cls=Qwen2ForSequenceClassification, hf_model_types=("qwen2",),
                        sized=_sized(Qwen2Config), **_PEFT_FACTS))
