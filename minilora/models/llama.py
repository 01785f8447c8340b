"""The Llama and Qwen2 families (minilora.nn.llama) in the registry, with PEFT's defaults for them."""

from __future__ import annotations

from minilora.models.registry import Family, register
from minilora.nn.llama import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
)

_PEFT_FACTS = {
    "lora_targets": ("q_proj", "v_proj"),  # PEFT's default for llama and qwen2
    "ia3_targets": ("k_proj", "v_proj", "down_proj"),  # PEFT's default; down_proj is the feed-forward one
    "ia3_feedforward": ("down_proj",),
    "adapter_sites": {"attn": r"(.*\.)?layers\.\d+\.self_attn", "mlp": r"(.*\.)?layers\.\d+\.mlp"},
    "embed_path": "model.embed_tokens",
    "hf_module": "minilora.hf.llama",
    "tied_weights": lambda config: (
        (("model.embed_tokens.weight", "lm_head.weight"),) if config.get("tie_word_embeddings") else ()
    ),
}

LLAMA = register(Family(name="llama", config_cls=LlamaConfig, lm_cls=LlamaForCausalLM,
                        classifier_cls=LlamaForSequenceClassification, hf_model_types=("llama",), **_PEFT_FACTS))
QWEN2 = register(Family(name="qwen2", config_cls=Qwen2Config, lm_cls=Qwen2ForCausalLM,
                        classifier_cls=Qwen2ForSequenceClassification, hf_model_types=("qwen2",), **_PEFT_FACTS))
