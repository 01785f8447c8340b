"""Prefix tuning in the registry (encoder and config: minilora/peft/prefix.py). Docs: docs/methods/prefix.md."""

from __future__ import annotations

from typing import Any

from minilora.peft.base_layer import trained_dtype
from minilora.peft.prefix import PrefixEncoder, PrefixTuningConfig
from minilora.peft.registry import Method, Option, Variant, register


def inject(peft: Any, adapter_name: str, config: PrefixTuningConfig, activate: bool) -> list[str]:
    """A PrefixEncoder whose prefix_kv every forward and generate receives."""
    base = peft.base_model
    encoder = PrefixEncoder(config, getattr(base, "config", None), base.device, trained_dtype(base.dtype))
    peft.add_encoder(adapter_name, encoder, activate)
    return []


register(Method(
    PrefixTuningConfig, inject,
    variants=(Variant("prefix", 1e-1, "10 learned key/value prefixes per layer"),),
    docs="docs/methods/prefix.md", order=60,
    options=(
        Option(("--virtual-tokens",), "num_virtual_tokens", "number of virtual tokens P (default 10)", int),
        Option(("--prefix-projection",), "prefix_projection", "prefix tuning through a reparameterisation MLP",
               switch=True),
    ),
))  # fmt: skip
