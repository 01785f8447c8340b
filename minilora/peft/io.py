"""Saving and loading adapters: minilora's own format, and Hugging Face PEFT's (detected on load).

    save_adapter(peft_model, "runs/lora")                    # adapter_config.json + adapter_model.npz
    save_adapter(peft_model, "runs/lora-hf", format="peft")  # adapter_config.json + adapter_model.safetensors
    peft_model = load_adapter(base_model, "runs/lora")       # either format; refuses another base

The files are described in minilora.peft.adapter_files (minilora's) and minilora.peft.peft_format
(PEFT's); the base fingerprint in minilora.peft.fingerprint. Loading never executes code (no pickle),
and a failed load leaves the model as it was.
"""

from __future__ import annotations

from minilora.nn import Module
from minilora.peft.adapter_files import (  # noqa: F401  (re-exported: the files' names and reader)
    CONFIG_FILE,
    FORMAT,
    FORMATS,
    VERSION,
    WEIGHTS_FILE,
    adapter_size,
    read_adapter,
    write_adapter,
)
from minilora.peft.attach import AdapterError
from minilora.peft.fingerprint import base_fingerprint
from minilora.peft.peft_model import PeftModel

__all__ = ["AdapterError", "adapter_size", "base_fingerprint", "load_adapter", "read_adapter", "save_adapter"]


def save_adapter(model: PeftModel, directory: str, adapter_name: str | None = None, format: str = "minilora",
                 extra_files: dict[str, str] | None = None, convert_to_lora: bool = False) -> int:
    """Write one adapter of ``model`` to ``directory`` (created if needed); returns its size on disk in bytes.

    ``extra_files`` ({name: text}) land in the same folder, in the same atomic unit. ``convert_to_lora``: a
    PiSSA / OLoRA adapter as an ordinary rank-2r LoRA on the original base (minilora.peft.lora_convert).
    """
    return model.save_adapter(directory, adapter_name, format=format, extra_files=extra_files,
                              convert_to_lora=convert_to_lora)


def load_adapter(
    model: Module, directory: str, adapter_name: str = "default", format: str | None = None, is_trainable: bool = False
) -> PeftModel:
    """Load a saved adapter onto ``model`` (a plain base model, or a PeftModel to add it to, not activated).

    Returns the PeftModel. Refuses (AdapterError) an adapter trained on another base (fingerprints differ),
    a different method family, or arrays that do not fit; on any failure the model is left unchanged.
    ``is_trainable=False`` loads the adapter frozen and returns the model in eval mode (dropout off), for
    inference, as PEFT. ``format=None`` detects it: Hugging Face
    PEFT's layout (adapter_config.json with peft_type + adapter_model.safetensors) or minilora's.
    """
    return PeftModel.from_pretrained(model, directory, adapter_name, is_trainable=is_trainable, format=format)

