"""PeftModel and get_peft_model: one API over every fine-tuning method.

get_peft_model(model, config) freezes every base parameter, then injects the method:

- LoraConfig (LoRA, rsLoRA, DoRA; QLoRA with quantize=True): the targeted Linear layers become LoraLinear;
- IA3Config: the targeted Linear layers become IA3Linear;
- AdapterConfig: every block's attn (houlsby) and mlp become BottleneckAdapter;
- PrefixTuningConfig / PromptTuningConfig: an encoder module in ``prompt_encoder`` whose
  ``forward_kwargs(batch_size)`` (prefix_kv or prompt_embeds) is passed to every forward and generate;
- FullFineTuneConfig: nothing is injected and everything trains (the baseline, same API).

Names carry no wrapper prefix: PeftModel.named_parameters() yields the base model's own paths
("transformer.h.0.attn.c_attn.lora_A"), plus "prompt_encoder.<adapter>.<...>" for virtual tokens.
One method family per PeftModel: several named adapters of the same kind can be added and switched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from minilora.nn import LayerNorm, Linear, Module, ModuleDict, Parameter, all_or_nothing
from minilora.peft.adapter import BottleneckAdapter, ModulesToSave
from minilora.peft.base_layer import PeftLayer, trained_dtype
from minilora.peft.config import (
    AdapterConfig,
    FullFineTuneConfig,
    IA3Config,
    LoraConfig,
    PeftConfig,
    PrefixTuningConfig,
    PromptTuningConfig,
)
from minilora.peft.ia3 import IA3Linear
from minilora.peft.lora import LoraLinear
from minilora.peft.peft_names import PeftNames
from minilora.peft.targets import match_targets

VIRTUAL_TOKEN_CONFIGS = (PrefixTuningConfig, PromptTuningConfig)


def get_peft_model(
    model: Module, config: PeftConfig, adapter_name: str = "default", tokenizer: Any = None
) -> PeftModel:
    """Wrap ``model``: base parameters frozen, the method's new parameters trainable (see the module docstring).

    ``tokenizer`` is only needed by prompt tuning initialised from text (PromptTuningConfig(init="text")).
    """
    return PeftModel(model, config, adapter_name, tokenizer=tokenizer)


def plain_name(name: str) -> str:
    """A parameter's name in the plain base model: PEFT wrappers' ".base_layer" segments removed."""
    return name.replace(".base_layer.", ".").replace(".base_layer", "")


class PeftModel(PeftNames, Module):
    """A base model plus named adapters; forward and generate delegate to the base model.

    PEFT's names (from_pretrained, save_pretrained, merge_adapter, ...) come from PeftNames.
    """

    def __init__(self, model: Module, config: PeftConfig, adapter_name: str = "default", tokenizer: Any = None) -> None:
        from minilora.peft.io import base_fingerprint  # noqa: PLC0415  (io imports this module)

        if isinstance(model, PeftModel):
            raise TypeError("get_peft_model: the model is already a PeftModel; use add_adapter() for another adapter")
        if not isinstance(config, PeftConfig):
            raise TypeError(f"get_peft_model: config must be a PeftConfig (LoraConfig, ...), "
                            f"got {type(config).__name__}")
        super().__init__()
        self.base_model = model
        self.prompt_encoder = ModuleDict()  # the active virtual-token encoder (prefix / prompt tuning)
        self.peft_config: dict[str, PeftConfig] = {}
        self.active_adapter = adapter_name
        self.base_fingerprint = base_fingerprint(model)  # before anything changes (quantisation, training)
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
        pre = f"{prefix}.prompt_encoder" if prefix else "prompt_encoder"
        yield from self.prompt_encoder.named_modules(memo, pre, remove_duplicate)

    def get_submodule(self, target: str) -> Module:
        if target == "prompt_encoder" or target.startswith("prompt_encoder."):
            return super().get_submodule(target)
        return self.base_model.get_submodule(target)

    def set_submodule(self, target: str, module: Module) -> None:
        self.base_model.set_submodule(target, module)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__.get("_modules", {}).get("base_model")
            if base is None:
                raise
            return getattr(base, name)  # config, lm_head, transformer, ... of the base model

    # ------------------------------------------------------------------ layers
    def peft_layers(self) -> list[tuple[str, PeftLayer]]:
        return [(n, m) for n, m in self.base_model.named_modules() if isinstance(m, PeftLayer)]

    @property
    def method(self) -> str:
        """The peft_type of this model's adapters ("LORA", "IA3", "ADAPTER", "PREFIX_TUNING", ...)."""
        return next(iter(self.peft_config.values())).peft_type

    # ------------------------------------------------------------------ adapters
    def add_adapter(self, adapter_name: str, config: PeftConfig) -> None:
        """Add a named adapter (inactive unless it is the first one; use set_adapter to switch)."""
        if adapter_name in self.peft_config:
            raise ValueError(f"add_adapter: an adapter named {adapter_name!r} already exists")
        if self.peft_config:
            first = next(iter(self.peft_config.values()))
            if type(first) is not type(config) or isinstance(config, FullFineTuneConfig):
                raise ValueError(
                    f"add_adapter: this PeftModel holds {type(first).__name__} adapters; one method family per "
                    f"PeftModel (got {type(config).__name__}); wrap another copy of the base model instead"
                )
            if isinstance(config, LoraConfig) and config.quantize != first.quantize:
                raise ValueError("add_adapter: every LoRA adapter of a PeftModel must agree on quantize (QLoRA)")
        activate = not self.peft_config
        with all_or_nothing(self):  # the per-method injection may stop half-way: everything is rolled back
            self.peft_config[adapter_name] = config
            self._inject(adapter_name, config, activate)

    def _inject(self, name: str, config: PeftConfig, activate: bool) -> None:
        base = self.base_model
        trained: list[str] = []
        if isinstance(config, FullFineTuneConfig):
            base.requires_grad_(True)
            trained = [n for n, _ in base.named_parameters()]
        elif isinstance(config, LoraConfig):
            paths = match_targets(base, config.target_modules, method="LoRA")
            if config.quantize:  # QLoRA: the whole base's Linear layers (but the heads) are stored as NF4
                from minilora.peft.qlora import quantize_model  # noqa: PLC0415

                plain = [p for p in match_targets(base, "all-linear") if isinstance(base.get_submodule(p), Linear)]
                if plain:
                    quantize_model(base, plain, block_size=config.quant_block_size, double_quant=config.double_quant)
            for path in paths:
                layer = self._wrap(path, LoraLinear)
                layer.add_adapter(name, config, activate)
            if config.bias != "none":
                trained = self._unfreeze_biases(paths if config.bias == "lora_only" else None)
        elif isinstance(config, IA3Config):
            ffn = config.feedforward_modules
            ff = set(match_targets(base, ffn, method="IA3") if ffn else ())
            for path in match_targets(base, config.target_modules, method="IA3"):
                kv = path.rpartition(".")[2] == "c_attn"
                layer = self._wrap(path, lambda m, f=path in ff, kv=kv: IA3Linear(m, feedforward=f, kv_fused=kv))
                layer.add_adapter(name, activate)
        elif isinstance(config, AdapterConfig):
            subs = ("attn", "mlp") if config.placement == "houlsby" else ("mlp",)
            regex = r"(.*\.)?h\.\d+\.(" + "|".join(subs) + ")"
            dim = self._n_embd()
            for path in match_targets(base, regex, linear_only=False, method="adapters"):
                layer = self._wrap(path, lambda m: BottleneckAdapter(m, dim))
                layer.add_adapter(name, config.bottleneck, config.activation, activate)
            if config.train_layernorms:
                norms = [n for n, m in base.named_modules() if isinstance(m, LayerNorm)]
                self._modules_to_save(name, norms, activate)
        elif isinstance(config, VIRTUAL_TOKEN_CONFIGS):
            self._add_encoder(name, config, activate)
        else:
            raise TypeError(f"get_peft_model: unsupported config {type(config).__name__}")
        if getattr(config, "modules_to_save", ()):
            paths = match_targets(base, config.modules_to_save, linear_only=False, method="modules_to_save")
            self._modules_to_save(name, paths, activate)
        self._trained_base[name] = trained

    def _wrap(self, path: str, make: Any) -> PeftLayer:
        """The PEFT layer at ``path``, creating it around the module there if needed."""
        module = self.base_model.get_submodule(path)
        if isinstance(module, PeftLayer):
            return module
        layer = make(module)
        layer.active_adapter = self.active_adapter
        layer.train(module.training)
        self.base_model.set_submodule(path, layer)
        return layer

    def _modules_to_save(self, name: str, paths: list[str], activate: bool) -> None:
        for path in paths:
            layer = self._wrap(path, ModulesToSave)
            if not isinstance(layer, ModulesToSave):
                raise ValueError(f"modules_to_save: {path} is already adapted by {type(layer).__name__}")
            layer.add_adapter(name, activate)

    def _unfreeze_biases(self, paths: list[str] | None) -> list[str]:
        """Unfreeze the biases of ``paths`` (None: every bias of the model); their plain names."""
        names = []
        for n, p in self.base_model.named_parameters():
            name = plain_name(n)
            owner = name.rpartition(".")[0]
            if name.rpartition(".")[2] == "bias" and (paths is None or owner in paths):
                p.requires_grad_(True)
                names.append(name)
        return names

    def _n_embd(self) -> int:
        cfg = getattr(self.base_model, "config", None)
        if cfg is None or not hasattr(cfg, "n_embd"):
            raise TypeError(f"{type(self.base_model).__name__} has no config.n_embd; adapters need the model width")
        return cfg.n_embd

    def _add_encoder(self, name: str, config: PeftConfig, activate: bool) -> None:
        base = self.base_model
        cfg = getattr(base, "config", None)
        if isinstance(config, PrefixTuningConfig):
            from minilora.peft.prefix import PrefixEncoder  # noqa: PLC0415  (written in parallel)

            encoder = PrefixEncoder(config, cfg, base.device, trained_dtype(base.dtype))
        else:
            from minilora.peft.prompt import PromptEmbedding  # noqa: PLC0415

            encoder = PromptEmbedding(config, cfg, base.get_submodule("transformer.wte"), tokenizer=self.tokenizer)
            encoder.to(base.device, trained_dtype(base.dtype))
        encoder.requires_grad_(True)
        if activate:
            self.prompt_encoder[name] = encoder
        else:
            self._aside_encoders[name] = encoder

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
        self.peft_config.pop(adapter_name)
        self._trained_base.pop(adapter_name, None)

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Inside this block the model computes the base model's outputs (modules_to_save use the originals)."""
        if isinstance(self.peft_config[self.active_adapter], FullFineTuneConfig):
            raise ValueError("disable_adapter: full fine-tuning changes the base weights; no adapter to disable")
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
        from minilora.autograd import no_grad  # noqa: PLC0415

        with no_grad():
            kwargs = {**self._virtual_kwargs(idx), **kwargs}
        return self.base_model.generate(idx, max_new_tokens, **kwargs)

    # ------------------------------------------------------------------ merging
    def _mergeable(self, what: str) -> None:
        kind = type(self.peft_config[self.active_adapter])
        if kind not in (LoraConfig, IA3Config):
            raise ValueError(f"{what}: {kind.__name__} adapters cannot be merged (LoRA, DoRA and IA3 can)")

    def merge(self) -> None:
        """Fold the active adapter into the base weights in place (undo with unmerge())."""
        self._mergeable("merge")
        for _, layer in self.peft_layers():
            if not isinstance(layer, ModulesToSave):
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
            if isinstance(layer, ModulesToSave):
                new = layer.merged_module() if merge else layer.base_layer
            elif merge and isinstance(layer, LoraLinear):
                new = layer.merged_linear()
            else:
                if merge:
                    layer.merge()
                else:
                    layer.unmerge()
                layer._merged = None
                new = layer.base_layer
            self.base_model.set_submodule(path, new)
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
            if type(m).__name__ == "Linear4bit" and "weight" not in m._parameters:
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
        base = {plain_name(n): p for n, p in self.base_model.named_parameters()}
        for n in self._trained_base.get(name, []):
            out[n] = base[n]
        return out

    def save_adapter(self, directory: str, adapter_name: str | None = None, format: str = "minilora") -> int:
        """Write the adapter (config JSON + weights, never pickle) to ``directory``; returns its bytes on disk."""
        from minilora.peft.io import save_adapter  # noqa: PLC0415

        return save_adapter(self, directory, adapter_name, format=format)

    def load_adapter(
        self, directory: str, adapter_name: str = "default", format: str | None = None, is_trainable: bool = False
    ) -> str:
        """Add the adapter saved in ``directory`` as ``adapter_name`` (not activated); refuses another base."""
        from minilora.peft.io import load_adapter  # noqa: PLC0415

        load_adapter(self, directory, adapter_name, format=format, is_trainable=is_trainable)
        return adapter_name
