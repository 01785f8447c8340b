"""LoRA+ (Hayou et al. 2024): the B matrices learn at ``loraplus_lr_ratio`` times the learning rate of A.

With B initialised to zero and A random, the paper shows that one learning rate for both is
inefficient at large width: B should move faster. This is only a choice of optimizer parameter
groups, the same four groups as PEFT's ``peft.optimizers.create_loraplus_optimizer``:

    groupA            every other trainable parameter (lora_A, ...)         lr,          weight_decay
    embedding         LoRA on embeddings (minilora has none: always empty)  1e-6,        weight_decay
    groupB            lora_B and 1-D parameters that decay                  lr * ratio,  weight_decay
    groupB_no_decay   lora_B / 1-D parameters inside norms or named bias    lr * ratio,  0
"""

from __future__ import annotations

import math
from typing import Any

from minilora.nn import LayerNorm, RMSNorm


def loraplus_param_groups(
    model: Any, lr: float, loraplus_lr_ratio: float = 16.0, weight_decay: float = 0.0,
    loraplus_lr_embedding: float = 1e-6,
) -> list[dict[str, Any]]:
    """The four LoRA+ parameter groups (see the module docstring) over ``model``'s trainable parameters."""
    if isinstance(loraplus_lr_ratio, bool) or not isinstance(loraplus_lr_ratio, (int, float)) or \
            not math.isfinite(loraplus_lr_ratio) or loraplus_lr_ratio <= 0:  # fmt: skip
        raise ValueError(f"loraplus_lr_ratio must be a positive finite number, got {loraplus_lr_ratio!r}")
    in_norm = {id(p) for m in model.modules() if isinstance(m, (LayerNorm, RMSNorm)) for p in m.parameters()}
    groups: dict[str, list[tuple[str, Any]]] = {"groupA": [], "embedding": [], "groupB": [], "groupB_no_decay": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if "lora_B" in name or p.ndim == 1:
            decays = id(p) not in in_norm and "bias" not in name
            groups["groupB" if decays else "groupB_no_decay"].append((name, p))
        else:
            groups["groupA"].append((name, p))
    settings = {"groupA": (lr, weight_decay), "embedding": (loraplus_lr_embedding, weight_decay),
                "groupB": (lr * loraplus_lr_ratio, weight_decay), "groupB_no_decay": (lr * loraplus_lr_ratio, 0.0)}
    return [{"params": [p for _, p in groups[g]], "names": [n for n, _ in groups[g]], "lr": settings[g][0],
             "weight_decay": settings[g][1]} for g in groups]  # fmt: skip


def create_loraplus_optimizer(
    model: Any, optimizer_cls: type, *, lr: float, loraplus_lr_ratio: float, **kwargs: Any
) -> Any:
    """PEFT's ``create_loraplus_optimizer``: ``optimizer_cls`` over the LoRA+ groups (``loraplus_weight_decay``
    and ``loraplus_lr_embedding`` are taken from ``kwargs``; the rest go to the optimizer)."""
    weight_decay = kwargs.pop("loraplus_weight_decay", 0.0)
    lr_embedding = kwargs.pop("loraplus_lr_embedding", 1e-6)
    groups = loraplus_param_groups(model, lr, loraplus_lr_ratio, weight_decay, lr_embedding)
    return optimizer_cls(groups, lr=lr, **kwargs)
