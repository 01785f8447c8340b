"""What every module-replacing method shares: the wrapped module, named adapter slots, merging bookkeeping.

A PEFT layer (LoraLinear, IA3Linear, BottleneckAdapter, ModulesToSave) replaces
a module of the base model at the same path and keeps the original as
``base_layer``, so the base weights are named ``<path>.base_layer.weight`` (as
Hugging Face PEFT does). Several named adapters can live on one layer: the
ACTIVE adapter's tensors/modules are registered under fixed attribute names
(``lora_A``, ``lora_B``, ...), so they appear in named_parameters() and the
optimizer sees exactly them; the inactive ones are kept aside, unregistered,
and set_adapter() swaps them in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minilora import backend
from minilora.nn import Module, Parameter


class PeftLayer(Module):
    """Base class. Subclasses list their per-adapter attributes in ``slot_names`` and implement forward."""

    slot_names: tuple[str, ...] = ()

    def __init__(self, base_layer: Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.active_adapter: str | None = None
        self.disabled = False  # True inside PeftModel.disable_adapter(): the base layer alone
        self.settings: dict[str, Any] = {}  # adapter name -> per-adapter settings (scaling, dropout, ...)
        self._aside: dict[str, dict[str, Any]] = {}  # inactive adapters' slots, unregistered
        self._merged: dict[str, Any] | None = None  # attribute -> the delta added to the base by merge()

    # ------------------------------------------------------------------ attribute fallback
    def __getattr__(self, name: str) -> Any:
        # Code that reads the wrapped module's settings (attn.n_head, c_attn.in_features) keeps working.
        return wrapped_getattr(self, name, "base_layer")

    # ------------------------------------------------------------------ adapters
    @property
    def has_active(self) -> bool:
        return self.active_adapter in self.settings and not self.disabled

    @property
    def merged(self) -> bool:
        return self._merged is not None

    def adapter_names(self) -> list[str]:
        return list(self.settings)

    def _register_slots(self, name: str, slots: dict[str, Any], settings: Any, activate: bool) -> None:
        """Add adapter ``name`` (its tensors/modules in ``slots``); registered only when it is the active one."""
        if name in self.settings:
            raise ValueError(f"{type(self).__name__}: adapter {name!r} already exists on this layer")
        self.settings[name] = settings
        self._aside[name] = slots
        if activate or name == self.active_adapter:
            self.set_adapter(name)

    def set_adapter(self, name: str) -> None:
        """Make ``name`` active (a layer that does not carry it then behaves as its base layer)."""
        if name == self.active_adapter and name not in self._aside:
            return
        if self.merged:
            raise RuntimeError(
                f"{type(self).__name__}: adapter {self.active_adapter!r} is merged into the base weights; "
                "unmerge() before switching adapters"
            )
        current = {a: getattr(self, a) for a in self.slot_names if a in self._slots()}
        if current and self.active_adapter != name:  # stash the outgoing adapter, unregistered
            self._aside[self.active_adapter] = current
        for a in current:
            delattr(self, a)
        self.active_adapter = name
        incoming = self._aside.pop(name, None)
        if incoming is not None:
            device = self.base_device()
            for attr, value in incoming.items():
                _move(value, device)  # kept aside, it missed any Module.to() since
                setattr(self, attr, value)

    def delete_adapter(self, name: str) -> None:
        if name == self.active_adapter and name in self.settings:
            raise ValueError(f"{type(self).__name__}: cannot delete the active adapter {name!r}")
        self.settings.pop(name, None)
        self._aside.pop(name, None)

    def _slots(self) -> set[str]:
        return set(self._parameters) | set(self._modules)

    def adapter_slots(self, name: str | None = None) -> dict[str, Any]:
        """Adapter ``name``'s slot values (tensors or modules, active or aside) by attribute; {} if it has none here."""
        name = self.active_adapter if name is None else name
        if name not in self.settings:
            return {}
        if name == self.active_adapter:
            return {a: getattr(self, a) for a in self.slot_names if a in self._slots()}
        return dict(self._aside[name])

    def adapter_parameters(self, name: str | None = None) -> dict[str, Parameter]:
        """Adapter ``name``'s parameters (active or aside) by name relative to this layer."""
        out: dict[str, Parameter] = {}
        for attr, v in self.adapter_slots(name).items():
            if isinstance(v, Module):
                out.update({f"{attr}.{n}": p for n, p in v.named_parameters()})
            elif v is not None:
                out[attr] = v
        return out

    def base_device(self) -> str:
        return self.base_layer.device

    def adapter_dtype(self) -> Any:
        """The dtype of new adapter tensors: the base's float dtype, but float32 over a 16-bit base (trained
        tensors stay float32; the fused ops upcast the 16-bit base weights per call)."""
        return trained_dtype(self.base_layer.dtype)

    # ------------------------------------------------------------------ merging (subclasses give the deltas)
    def merge_deltas(self) -> dict[str, Any]:
        """{base parameter name: array to add} that folds the active adapter into the base layer."""
        raise NotImplementedError(f"{type(self).__name__} cannot be merged into the base weights")

    def merge(self) -> None:
        """Add the active adapter into the base weights in place; the adapter branch is then skipped."""
        if self.merged or self.active_adapter not in self.settings:
            return
        deltas = self.merge_deltas()
        params = dict(self.base_layer.named_parameters())
        for attr, delta in deltas.items():
            params[attr].data += delta.astype(params[attr].dtype, copy=False)  # a 16-bit base: rounded to it
        self._merged = deltas

    def unmerge(self) -> None:
        """Subtract exactly what merge() added (the base weights come back up to float rounding)."""
        if self._merged is None:
            return
        params = dict(self.base_layer.named_parameters())
        for attr, delta in self._merged.items():
            params[attr].data -= delta.astype(params[attr].dtype, copy=False)
        self._merged = None

    def unloaded(self, merge: bool) -> Module:
        """The module to put back at this path when the PeftModel is unloaded, the adapter merged in if ``merge``."""
        if merge:
            self.merge()
        else:
            self.unmerge()
        self._merged = None  # the base layer leaves this wrapper for good
        return self.base_layer


def trained_dtype(base_dtype: Any) -> Any:
    """The dtype adapter tensors are created in over a base of ``base_dtype``: float32 over a 16-bit base."""
    return np.dtype(np.float32) if backend.is_16bit(base_dtype) else base_dtype


def wrapped_getattr(wrapper: Module, name: str, child: str) -> Any:
    """``wrapper.name`` from the Module itself, else from its registered child ``child`` (the wrapped module)."""
    try:
        return Module.__getattr__(wrapper, name)
    except AttributeError:
        inner = wrapper.__dict__.get("_modules", {}).get(child)
        if inner is None:
            raise
        return getattr(inner, name)


def _move(value: Any, device: str) -> None:
    if isinstance(value, Module):
        value.to(device)
    elif value is not None and value.device != device:
        value.data = backend.to_device(value.data, device)
