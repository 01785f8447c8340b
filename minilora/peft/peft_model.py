"""PeftModel and get_peft_model: one API over every fine-tuning method.

get_peft_model(model, config) freezes every base parameter, then asks the method registry
(minilora.peft.registry) for the config's method and calls its injection function: LoRA and IA3
wrap Linear layers, adapters wrap sublayers, prefix/prompt tuning add an encoder in
``prompt_encoder`` whose ``forward_kwargs(batch_size)`` (prefix_kv or prompt_embeds) is passed to
every forward and generate, full fine-tuning unfreezes everything. A method's state shared by all
its layers (VeRA's projections) lives in ``shared`` (the method's ``prepare`` hook creates it).

Names carry no wrapper prefix: PeftModel.named_parameters() yields the base model's own paths
("transformer.h.0.attn.c_attn.lora_A"), plus "prompt_encoder.<adapter>.<...>" for virtual tokens.
One method family per PeftModel: several named adapters of the same kind can be added and switched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from minilora.autograd import no_grad
from minilora.nn import Module, ModuleDict, Parameter, all_or_nothing
from minilora.optim import param_groups
from minilora.peft import adapter_files
from minilora.peft.adapter import ModulesToSave
from minilora.peft.attach import attach
from minilora.peft.base_layer import PeftLayer, wrapped_getattr
from minilora.peft.config import PeftConfig
from minilora.peft.fingerprint import base_fingerprint, check_fingerprint, plain_name
from minilora.peft.linear4bit import Linear4bit
from minilora.peft.peft_names import PeftNames
from minilora.peft.registry import Method, method_of, methods
from minilora.peft.targets import match_targets


def get_peft_model(
    model: Module, config: PeftConfig, adapter_name: str = "default", tokenizer: Any = None
) -> PeftModel:
    """Wrap ``model``: base parameters frozen, the method's new parameters trainable (see the module docstring).

    ``tokenizer`` is only needed by prompt tuning initialised from text (PromptTuningConfig(init="text")).
    """
    return PeftModel(model, config, adapter_name, tokenizer=tokenizer)


class PeftModel(PeftNames, Module):
    """A base model plus named adapters; forward and generate delegate to the base model.

    PEFT's names (from_pretrained, save_pretrained, merge_adapter, ...) come from PeftNames.
    """

    def __init__(self, model: Module, config: PeftConfig, adapter_name: str = "default", tokenizer: Any = None) -> None:
        if isinstance(model, PeftModel):
            raise TypeError("get_peft_model: the model is already a PeftModel; use add_adapter() for another adapter")
        if not isinstance(config, PeftConfig):
            raise TypeError(f"get_peft_model: config must be a PeftConfig (LoraConfig, ...), "
                            f"got {type(config).__name__}")
        super().__init__()
        self.base_model = model
        self.prompt_encoder = ModuleDict()  # the active virtual-token encoder (prefix / prompt tuning)
        self.shared = ModuleDict()  # adapter name -> state shared by all its layers (VeRA's projections)
        self.peft_config: dict[str, PeftConfig] = {}
        self.active_adapter = adapter_name
        self.base_fingerprint = base_fingerprint(model)  # before anything changes (quantisation, training)
        self.original_base_fingerprint = self.base_fingerprint  # stays the model's when PiSSA moves the former
        self._aside_encoders: dict[str, Module] = {}
        self._trained_base: dict[str, list[str]] = {}  # adapter -> plain names of base params it trains
        self._original_flags = [(p, p.requires_grad) for p in model.parameters()]
        self._disabled = False
        self.tokenizer = tokenizer
        with all_or_nothing(model):  # a failure leaves the base exactly as it was (types, weights, flags)
            model.requires_grad_(False)
            self.add_adapter(adapter_name, config)

    # ------------------------------------------------------------------ naming without a wrapper prefix
    def named_modules(
        self, memo: set[int] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        memo = set() if memo is None else memo
        memo.add(id(self))
        yield prefix, self
        yield from self.base_model.named_modules(memo, prefix, remove_duplicate)
        for attr in ("prompt_encoder", "shared"):
            yield from getattr(self, attr).named_modules(memo, f"{prefix}.{attr}" if prefix else attr, remove_duplicate)

    def get_submodule(self, target: str) -> Module:
        if target.partition(".")[0] in ("prompt_encoder", "shared"):
            return super().get_submodule(target)
        return self.base_model.get_submodule(target)

    def set_submodule(self, target: str, module: Module) -> None:
        self.base_model.set_submodule(target, module)

    def __getattr__(self, name: str) -> Any:
        return wrapped_getattr(self, name, "base_model")  # config, lm_head, transformer, ... of the base model

    # ------------------------------------------------------------------ layers
    def peft_layers(self) -> list[tuple[str, PeftLayer]]:
        return [(n, m) for n, m in self.base_model.named_modules() if isinstance(m, PeftLayer)]

    @property
    def method(self) -> str:
        """The peft_type of this model's adapters ("LORA", "IA3", "ADAPTER", "PREFIX_TUNING", ...)."""
        return next(iter(self.peft_config.values())).peft_type

    def _method(self, adapter_name: str | None = None) -> Method:
        return method_of(self.peft_config[self.active_adapter if adapter_name is None else adapter_name])

    # ------------------------------------------------------------------ adapters
    def add_adapter(self, adapter_name: str, config: PeftConfig) -> None:
        """Add a named adapter (inactive unless it is the first one; use set_adapter to switch)."""
        if adapter_name in self.peft_config:
            raise ValueError(f"add_adapter: an adapter named {adapter_name!r} already exists")
        method = method_of(config)
        if self.peft_config:
            first = next(iter(self.peft_config.values()))
            if type(first) is not type(config) or method.one_adapter:
                raise ValueError(
                    f"add_adapter: this PeftModel holds {type(first).__name__} adapters; one method family per "
                    f"PeftModel (got {type(config).__name__}); wrap another copy of the base model instead"
                )
        activate = not self.peft_config
        with all_or_nothing(self):  # the per-method injection may stop half-way: everything is rolled back
            self.peft_config[adapter_name] = config
            if method.prepare is not None:
                method.prepare(self, adapter_name, config)
            trained = method.inject(self, adapter_name, config, activate)
            paths = getattr(config, "modules_to_save", ())
            if paths:
                paths = match_targets(self.base_model, paths, linear_only=False, method="modules_to_save")
                self.add_modules_to_save(adapter_name, paths, activate)
            self._trained_base[adapter_name] = trained

    # ------------------------------------------------------------------ what injection functions use
    def wrap(self, path: str, make: Any) -> PeftLayer:
        """The PEFT layer at ``path``, creating it (``make(module)``) around the module there if needed."""
        module = self.base_model.get_submodule(path)
        if isinstance(module, PeftLayer):
            return module
        layer = make(module)
        layer.active_adapter = self.active_adapter
        layer.train(module.training)
        self.base_model.set_submodule(path, layer)
        return layer

    def add_modules_to_save(self, adapter_name: str, paths: list[str], activate: bool) -> None:
        """Give adapter ``adapter_name`` its own trainable copy of each module at ``paths``."""
        for path in paths:
            layer = self.wrap(path, ModulesToSave)
            if not isinstance(layer, ModulesToSave):
                raise ValueError(f"modules_to_save: {path} is already adapted by {type(layer).__name__}")
            layer.add_adapter(adapter_name, activate)

    def unfreeze_biases(self, paths: list[str] | None) -> list[str]:
        """Unfreeze the biases of ``paths`` (None: every bias of the model); their plain names."""
        names = []
        for n, p in self.base_model.named_parameters():
            name = plain_name(n)
            owner = name.rpartition(".")[0]
            if name.rpartition(".")[2] == "bias" and (paths is None or owner in paths):
                p.requires_grad_(True)
                names.append(name)
        return names

    def add_encoder(self, adapter_name: str, encoder: Module, activate: bool) -> None:
        """A virtual-token encoder (prefix / prompt tuning): trainable, in ``prompt_encoder`` when active."""
        encoder.requires_grad_(True)
        if activate:
            self.prompt_encoder[adapter_name] = encoder
        else:
            self._aside_encoders[adapter_name] = encoder

    def add_shared(self, adapter_name: str, module: Module) -> None:
        """State shared by all of an adapter's layers (frozen; saved with the adapter), under ``shared``."""
        module.requires_grad_(False)
        self.shared[adapter_name] = module

    def _check_name(self, adapter_name: str, what: str) -> None:
        if adapter_name not in self.peft_config:
            raise ValueError(f"{what}: no adapter named {adapter_name!r}; adapters: {list(self.peft_config)}")

    def set_adapter(self, adapter_name: str) -> None:
        """Make ``adapter_name`` the active adapter (its tensors become the registered, trainable ones)."""
        self._check_name(adapter_name, "set_adapter")
        if adapter_name == self.active_adapter:
            return
        for _, layer in self.peft_layers():
            layer.set_adapter(adapter_name)
        for old in list(self.prompt_encoder):
            self._aside_encoders[old] = self.prompt_encoder[old]
            del self.prompt_encoder[old]
        if adapter_name in self._aside_encoders:
            encoder = self._aside_encoders.pop(adapter_name)
            self.prompt_encoder[adapter_name] = encoder.to(self.base_model.device)
        self.active_adapter = adapter_name

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an inactive adapter; layers left without any adapter get their base module back."""
        self._check_name(adapter_name, "delete_adapter")
        if adapter_name == self.active_adapter:
            raise ValueError(
                f"delete_adapter: {adapter_name!r} is the active adapter; set_adapter() to another one first"
            )
        for path, layer in self.peft_layers():
            layer.delete_adapter(adapter_name)
            if not layer.settings:
                self.base_model.set_submodule(path, layer.base_layer)
        self._aside_encoders.pop(adapter_name, None)
        if adapter_name in self.shared:
            del self.shared[adapter_name]
        self.peft_config.pop(adapter_name)
        self._trained_base.pop(adapter_name, None)

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Inside this block the model computes the base model's outputs (modules_to_save use the originals)."""
        if not self._method().can_disable:
            raise ValueError(f"disable_adapter: {type(self.peft_config[self.active_adapter]).__name__} changes the "
                             "base weights; no adapter to disable")
        layers = [layer for _, layer in self.peft_layers()]
        merged = [layer for layer in layers if layer.merged]
        if merged:
            raise RuntimeError("disable_adapter: adapters are merged into the base weights; unmerge() first")
        saved = [layer.disabled for layer in layers]
        self._disabled = True
        for layer in layers:
            layer.disabled = True
        try:
            yield
        finally:
            self._disabled = False
            for layer, flag in zip(layers, saved):
                layer.disabled = flag

    # ------------------------------------------------------------------ forward and generation
    def _virtual_kwargs(self, idx: Any) -> dict[str, Any]:
        if self._disabled or self.active_adapter not in self.prompt_encoder:
            return {}
        batch = idx.shape[0] if hasattr(idx, "shape") else len(idx)
        return self.prompt_encoder[self.active_adapter].forward_kwargs(batch)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The base model's forward, plus the active prefix/prompt adapter's keyword arguments."""
        idx = args[0] if args else kwargs.get("idx")
        if idx is not None:
            kwargs = {**self._virtual_kwargs(idx), **kwargs}
        return self.base_model(*args, **kwargs)

    def generate(self, idx: Any, max_new_tokens: int, **kwargs: Any) -> Any:
        """The base model's generate, with the active prefix/prompt adapter's keyword arguments."""
        with no_grad():
            kwargs = {**self._virtual_kwargs(idx), **kwargs}
        return self.base_model.generate(idx, max_new_tokens, **kwargs)

    # ------------------------------------------------------------------ merging
    def _mergeable(self, what: str) -> None:
        if not self._method().mergeable:
            kind = type(self.peft_config[self.active_adapter]).__name__
            able = [m.config_cls.__name__ for m in methods().values() if m.mergeable]
            raise ValueError(f"{what}: {kind} adapters cannot be merged (those of {', '.join(able)} can)")

    def merge(self) -> None:
        """Fold the active adapter into the base weights in place (undo with unmerge())."""
        self._mergeable("merge")
        for _, layer in self.peft_layers():
            layer.merge()

    def unmerge(self) -> None:
        for _, layer in self.peft_layers():
            layer.unmerge()

    def merge_and_unload(self) -> Module:
        """The plain base model with the active adapter merged into its Linear layers (this wrapper is spent)."""
        self._mergeable("merge_and_unload")
        return self._unload(merge=True)

    def unload(self) -> Module:
        """The plain base model without any adapter (modules back at their paths, flags restored)."""
        return self._unload(merge=False)

    def _unload(self, merge: bool) -> Module:
        for path, layer in self.peft_layers():
            self.base_model.set_submodule(path, layer.unloaded(merge))
        original = {id(p): flag for p, flag in self._original_flags}
        for p in self.base_model.parameters():  # new merged Linears and trained copies train like plain weights
            p.requires_grad_(original.get(id(p), True))
        return self.base_model

    # ------------------------------------------------------------------ counting and saving
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, all): all counts base and adapter parameters, tied ones once, NF4 weights as weights."""
        trainable = sum(p.size for p in self.parameters() if p.requires_grad)
        total = sum(p.size for p in self.parameters())
        for m in self.modules():
            if isinstance(m, Linear4bit):  # its weight is buffers, not a parameter
                total += m.in_features * m.out_features
        return trainable, total

    def print_trainable_parameters(self) -> None:
        """Print ``trainable params: 12,288 || all params: 1,234,567 || trainable%: 0.9953``."""
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}")

    def adapter_state(self, adapter_name: str | None = None) -> dict[str, Parameter]:
        """The parameters that make up one adapter, by plain name (no adapter name, no wrapper segments)."""
        name = self.active_adapter if adapter_name is None else adapter_name
        self._check_name(name, "adapter_state")
        out: dict[str, Parameter] = {}
        for path, layer in self.peft_layers():
            for local, p in layer.adapter_parameters(name).items():
                out[f"{path}.{local}"] = p
        encoder = self.prompt_encoder[name] if name in self.prompt_encoder else self._aside_encoders.get(name)
        if encoder is not None:
            out.update({f"prompt_encoder.{n}": p for n, p in encoder.named_parameters()})
        out.update(self.frozen_adapter_state(name))
        base = {plain_name(n): p for n, p in self.base_model.named_parameters()}
        for n in self._trained_base.get(name, []):
            out[n] = base[n]
        return out

    def frozen_adapter_state(self, adapter_name: str | None = None) -> dict[str, Parameter]:
        """The adapter's saved but never trained tensors (its ``shared`` state), by name."""
        name = self.active_adapter if adapter_name is None else adapter_name
        if name not in self.shared:
            return {}
        return {f"shared.{n}": p for n, p in self.shared[name].named_parameters()}

    def optimizer_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer: the method's own (LoRA+), else decay on matrices only."""
        method = self._method()
        if method.optimizer_groups is not None:
            groups = method.optimizer_groups(self, self.peft_config[self.active_adapter], lr, weight_decay)
            if groups is not None:
                return groups
        return param_groups(self, weight_decay, lr)

    @property
    def base_changed(self) -> bool:
        """True when initialising the adapter replaced the base weights (PiSSA / OLoRA: the residual): its saved
        adapter then fits only that residual, unless saved with ``convert_to_lora=True``."""
        return self.base_fingerprint != self.original_base_fingerprint

    def save_adapter(self, directory: str, adapter_name: str | None = None, format: str = "minilora",
                     extra_files: dict[str, str] | None = None, convert_to_lora: bool = False,
                     path_initial_model_for_weight_conversion: str | None = None) -> int:
        """Write the adapter (config JSON + weights, never pickle) to ``directory``; returns its bytes on disk.

        ``extra_files`` ({name: text}) land in the same folder, in the same atomic unit. ``convert_to_lora``
        (or an initial adapter's folder, ``path_initial_model_for_weight_conversion``, as in PEFT): a PiSSA /
        OLoRA adapter is written as an ordinary rank-2r LoRA on the ORIGINAL base (minilora.peft.lora_convert),
        nothing in this model changes, and nothing is written if the conversion is refused.
        """
        source: Any = self
        if convert_to_lora or path_initial_model_for_weight_conversion is not None:
            name = self.active_adapter if adapter_name is None else adapter_name
            self._check_name(name, "save_adapter")
            convert = self._method(name).to_original_base
            if convert is None:
                raise ValueError(f"save_adapter(convert_to_lora=True): {type(self.peft_config[name]).__name__} "
                                 "adapters never change the base; save them without convert_to_lora")
            source, adapter_name = convert(self, name, path_initial_model_for_weight_conversion), None
        return adapter_files.write_adapter(source, directory, adapter_name, format=format, extra_files=extra_files)

    def load_adapter(
        self, directory: str, adapter_name: str = "default", format: str | None = None, is_trainable: bool = False
    ) -> str:
        """Add the adapter saved in ``directory`` as ``adapter_name`` (not activated); refuses another base."""
        saved = adapter_files.read_saved(directory, format)
        if saved.checks_fingerprint:
            check_fingerprint(self.base_fingerprint, saved.fingerprint, saved.directory, saved.original_fingerprint)
        saved.check_targets(self.base_model)
        attach(self, saved.config, saved.build, adapter_name, saved.arrays, saved.directory, is_trainable, PeftModel)
        return adapter_name

    @classmethod
    def from_pretrained(
        cls, model: Module, directory: str, adapter_name: str = "default", is_trainable: bool = False,
        format: str | None = None,
    ) -> PeftModel:
        """The adapter saved in ``directory`` on ``model`` (a plain model, or a PeftModel to add it to), in eval
        mode unless ``is_trainable`` (as PEFT). Reads minilora's format and PEFT's (detected); refuses an
        adapter of another base; on any failure the model is left as it was."""
        if isinstance(model, PeftModel):
            model.load_adapter(directory, adapter_name, format=format, is_trainable=is_trainable)
            return model if is_trainable else model.eval()
        saved = adapter_files.read_saved(directory, format)
        if saved.checks_fingerprint:
            check_fingerprint(base_fingerprint(model), saved.fingerprint, saved.directory, saved.original_fingerprint)
        saved.check_targets(model)
        peft = attach(model, saved.config, saved.build, adapter_name, saved.arrays, saved.directory, is_trainable,
                      cls)  # fmt: skip
        return peft if is_trainable else peft.eval()  # for inference, as Hugging Face: dropout off
