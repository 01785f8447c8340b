"""The model-family registry: the one place where a model architecture says what it is.

A ``Family`` binds a config class, its language-model and sequence-classifier classes,
its Hugging Face converter (a module with ``from_pretrained(folder)`` and
``save_pretrained(model, folder)``, imported on use so that the models never import
``minilora.hf``), and the facts the fine-tuning methods need about it:

- ``lora_targets``: LoRA's default target modules (PEFT's defaults for the architecture);
- ``ia3_targets`` / ``ia3_feedforward``: IA3's defaults, and which of them are feed-forward
  (scaled on their input; the others on their output);
- ``ia3_fused_kv``: projections whose output is [q | k | v] side by side (IA3 scales k and v only);
- ``adapter_sites``: for "attn" and "mlp", a regex matching the sublayer paths a bottleneck adapter wraps;
- ``embed_path``: the token embedding (prompt tuning's text init reads it);
- ``tied_weights(config_dict)``: state-dict names that are one Parameter (checkpoints check they agree);
- ``hf_conv1d``: modules transformers stores as Conv1D (weight (in, out); PEFT's fan_in_fan_out);
- ``num_kv_heads(config)`` / ``head_dim(config)``: the key/value heads and their width (prefix tuning);
- ``sized``: builds a config from generic sizes (``sized_config``: ``minilora pretrain --family``, the demo).

Everything that varies with the architecture (checkpoints, the command line, PEFT,
analysis, the demo) asks ``family_of(model)`` instead of testing class names.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any


def _kv_heads(config: Any) -> int:
    return int(getattr(config, "n_kv_head", config.n_head))


def _untied(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return ()


def _head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", config.n_embd // config.n_head))


@dataclasses.dataclass(frozen=True)
class Family:
    """One model architecture and what the rest of minilora needs to know about it."""

    name: str
    config_cls: type
    lm_cls: type
    classifier_cls: type
    hf_model_types: tuple[str, ...]  # config.json model_type values this family reads (the first one it writes)
    hf_module: str  # dotted module holding from_pretrained(folder, ...) and save_pretrained(model, folder, ...)
    lora_targets: tuple[str, ...]
    ia3_targets: tuple[str, ...]
    ia3_feedforward: tuple[str, ...]
    adapter_sites: dict[str, str]  # "attn" / "mlp" -> regex over module paths
    embed_path: str
    ia3_fused_kv: tuple[str, ...] = ()
    hf_conv1d: tuple[str, ...] = ()  # modules transformers stores as Conv1D, weight (in, out): PEFT's fan_in_fan_out
    tied_weights: Callable[[dict[str, Any]], tuple[tuple[str, str], ...]] = _untied  # config dict -> name pairs
    num_kv_heads: Callable[[Any], int] = _kv_heads
    head_dim: Callable[[Any], int] = _head_dim
    sized: Callable[..., Any] | None = None  # the generic sizes (see sized_config) -> this family's config

    @property
    def hf(self) -> Any:
        """The Hugging Face converter module (imported on first use: it needs the ``[hf]`` extra's packages)."""
        return importlib.import_module(self.hf_module)

    def from_pretrained(self, folder: Any, **kwargs: Any) -> Any:
        return self.hf.from_pretrained(folder, **kwargs)

    def save_pretrained(self, model: Any, folder: Any, **kwargs: Any) -> None:
        self.hf.save_pretrained(model, folder, **kwargs)

    def build(self, config: Any, num_classes: int | None = None) -> Any:
        """A fresh, initialised model: the classifier when num_classes is given, else the language model."""
        if isinstance(config, dict):
            config = self.config_cls.from_dict(config)
        if not isinstance(config, self.config_cls):
            raise TypeError(f"family {self.name!r}: expected a {self.config_cls.__name__}, got {type(config).__name__}")
        return self.lm_cls(config) if num_classes is None else self.classifier_cls(config, num_classes)

    def sized_config(
        self, vocab_size: int, n_layer: int, n_head: int, n_embd: int, block_size: int, dropout: float = 0.0,
        n_kv_head: int | None = None, intermediate_size: int | None = None, bias: bool | None = None,
    ) -> Any:
        """A config of this family from the sizes every family has (pretrain's flags, the demo's settings).

        n_kv_head (None: n_head) and intermediate_size (None: the family's rule, Llama's 8/3 n_embd
        rounded to 8, GPT-2's 4 n_embd) apply where the family has them; asking for one it lacks is an error.
        """
        if self.sized is None:
            raise ValueError(f"family {self.name!r} cannot be built from generic sizes")
        return self.sized(vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                          dropout=dropout, n_kv_head=n_kv_head, intermediate_size=intermediate_size, bias=bias)

    def is_classifier(self, model: Any) -> bool:
        return isinstance(model, self.classifier_cls)


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add a family (a second registration under the same name is refused)."""
    if family.name in _FAMILIES and _FAMILIES[family.name] is not family:
        raise ValueError(f"register: a model family named {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    for cls in (family.lm_cls, family.classifier_cls):  # GPT.from_pretrained / save_pretrained use this binding
        cls.model_family = family
    return family


def families() -> dict[str, Family]:
    """Every registered family by name, in registration order."""
    return dict(_FAMILIES)


def get_family(name: str) -> Family:
    """The family called ``name``, or a one-line error listing the registered ones."""
    if name not in _FAMILIES:
        raise ValueError(f"unknown model family {name!r}; registered families: {', '.join(_FAMILIES)}")
    return _FAMILIES[name]


def family_for_model_type(model_type: str, source: str = "config.json") -> Family:
    """The family that reads Hugging Face ``model_type``, or a one-line error listing the supported ones."""
    for fam in _FAMILIES.values():
        if model_type in fam.hf_model_types:
            return fam
    supported = [t for fam in _FAMILIES.values() for t in fam.hf_model_types]
    raise ValueError(f"{source}: model_type {model_type!r} is not supported (supported: {', '.join(supported)})")


def family_of(obj: Any) -> Family:
    """The family of a model, a PEFT-wrapped model, a config, or a config dict (its "family" key; none = gpt2)."""
    if isinstance(obj, Family):
        return obj
    if isinstance(obj, str):
        return get_family(obj)
    if isinstance(obj, dict):
        if "family" in obj:
            return get_family(obj["family"])
        if "model_type" in obj:
            return family_for_model_type(obj["model_type"], source="config dict")
        return get_family("gpt2")  # checkpoints from before families were recorded
    config = obj if not hasattr(obj, "config") else obj.config
    base = getattr(obj, "base_model", None)  # a PeftModel: ask its base
    if base is not None and base is not obj and hasattr(base, "config"):
        config = base.config
    for fam in _FAMILIES.values():  # the exact class first: a subclass may be a family of its own (Qwen2)
        if type(config) is fam.config_cls:
            return fam
    for fam in _FAMILIES.values():
        if isinstance(config, fam.config_cls):
            return fam
    raise ValueError(
        f"family_of: {type(obj).__name__} belongs to no registered model family ({', '.join(_FAMILIES)})"
    )


def build_model(config: Any, num_classes: int | None = None) -> Any:
    """A fresh model from a config or a config dict; a dict's "family" key (default gpt2) picks the family.

    ``build_model({"family": "llama", "vocab_size": 100, ...})``; ``num_classes`` builds the classifier.
    """
    fam = family_of(config)
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in ("family", "model_type")}
    return fam.build(config, num_classes)
