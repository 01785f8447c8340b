"""IA3 in the registry (layer and config: minilora/peft/ia3.py). Docs: docs/methods/ia3.md."""

from __future__ import annotations

import dataclasses
from typing import Any

from minilora.models import family_of
from minilora.peft.ia3 import IA3Config, IA3Linear
from minilora.peft.registry import TARGETS_HELP, Method, Option, Variant, parse_targets, register
from minilora.peft.targets import match_targets


def _named(path: str, names: tuple[str, ...]) -> bool:
    return any(path == n or path.endswith("." + n) for n in names)


def inject(peft: Any, adapter_name: str, config: IA3Config, activate: bool) -> list[str]:
    """Wrap the targeted Linears in IA3Linear: feed-forward ones scale their input, the others K and V / outputs."""
    base = peft.base_model
    family = family_of(base)
    if config.target_modules is None or config.feedforward_modules is None:  # the family's defaults, recorded
        config = dataclasses.replace(
            config,
            target_modules=family.ia3_targets if config.target_modules is None else config.target_modules,
            feedforward_modules=(family.ia3_feedforward if config.feedforward_modules is None
                                 else config.feedforward_modules),
        )  # fmt: skip
        peft.peft_config[adapter_name] = config
    ffn = config.feedforward_modules
    ff = set(match_targets(base, ffn, method="IA3") if ffn else ())
    for path in match_targets(base, config.target_modules, method="IA3"):
        kv = _named(path, family.ia3_fused_kv)
        layer = peft.wrap(path, lambda m, f=path in ff, kv=kv: IA3Linear(m, feedforward=f, kv_fused=kv))
        layer.add_adapter(adapter_name, activate)
    return []


register(Method(
    IA3Config, inject,
    variants=(Variant("ia3", 1e-1, "learned rescaling of keys, values and MLP activations"),),
    docs="docs/methods/ia3.md", mergeable=True, order=40,
    options=(Option(("--targets",), "target_modules", TARGETS_HELP, parse_targets),),
))  # fmt: skip
