"""Bottleneck adapters (Houlsby et al. 2019) and modules trained in full beside an adapter.

Adapter:  out = h + W_up act(W_down h + b_down) + b_up,  h the output of a sublayer (attention or MLP),
          W_down (bottleneck, C), W_up (C, bottleneck). W_up and b_up start at zero, so out = h exactly
          at initialisation (a near-identity start, as the paper asks) while W_down keeps a random init
          (PyTorch's U(-1/sqrt(C), 1/sqrt(C))) so that W_up's first gradient is not zero.
          It is applied to the sublayer's output BEFORE the Block's residual add, by wrapping the
          sublayer module at its path (transformer.h.{i}.attn / .mlp): the Block code does not change.
          "houlsby" wraps attn and mlp; "pfeiffer" (Pfeiffer et al. 2021) the mlp only.

All gradients flow through existing ops (linear, activation, add).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

from minilora import functional as F  # noqa: N812
from minilora.nn import Linear, Module
from minilora.nn.layers import zeros_
from minilora.peft.base_layer import PeftLayer
from minilora.peft.config import PeftConfig, check_choice, check_positive
from minilora.tensor import Tensor

ACTIVATIONS = {
    "gelu": F.gelu,
    "relu": lambda t: t.relu(),
    "silu": F.silu,
    "tanh": lambda t: t.tanh(),
}


@dataclasses.dataclass
class AdapterConfig(PeftConfig):
    """Bottleneck adapters (Houlsby et al. 2019): h + up(act(down(h))) after a sublayer."""

    peft_type: ClassVar[str] = "ADAPTER"
    bottleneck: int = 16
    placement: str = "houlsby"  # "houlsby": after attention and after the MLP; "pfeiffer": after the MLP only
    activation: str = "gelu"  # "gelu" | "relu" | "silu" | "tanh"
    train_layernorms: bool = False
    modules_to_save: tuple[str, ...] = ()

    def validate(self) -> None:
        check_positive(self, "bottleneck")
        check_choice(self, "placement", ("houlsby", "pfeiffer"))
        check_choice(self, "activation", tuple(ACTIVATIONS))


class BottleneckAdapter(PeftLayer):
    """A sublayer followed by a residual bottleneck: h + up(act(down(h)))."""

    slot_names = ("adapter_down", "adapter_up")

    def __init__(self, base_layer: Module, dim: int) -> None:
        super().__init__(base_layer)
        self.dim = dim

    def add_adapter(self, name: str, bottleneck: int, activation: str, activate: bool = False) -> None:
        device, dtype = self.base_device(), self.adapter_dtype()
        down = Linear(self.dim, bottleneck).to(device, dtype)  # (b, C), random
        up = Linear(bottleneck, self.dim).to(device, dtype)  # (C, b), zeros below
        zeros_(up.weight)
        zeros_(up.bias)
        self._register_slots(name, {"adapter_down": down, "adapter_up": up}, {"activation": activation}, activate)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        h = self.base_layer(*args, **kwargs)  # (B, T, C)
        if not self.has_active:
            return h
        act = ACTIVATIONS[self.settings[self.active_adapter]["activation"]]
        return h + self.adapter_up(act(self.adapter_down(h)))  # (B, T, C)

    def extra_repr(self) -> str:
        return f"active={self.active_adapter!r}, dim={self.dim}"


class ModulesToSave(PeftLayer):
    """A module trained in full beside an adapter (a classifier head, LayerNorms).

    Each adapter gets its own trainable copy (``modules_to_save``); the original stays frozen as
    ``base_layer`` and is what disable_adapter() and other adapters without a copy use.
    """

    slot_names = ("modules_to_save",)

    def add_adapter(self, name: str, activate: bool = False) -> None:
        trained = copy.deepcopy(self.base_layer)
        trained.requires_grad_(True)
        self._register_slots(name, {"modules_to_save": trained}, {}, activate)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.has_active:
            return self.base_layer(*args, **kwargs)
        return self.modules_to_save(*args, **kwargs)

    def merged_module(self) -> Module:
        """The module to put back at this path when the adapter is unloaded: the trained copy, if active."""
        return self.modules_to_save if self.has_active else self.base_layer

    def merge(self) -> None:
        """Nothing to fold: the trained copy replaces the module when unloaded with merging."""

    def unloaded(self, merge: bool) -> Module:
        return self.merged_module() if merge else self.base_layer
