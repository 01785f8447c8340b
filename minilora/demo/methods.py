"""The eight fine-tuning methods the demo compares, each with its config and its learning rate.

Every method trains under the same budget (steps, batch, window length, AdamW, warmup then
cosine decay, no weight decay); only the learning rate differs, because the methods move
very different numbers of very differently scaled parameters:

=========  =====================================================  ======  ==============================
method     config                                                  lr      why this lr
=========  =====================================================  ======  ==============================
full       FullFineTuneConfig()                                    1e-3    every weight moves; a larger
                                                                           step wrecks pre-trained ones
lora       LoraConfig(r=8, alpha=16, target c_attn)                3e-3    B starts at 0: the update has
qlora      the same, base weights stored as NF4                    3e-3    to grow from nothing
dora       the same, use_dora=True (magnitude m trains too)        3e-3
adapter    AdapterConfig(bottleneck=16, houlsby)                   3e-3    up-projection starts at 0
ia3        IA3Config() (k, v and MLP scaling vectors)              1e-2    vectors of ones: a 1e-3 step is
                                                                           a 0.1% rescale
prefix     PrefixTuningConfig(num_virtual_tokens=10)               1e-2    few numbers, far from the data
prompt     PromptTuningConfig(num_virtual_tokens=10)               3e-2    one input-side embedding table
=========  =====================================================  ======  ==============================

Full fine-tuning's lr is the usual "ten times below pre-training" (3e-3 there); the PEFT rates
follow their papers' advice to use a larger rate than full fine-tuning, scaled down from the
papers' (large-model) values only as far as a 200-step budget on a small model needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from minilora.peft import (
    AdapterConfig,
    FullFineTuneConfig,
    IA3Config,
    LoraConfig,
    PeftConfig,
    PrefixTuningConfig,
    PromptTuningConfig,
)

VIRTUAL_TOKENS = 10  # prefix and prompt tuning: positions the fine-tuning window leaves free


@dataclasses.dataclass(frozen=True)
class Method:
    """One fine-tuning method of the demo: how to configure it, and its learning rate."""

    name: str
    make_config: Callable[[], PeftConfig]
    lr: float
    summary: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("full", FullFineTuneConfig, 1e-3, "every parameter trains (the baseline)"),
        Method("lora", lambda: LoraConfig(r=8, lora_alpha=16, target_modules=("c_attn",)), 3e-3,
               "h = W0 x + (alpha/r) B A x on c_attn, r=8"),
        Method("qlora", lambda: LoraConfig(r=8, lora_alpha=16, target_modules=("c_attn",), quantize=True), 3e-3,
               "LoRA on a base stored as NF4 (double quantisation)"),
        Method("adapter", lambda: AdapterConfig(bottleneck=16, placement="houlsby"), 3e-3,
               "bottleneck adapters after attention and MLP, width 16"),
        Method("prefix", lambda: PrefixTuningConfig(num_virtual_tokens=VIRTUAL_TOKENS), 1e-2,
               "10 learned key/value prefixes per layer"),
        Method("prompt", lambda: PromptTuningConfig(num_virtual_tokens=VIRTUAL_TOKENS), 3e-2,
               "10 soft prompt embeddings"),
        Method("ia3", IA3Config, 1e-2, "learned rescaling of keys, values and MLP activations"),
        Method("dora", lambda: LoraConfig(r=8, lora_alpha=16, target_modules=("c_attn",), use_dora=True), 3e-3,
               "magnitude m times the direction of W0 + (alpha/r) B A, on c_attn"),
    )
}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)


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
