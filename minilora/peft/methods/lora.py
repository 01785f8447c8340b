"""LoRA and its variants in the registry: LoRA, QLoRA, DoRA, PiSSA / OLoRA initialisation, LoRA+.

The layer, its fused ops and its config are in minilora/peft/lora.py (lora_ops.py, lora_init.py,
loraplus.py, lora_convert.py beside it); QLoRA's NF4 base in linear4bit.py / qlora.py; PEFT's on-disk format in
peft_format.py. Docs: docs/methods/lora.md (qlora.md, dora.md, pissa.md, loraplus.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from minilora.models import family_of
from minilora.nn import Linear
from minilora.peft.fingerprint import base_fingerprint
from minilora.peft.lora import LoraConfig, LoraLinear
from minilora.peft.lora_convert import convert_to_lora
from minilora.peft.lora_init import changes_base
from minilora.peft.loraplus import loraplus_param_groups
from minilora.peft.peft_format import LoraExchange
from minilora.peft.qlora import quantize_model
from minilora.peft.registry import TARGETS_HELP, Method, Option, Variant, parse_targets, register
from minilora.peft.targets import match_targets


def inject(peft: Any, adapter_name: str, config: LoraConfig, activate: bool) -> list[str]:
    """Wrap every targeted Linear in a LoraLinear (QLoRA: the base's Linears stored as NF4 first)."""
    base = peft.base_model
    if config.target_modules is None:  # the family's default, recorded in the saved config
        config = dataclasses.replace(config, target_modules=family_of(base).lora_targets)
        peft.peft_config[adapter_name] = config
    others = [c for n, c in peft.peft_config.items() if n != adapter_name]
    if any(c.quantize != config.quantize for c in others):
        raise ValueError("add_adapter: every LoRA adapter of a PeftModel must agree on quantize (QLoRA)")
    if others and changes_base(config.init_lora_weights):
        raise ValueError(f"LoraConfig.init_lora_weights={config.init_lora_weights!r} replaces the base weights by a "
                         "residual: it must be the PeftModel's first adapter")  # fmt: skip
    paths = match_targets(base, config.target_modules, method="LoRA")
    if config.quantize:  # QLoRA: the whole base's Linear layers (but the heads) are stored as NF4
        plain = [p for p in match_targets(base, "all-linear") if isinstance(base.get_submodule(p), Linear)]
        if plain:
            quantize_model(base, plain, block_size=config.quant_block_size, double_quant=config.double_quant)
    for path in paths:
        peft.wrap(path, LoraLinear).add_adapter(adapter_name, config, activate)
    if changes_base(config.init_lora_weights):  # the adapter now belongs to the residual base, and says so
        peft.base_fingerprint = base_fingerprint(peft)
    if config.bias == "none":
        return []
    return peft.unfreeze_biases(paths if config.bias == "lora_only" else None)


def optimizer_groups(peft: Any, config: LoraConfig, lr: float, weight_decay: float) -> list[dict[str, Any]] | None:
    """LoRA+: B (and 1-D parameters) at loraplus_lr_ratio x lr, as PEFT's create_loraplus_optimizer."""
    if config.loraplus_lr_ratio is None:
        return None
    return loraplus_param_groups(peft, lr, config.loraplus_lr_ratio, weight_decay)


def loading_config(config: LoraConfig) -> LoraConfig:
    """Saved weights replace the initialisation: never redo PiSSA / OLoRA on the (already residual) base."""
    if changes_base(config.init_lora_weights):
        return dataclasses.replace(config, init_lora_weights="kaiming")
    return config


register(Method(
    LoraConfig, inject,
    variants=(
        Variant("lora", 1e-2, "h = W0 x + (alpha/r) B A x on the family's attention input, r=8"),
        Variant("qlora", 1e-2, "LoRA on a base stored as NF4 (double quantisation)", {"quantize": True},
                docs="docs/methods/qlora.md"),
        Variant("dora", 1e-2, "magnitude m times the direction of W0 + (alpha/r) B A", {"use_dora": True},
                docs="docs/methods/dora.md"),
        Variant("pissa", 1e-2, "LoRA initialised from W0's top-r singular triplets; the base is the residual",
                {"init_lora_weights": "pissa"}, docs="docs/methods/pissa.md"),
        Variant("loraplus", 3e-3, "LoRA with B at 16x the learning rate of A (LoRA+)", {"loraplus_lr_ratio": 16.0},
                docs="docs/methods/loraplus.md"),
    ),
    docs="docs/methods/lora.md", mergeable=True, order=10,
    options=(
        Option(("--rank",), "r", "rank r (default: the method's; LoRA 8, VeRA 256)", int),
        Option(("--alpha",), "lora_alpha", "LoRA alpha; scaling alpha/r (default 16)", float),
        Option(("--dropout",), "lora_dropout", "dropout on the LoRA branch's input (default 0)", float),
        Option(("--rslora",), "use_rslora", "rank-stabilised scaling alpha/sqrt(r)", switch=True),
        Option(("--targets",), "target_modules", TARGETS_HELP, parse_targets),
        Option(("--init",), "init_lora_weights", "LoRA init: kaiming (default), gaussian, pissa, pissa_niter_N "
               "(randomised SVD, N power iterations) or olora; PiSSA/OLoRA make the base the residual", str,
               metavar="INIT"),
        Option(("--block-size-nf4",), "quant_block_size", "QLoRA NF4 block size (default 64)", int),
        Option(("--loraplus-ratio",), "loraplus_lr_ratio", "LoRA+: B learns at this multiple of the learning rate "
               "(the loraplus method: 16)", float, metavar="RATIO"),
    ),
    exchange=LoraExchange, optimizer_groups=optimizer_groups, loading_config=loading_config,
    to_original_base=convert_to_lora,
))  # fmt: skip
