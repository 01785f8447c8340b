"""minilora.models: the model families (GPT-2, Llama, Qwen2) and the registry that binds them (see docs/models.md).

    from minilora.models import build_model, family_of, get_family, families
    family_of(model).lora_targets      # ("c_attn",) for GPT-2
    build_model({"family": "gpt2", "vocab_size": 65, "block_size": 64, "n_layer": 2, "n_head": 4, "n_embd": 64})
"""

from minilora.models import gpt2, llama  # noqa: F401  (registers the GPT-2, Llama and Qwen2 families)
from minilora.models.registry import (
    Family,
    build_model,
    families,
    family_for_model_type,
    family_of,
    get_family,
    register,
)
from minilora.nn.llama import *  # noqa: F403  (the Llama and Qwen2 models: listed once, in its __all__)
from minilora.nn.llama import __all__ as _llama_names

__all__ = [
    "Family", "build_model", "families", "family_for_model_type", "family_of", "get_family", "register",
    *_llama_names,
]
