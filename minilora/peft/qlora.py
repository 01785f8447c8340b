"""QLoRA (Dettmers et al. 2023) on a whole model: quantize_model stores the targeted Linear layers as NF4.

The layer itself (Linear4bit, the NF4Linear op) is in linear4bit.py; ``storage_report`` counts
the bytes exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from minilora.nn.layers import Linear
from minilora.nn.module import Module
from minilora.nn.transaction import all_or_nothing
from minilora.peft.linear4bit import Linear4bit, NF4Linear, linear4bit
from minilora.peft.targets import match_targets


# ----------------------------------------------------------------------------- whole models
def _matching_linears(model: Module, target_modules: str | Sequence[str]) -> list[str]:
    """Paths of the float Linear layers that get_peft_model's matcher selects (already-NF4 ones are skipped)."""
    names = match_targets(model, target_modules, method="quantize_model")
    return [n for n in names if isinstance(model.get_submodule(n), Linear)]


def quantize_model(
    model: Module,
    target_modules: str | Sequence[str] = "all-linear",
    block_size: int = 64,
    double_quant: bool = True,
) -> Module:
    """Replace the targeted Linear layers of ``model`` by Linear4bit in place; returns the model.

    ``target_modules`` is matched as by get_peft_model (exact names, dotted suffixes, a
    regular expression, "all-linear" = every Linear but lm_head). A weight tied to
    another parameter (GPT's lm_head shares wte's) is refused: quantising it would untie it.
    """
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size <= 0:
        raise ValueError(f"quantize_model: block_size must be a positive integer, got {block_size!r}")
    if not isinstance(double_quant, bool):
        raise TypeError(f"quantize_model: double_quant must be True or False, got {double_quant!r}")
    names = _matching_linears(model, target_modules)  # raises, listing the model's modules, on no match
    for name in names:
        linear = model.get_submodule(name)
        owners = [
            f"{m}.{p}" if m else p
            for m, mod in model.named_modules()
            if mod is not linear
            for p, t in mod._parameters.items()
            if t is linear.weight
        ]
        if owners:
            raise ValueError(
                f"quantize_model: {name}.weight is tied to {', '.join(owners)}; quantising it would untie the weights"
            )
    with all_or_nothing(model):  # a layer that fails to quantise leaves every layer as it was
        for name in names:
            model.set_submodule(name, Linear4bit.from_linear(model.get_submodule(name), block_size, double_quant))
    return model


@dataclasses.dataclass
class StorageReport:
    """Weight storage of the quantised layers against float32, and of the whole model."""

    quantized_layers: int
    quantized_weights: int  # number of weights stored as NF4
    quantized_bytes: int  # their bytes as stored (codes and scales)
    float32_bytes: int  # the same weights in float32
    model_bytes: int  # every parameter and buffer of the model, as stored
    model_float32_bytes: int  # the same model with every weight in float32

    @property
    def ratio(self) -> float:
        """Quantised layers' storage over float32 (0.129 with double quantisation at block size 64)."""
        return self.quantized_bytes / max(self.float32_bytes, 1)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.quantized_bytes / max(self.quantized_weights, 1)

    def __str__(self) -> str:
        return (
            f"{self.quantized_layers} NF4 layers: {self.quantized_bytes:,} bytes for "
            f"{self.quantized_weights:,} weights "
            f"({self.bits_per_weight:.3f} bits/weight, {self.ratio:.4f}x float32); whole model "
            f"{self.model_bytes:,} bytes ({self.model_bytes / max(self.model_float32_bytes, 1):.4f}x float32)"
        )


def storage_report(model: Module) -> StorageReport:
    """Count bytes exactly: NF4 buffers as stored, everything else at its array's size (tied params once)."""
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    n_q = sum(m.in_features * m.out_features for m in layers)
    q_bytes = sum(m.weight_bytes() for m in layers)
    param_bytes = sum(int(p.data.nbytes) for p in model.parameters())
    buffer_bytes = sum(int(getattr(b, "data", b).nbytes) for b in model.buffers())
    float32_bytes = 4 * sum(p.size for p in model.parameters()) + 4 * n_q + buffer_bytes - q_bytes
    return StorageReport(len(layers), n_q, q_bytes, 4 * n_q, param_bytes + buffer_bytes, float32_bytes)


__all__ = ["Linear4bit", "NF4Linear", "StorageReport", "linear4bit", "quantize_model", "storage_report"]
