"""Parameter-efficient fine-tuning: every method registered in minilora.peft.registry.

LoRA (QLoRA, DoRA, PiSSA, LoRA+), VeRA, IA3, bottleneck adapters, prefix and prompt tuning, and full
fine-tuning in the same API. Each method's config class is importable from here under its own name
(``from minilora.peft import LoraConfig``); the list comes from the registry.
"""

from minilora.peft import registry
from minilora.peft.adapter import BottleneckAdapter, ModulesToSave
from minilora.peft.base_layer import PeftLayer
from minilora.peft.config import PeftConfig, TaskType
from minilora.peft.ia3 import IA3Linear
from minilora.peft.io import base_fingerprint, load_adapter, save_adapter
from minilora.peft.lora import LoraLinear
from minilora.peft.lora_convert import convert_to_lora
from minilora.peft.loraplus import create_loraplus_optimizer
from minilora.peft.peft_model import PeftModel, get_peft_model
from minilora.peft.qlora import Linear4bit, quantize_model
from minilora.peft.targets import match_targets

registry.discover()
_CONFIGS = {m.config_cls.__name__: m.config_cls for m in registry.methods().values()}
globals().update(_CONFIGS)  # LoraConfig, IA3Config, ...: each method's config, named by the registry

__all__ = [
    "BottleneckAdapter", "IA3Linear", "Linear4bit", "LoraLinear", "ModulesToSave", "PeftConfig", "PeftLayer",
    "PeftModel", "TaskType", "base_fingerprint", "convert_to_lora", "create_loraplus_optimizer", "get_peft_model",
    "load_adapter", "match_targets", "quantize_model", "registry", "save_adapter", *sorted(_CONFIGS),
]
