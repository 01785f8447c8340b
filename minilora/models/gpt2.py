"""The GPT-2 family (nanoGPT layout, minilora.nn.gpt) in the registry."""

from __future__ import annotations

from typing import Any

from minilora.models.registry import Family, register
from minilora.nn.gpt import GPT, GPTConfig, GPTForSequenceClassification


def _sized(*, vocab_size: int, n_layer: int, n_head: int, n_embd: int, block_size: int, dropout: float,
           n_kv_head: int | None, intermediate_size: int | None, bias: bool | None) -> GPTConfig:  # fmt: skip
    if n_kv_head not in (None, n_head):
        raise ValueError(f"gpt2: n_kv_head {n_kv_head} is not supported (GPT-2 has n_head key/value heads)")
    if intermediate_size not in (None, 4 * n_embd):
        raise ValueError(f"gpt2: intermediate_size {intermediate_size} is not supported (GPT-2's MLP is 4 n_embd)")
    extra: dict[str, Any] = {} if bias is None else {"bias": bias}
    return GPTConfig(vocab_size, block_size, n_layer, n_head, n_embd, dropout=dropout, **extra)


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
        embed_path=GPT.module_paths["embed_tokens"],  # prompt tuning reads the token embedding
        sized=_sized,
    )
)
