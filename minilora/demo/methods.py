"""The fine-tuning methods the demo compares: every variant in the method registry (minilora.peft.registry).

Every method trains under the same budget (steps, batch, window, AdamW, warmup then cosine
decay, no weight decay); only the learning rate differs, because the methods move very
different numbers of very differently scaled parameters. Each variant's rate is the ONE default
the registry holds, shared with ``minilora finetune``: they come from a small sweep on this demo
(150 steps; two or three rates a factor of about 3 apart per method, e.g. LoRA 3e-3 / 1e-2, full
1e-3 / 3e-3), keeping the best held-out accuracy (then loss). As the papers report, the
parameter-efficient methods want a much larger rate than full fine-tuning (LoRA's paper fine-tunes
GPT-2 at 2e-4 against 5e-5 or less in full; prompt tuning uses 0.3).

The demo's configs are the registry's defaults (LoRA r=8, alpha=16 on the family's targets, ...)
plus each variant's ``demo_settings`` (prompt tuning starts from the embeddings of the demo's class labels,
"positive negative": Lester et al.'s best start; from "the answer follows" it learnt nothing at lr 0.3,
see docs/methods/prompt.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from minilora.peft import PeftConfig, registry


@dataclasses.dataclass(frozen=True)
class Method:
    """One fine-tuning method of the demo: how to configure it, and its learning rate."""

    name: str
    make_config: Callable[[], PeftConfig]
    lr: float
    summary: str


def _demo_method(method: registry.Method, variant: registry.Variant) -> Method:
    def make_config() -> PeftConfig:
        return method.config(variant.name, **variant.demo_settings)

    return Method(variant.name, make_config, variant.lr, variant.summary)


METHODS: dict[str, Method] = {name: _demo_method(m, v) for name, (m, v) in registry.variants().items()}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
# prefix and prompt tuning: positions the fine-tuning window leaves free for everyone (the largest default)
VIRTUAL_TOKENS = max(getattr(m.make_config(), "num_virtual_tokens", 0) for m in METHODS.values())


def parse_methods(spec: str | None) -> tuple[str, ...]:
    """"lora,full" -> ("lora", "full"); None or "all" -> every method. Unknown names are a ValueError."""
    if spec is None or spec.strip() in ("", "all"):
        return METHOD_NAMES
    names = tuple(dict.fromkeys(s.strip().lower() for s in spec.split(",") if s.strip()))
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_NAMES)} or 'all'")
    if not names:
        raise ValueError(f"no method given; choose from {', '.join(METHOD_NAMES)} or 'all'")
    return names
