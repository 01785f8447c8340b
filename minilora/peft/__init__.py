"""Parameter-efficient fine-tuning: LoRA, QLoRA, DoRA, IA3, bottleneck adapters, prefix and prompt tuning."""

from minilora.peft.adapter import BottleneckAdapter, ModulesToSave
from minilora.peft.base_layer import PeftLayer
from minilora.peft.config import (
    AdapterConfig,
    FullFineTuneConfig,
    IA3Config,
    LoraConfig,
    PeftConfig,
    PrefixTuningConfig,
    PromptTuningConfig,
    TaskType,
)
from minilora.peft.ia3 import IA3Linear
from minilora.peft.io import base_fingerprint, load_adapter, save_adapter
from minilora.peft.lora import LoraLinear
from minilora.peft.peft_model import PeftModel, get_peft_model
from minilora.peft.qlora import Linear4bit, quantize_model
from minilora.peft.targets import match_targets

__all__ = [
    "AdapterConfig", "BottleneckAdapter", "FullFineTuneConfig", "IA3Config", "IA3Linear", "LoraConfig", "LoraLinear",
    "ModulesToSave", "PeftConfig", "PeftLayer", "PeftModel", "PrefixTuningConfig", "PromptTuningConfig",
    "TaskType", "Linear4bit", "base_fingerprint", "get_peft_model", "load_adapter", "match_targets", "quantize_model",
    "save_adapter",
]
