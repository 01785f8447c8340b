"""The fine-tuning method registry: the one place that knows which methods exist.

Each method is one module under ``minilora/peft/methods/`` that calls ``register(Method(...))``
when it is imported; ``minilora.peft`` imports every module there, so adding a method is adding
a file. A ``Method`` says everything the rest of minilora asks about it:

- ``config_cls`` (its ``peft_type``) and ``inject(peft, adapter_name, config, activate)``, which wraps
  the layers and returns the plain names of the base parameters it trains;
- ``prepare(peft, adapter_name, config)``: the hook for state shared by all adapted layers,
  created on the PeftModel before injection (VeRA's frozen random projections);
- ``mergeable``, ``can_disable`` and ``one_adapter`` (full fine-tuning changes the base itself);
- ``options``: its command-line options, each setting one config field (``minilora finetune``);
- ``variants``: the names ``--method`` and the demo know (``lora``, ``qlora``, ``dora``, ...), each
  with its config settings, its ONE default learning rate and a one-line summary;
- ``exchange``: how it reads and writes Hugging Face PEFT's adapter folders (None: minilora's only);
- ``optimizer_groups(peft, config, lr, weight_decay)``: parameter groups when the method wants
  its own (LoRA+: B at a larger learning rate), else the default grouping;
- ``to_original_base(peft, adapter_name, initial_dir)``: for an initialisation that changed the base
  (PiSSA / OLoRA), the trained adapter re-expressed on the base as it was before (PEFT's
  ``path_initial_model_for_weight_conversion``); None when the method never changes the base;
- ``docs``: its page under docs/methods/.

get_peft_model, PeftModel, save_adapter/load_adapter, the PEFT-format reader/writer, the command
line, the demo and the tests all enumerate this registry; nothing else lists the methods.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from minilora.peft.config import PeftConfig


@dataclasses.dataclass(frozen=True)
class Option:
    """One command-line option of a method; its value (when given) sets config field ``field``."""

    flags: tuple[str, ...]
    field: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | None = None
    switch: bool = False  # a flag without a value (store_true)
    metavar: str | None = None
    also: dict[str, Any] = dataclasses.field(default_factory=dict)  # further fields set when the option is given

    @property
    def dest(self) -> str:
        return self.flags[0].lstrip("-").replace("-", "_")

    def add_to(self, group: Any) -> None:
        if self.switch:
            group.add_argument(*self.flags, dest=self.dest, action="store_true", default=None, help=self.help)
        else:
            group.add_argument(*self.flags, dest=self.dest, type=self.type, choices=self.choices, default=None,
                               metavar=self.metavar, help=self.help)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Variant:
    """A name ``--method`` and the demo accept: a method with some config fields fixed, and its learning rate."""

    name: str
    lr: float  # the one default learning rate (command line and demo alike)
    summary: str
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    weight_decay: float = 0.0  # the command line's default (the demo trains every method without decay)
    docs: str = ""  # its own page, when it has one (else the method's)
    demo_settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # what only the demo adds (init text)


@dataclasses.dataclass(frozen=True)
class Method:
    """One fine-tuning method (see the module docstring)."""

    config_cls: type[PeftConfig]
    inject: Callable[[Any, str, Any, bool], list[str]]
    variants: tuple[Variant, ...]
    docs: str
    mergeable: bool = False
    can_disable: bool = True
    one_adapter: bool = False
    options: tuple[Option, ...] = ()
    prepare: Callable[[Any, str, Any], None] | None = None
    exchange: Any = None  # an object with to_peft(peft, name) and from_peft(config_dict, tensors, source)
    optimizer_groups: Callable[[Any, Any, float, float], list[dict[str, Any]] | None] | None = None
    loading_config: Callable[[Any], Any] | None = None  # the config to build with when loading saved weights
    to_original_base: Callable[[Any, str, str | None], Any] | None = None  # PiSSA -> LoRA on the original base
    prepends_tokens: bool = False  # its virtual tokens take places in the context window (prompt tuning)
    order: int = 50  # where it stands in tables (the baseline first)

    @property
    def peft_type(self) -> str:
        return self.config_cls.peft_type

    @property
    def name(self) -> str:
        return self.variants[0].name

    def config(self, variant: str | None = None, **fields: Any) -> PeftConfig:
        """A config of this method: the variant's settings (default: the first variant), then ``fields``."""
        v = self.variants[0] if variant is None else next(x for x in self.variants if x.name == variant)
        return self.config_cls(**{**v.settings, **fields})


_METHODS: dict[str, Method] = {}
_discovered = False


def register(method: Method) -> Method:
    """Add a method (called by its module under minilora/peft/methods/ when imported)."""
    known = {v.name for m in _METHODS.values() if m.peft_type != method.peft_type for v in m.variants}
    clash = sorted(known & {v.name for v in method.variants})
    if clash:
        raise ValueError(f"register: method variant name(s) {clash} are already registered")
    _METHODS[method.peft_type] = method
    return method


def discover() -> None:
    """Import every module of minilora.peft.methods (each registers itself); done once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module("minilora.peft.methods")
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)


def methods() -> dict[str, Method]:
    """Every registered method by peft_type, in table order (``Method.order``, then peft_type)."""
    discover()
    return {m.peft_type: m for m in sorted(_METHODS.values(), key=lambda m: (m.order, m.peft_type))}


def variants() -> dict[str, tuple[Method, Variant]]:
    """Every ``--method`` / demo name -> (its method, its variant), in table order."""
    return {v.name: (m, v) for m in methods().values() for v in m.variants}


def get_variant(name: str) -> tuple[Method, Variant]:
    """The method and variant called ``name``, or a one-line error listing the registered ones."""
    table = variants()
    if name not in table:
        raise ValueError(f"unknown fine-tuning method {name!r}; registered methods: {', '.join(table)}")
    return table[name]


def method_of(config: Any) -> Method:
    """The method a config belongs to (by its peft_type)."""
    table = methods()
    kind = getattr(config, "peft_type", config)
    if kind not in table:
        raise ValueError(f"unknown peft_type {kind!r}; registered methods: {', '.join(table)}")
    return table[kind]


def config_from_args(method: Method, variant: Variant, args: Any) -> PeftConfig:
    """The config that parsed command-line ``args`` describe: the variant's settings, then each given option."""
    fields = dict(variant.settings)
    for opt in method.options:
        value = getattr(args, opt.dest, None)
        if value is not None:
            fields.update({**opt.also, opt.field: value})
    return method.config_cls(**fields)


def parse_targets(text: str) -> str | tuple[str, ...]:
    """``--targets``: "c_attn,mlp.c_proj" -> names or suffixes, "all-linear", or "re:REGEX" (a full match)."""
    if text == "all-linear":
        return text
    if text.startswith("re:"):
        return text[3:]
    return tuple(t.strip() for t in text.split(",") if t.strip())


TARGETS_HELP = ("comma-separated module names or suffixes (default: the model family's), 'all-linear', or "
                "'re:REGEX' (full match against module paths)")
