"""The eight fine-tuning methods the demo compares, each with its config and its learning rate.

Every method trains under the same budget (steps, batch, window, AdamW, warmup then cosine
decay, no weight decay); only the learning rate differs, because the methods move very
different numbers of very differently scaled parameters. The rates come from a small sweep
on the demo itself (150 steps; two or three rates a factor of about 3 apart per method, e.g.
LoRA 3e-3 / 1e-2, full 1e-3 / 3e-3), keeping the best held-out accuracy (then loss):

=========  ==========================================================  ======  ===============================
method     config                                                      lr      why
=========  ==========================================================  ======  ===============================
full       FullFineTuneConfig()                                        1e-3    every weight moves; 3e-3 already
                                                                               damages the pre-trained ones
lora       LoraConfig(r=8, lora_alpha=16, target_modules=("c_attn",))  1e-2    B starts at 0: the update must
qlora      the same with quantize=True (NF4 base, double quant)        1e-2    grow from nothing, through a
dora       the same with use_dora=True (magnitude m trains too)        1e-2    scale alpha/r = 2
adapter    AdapterConfig(bottleneck=16, placement="houlsby")           1e-2    up-projection starts at 0
ia3        IA3Config() (k, v and MLP-activation scaling vectors)       1e-1    vectors of ones: 1e-2 per step
                                                                               is a 1% rescale
prefix     PrefixTuningConfig(num_virtual_tokens=10)                   1e-1    few numbers, far from the data
prompt     PromptTuningConfig(10, init="text")                         3e-1    the paper's rate; one input-side
                                                                               table, initialised from words
=========  ==========================================================  ======  ===============================

As the papers report, the parameter-efficient methods want a much larger rate than full
fine-tuning (LoRA's paper fine-tunes GPT-2 at 2e-4 against 5e-5 or less in full; prompt tuning
uses 0.3).
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
PROMPT_INIT_TEXT = "the answer follows"  # prompt tuning's start (the paper's best: words about the task)


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
        Method("lora", lambda: LoraConfig(r=8, lora_alpha=16, target_modules=("c_attn",)), 1e-2,
               "h = W0 x + (alpha/r) B A x on c_attn, r=8"),
        Method("qlora", lambda: LoraConfig(r=8, lora_alpha=16, target_modules=("c_attn",), quantize=True), 1e-2,
               "LoRA on a base stored as NF4 (double quantisation)"),
        Method("adapter", lambda: AdapterConfig(bottleneck=16, placement="houlsby"), 1e-2,
               "bottleneck adapters after attention and MLP, width 16"),
        Method("prefix", lambda: PrefixTuningConfig(num_virtual_tokens=VIRTUAL_TOKENS), 1e-1,
               "10 learned key/value prefixes per layer"),
        Method("prompt", lambda: PromptTuningConfig(num_virtual_tokens=VIRTUAL_TOKENS, init="text",
                                                    init_text=PROMPT_INIT_TEXT), 3e-1,
               "10 soft prompt embeddings, initialised from the embeddings of a sentence"),
        Method("ia3", IA3Config, 1e-1, "learned rescaling of keys, values and MLP activations"),
        Method("dora", lambda: LoraConfig(r=8, lora_alpha=16, target_modules=("c_attn",), use_dora=True), 1e-2,
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
