"""The GPT-2 family (nanoGPT layout, minilora.nn.gpt) in the registry."""

from __future__ import annotations

from minilora.models.registry import Family, register
from minilora.nn.gpt import GPT, GPTConfig, GPTForSequenceClassification

GPT2 = register(
    Family(
        name="gpt2",
        config_cls=GPTConfig,
        lm_cls=GPT,
        classifier_cls=GPTForSequenceClassification,
        hf_model_types=("gpt2",),
        hf_module="minilora.hf.gpt2",
        lora_targets=("c_attn",),  # PEFT's default for GPT-2
        ia3_targets=("c_attn", "mlp.c_proj"),
        ia3_feedforward=("mlp.c_proj",),
        ia3_fused_kv=("c_attn",),
        hf_conv1d=("c_attn", "c_proj", "c_fc"),
        tied_weights=lambda config: (("transformer.wte.weight", "lm_head.weight"),),
        adapter_sites={"attn": r"(.*\.)?h\.\d+\.attn", "mlp": r"(.*\.)?h\.\d+\.mlp"},
        embed_path="transformer.wte",
    )
)
