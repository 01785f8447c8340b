"""Prompt tuning in the registry (embedding and config: minilora/peft/prompt.py). Docs: docs/methods/prompt.md."""

from __future__ import annotations

import dataclasses
from typing import Any

from minilora.models import family_of
from minilora.peft.base_layer import trained_dtype
from minilora.peft.prompt import PromptEmbedding, PromptTuningConfig
from minilora.peft.registry import Method, Option, Variant, register


def inject(peft: Any, adapter_name: str, config: PromptTuningConfig, activate: bool) -> list[str]:
    """A PromptEmbedding whose prompt_embeds every forward and generate receives (text init: peft.tokenizer)."""
    base = peft.base_model
    embed = base.get_submodule(family_of(base).embed_path)
    encoder = PromptEmbedding(config, getattr(base, "config", None), embed, tokenizer=peft.tokenizer)
    encoder.to(base.device, trained_dtype(base.dtype))  # float32 over a 16-bit base
    peft.add_encoder(adapter_name, encoder, activate)
    return []


def loading_config(config: PromptTuningConfig) -> PromptTuningConfig:
    """The saved embeddings replace the init, so loading needs no tokenizer."""
    if config.init == "text":
        return dataclasses.replace(config, init="random", init_text=None)
    return config


register(Method(
    PromptTuningConfig, inject,
    # the demo: 18 positions, so both class labels fit ("positive n" was all that 10 held; docs/methods/prompt.md)
    variants=(Variant("prompt", 3e-1, "18 soft prompt embeddings, initialised from both class labels' embeddings",
                      demo_settings={"num_virtual_tokens": 18, "init": "text", "init_text": "positive negative "}),),
    docs="docs/methods/prompt.md", order=70, prepends_tokens=True, loading_config=loading_config,
    options=(
        Option(("--virtual-tokens",), "num_virtual_tokens", "number of virtual tokens P (default 10)", int),
        Option(("--prompt-init-text",), "init_text", "initialise the soft prompt from this text's embeddings",
               also={"init": "text"}),
    ),
))  # fmt: skip
