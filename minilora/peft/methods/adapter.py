"""Bottleneck adapters in the registry (layer and config: minilora/peft/adapter.py). Docs: docs/methods/adapters.md."""

from __future__ import annotations

from typing import Any

from minilora.models import family_of
from minilora.nn import LayerNorm, RMSNorm
from minilora.peft.adapter import ACTIVATIONS, AdapterConfig, BottleneckAdapter
from minilora.peft.registry import Method, Option, Variant, register
from minilora.peft.targets import match_targets


def inject(peft: Any, adapter_name: str, config: AdapterConfig, activate: bool) -> list[str]:
    """Wrap every block's attention (houlsby) and MLP sublayer in a BottleneckAdapter."""
    base = peft.base_model
    sites = family_of(base).adapter_sites
    subs = ("attn", "mlp") if config.placement == "houlsby" else ("mlp",)
    regex = "|".join(f"(?:{sites[s]})" for s in subs)
    cfg = getattr(base, "config", None)
    if cfg is None or not hasattr(cfg, "n_embd"):
        raise TypeError(f"{type(base).__name__} has no config.n_embd; adapters need the model width")
    for path in match_targets(base, regex, linear_only=False, method="adapters"):
        layer = peft.wrap(path, lambda m: BottleneckAdapter(m, cfg.n_embd))
        layer.add_adapter(adapter_name, config.bottleneck, config.activation, activate)
    if config.train_layernorms:
        norms = [n for n, m in base.named_modules() if isinstance(m, (LayerNorm, RMSNorm))]
        peft.add_modules_to_save(adapter_name, norms, activate)
    return []


register(Method(
    AdapterConfig, inject,
    variants=(Variant("adapter", 1e-2, "bottleneck adapters after attention and MLP, width 16"),),
    docs="docs/methods/adapters.md", order=50,
    options=(
        Option(("--bottleneck",), "bottleneck", "adapter bottleneck width (default 16)", int),
        Option(("--placement",), "placement", "houlsby (after attention and MLP, default) or pfeiffer (MLP only)",
               choices=("houlsby", "pfeiffer")),
        Option(("--activation",), "activation", "adapter activation (default gelu)", choices=tuple(ACTIVATIONS)),
        Option(("--train-layernorms",), "train_layernorms", "also train the LayerNorms", switch=True),
    ),
))  # fmt: skip
