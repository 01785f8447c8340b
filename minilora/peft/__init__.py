"""Parameter-efficient fine-tuning: LoRA, QLoRA, DoRA, IA3, bottleneck adapters, prefix and prompt tuning."""

from minilora.peft.config import (
    AdapterConfig,
    IA3Config,
    LoraConfig,
    PeftConfig,
    PrefixTuningConfig,
    PromptTuningConfig,
)

__all__ = ["AdapterConfig", "IA3Config", "LoraConfig", "PeftConfig", "PrefixTuningConfig", "PromptTuningConfig"]
