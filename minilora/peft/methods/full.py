"""Full fine-tuning in the PEFT API: no adapter, every base parameter trains. Docs: docs/methods/full.md."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from minilora.peft.config import PeftConfig
from minilora.peft.registry import Method, Variant, register


@dataclasses.dataclass
class FullFineTuneConfig(PeftConfig):
    """Full fine-tuning in the same API: no adapter, every base parameter trains (the baseline)."""

    peft_type: ClassVar[str] = "FULL"


def inject(peft: Any, adapter_name: str, config: FullFineTuneConfig, activate: bool) -> list[str]:
    base = peft.base_model
    base.requires_grad_(True)
    return [n for n, _ in base.named_parameters()]


register(Method(
    FullFineTuneConfig, inject,
    variants=(Variant("full", 1e-3, "every parameter trains (the baseline)", weight_decay=0.1),),
    docs="docs/methods/full.md", can_disable=False, one_adapter=True, order=0,
))  # fmt: skip
