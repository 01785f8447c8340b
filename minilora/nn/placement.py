"""Where a module's state lives: its device and dtype, and ``to()`` with PyTorch's shorthands (cpu, cuda, half, ...).

Mixed into Module: every Parameter and buffer moves or casts in place (the same Parameter objects,
so tied weights stay tied).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minilora import backend
from minilora.tensor import Tensor


class Placement:
    """``device``, ``dtype`` and ``to()`` over ``parameters()``, ``buffers()`` and ``modules()`` (a Module's)."""

    @property
    def device(self) -> str:
        """The device of the first parameter (or buffer); "cpu" for a module without state."""
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return backend.device_of(b.data if isinstance(b, Tensor) else b)
        return "cpu"

    @property
    def dtype(self) -> Any:
        """The dtype of the first floating parameter (float32 unless converted)."""
        for p in self.parameters():
            if backend.is_floating(p.dtype):
                return p.dtype
        return np.dtype(np.float32)

    def to(self, device: str | None = None, dtype: Any = None) -> Any:
        """Move (and/or cast floating state to ``dtype``) in place: the same Parameter objects, so ties stay ties.

        ``dtype`` may be a name: "float32", "float16"/"half"/"fp16", "bfloat16"/"bf16" (needs ml_dtypes),
        and ``to("bfloat16")`` reads a dtype name given in place of the device, as PyTorch's ``to`` does.
        """
        if device is not None and device not in backend.DEVICES and dtype is None:
            try:
                device, dtype = None, backend.resolve_dtype(device)
            except TypeError:
                pass  # not a dtype name either: module_for names the bad device below
        if device is not None:
            backend.module_for(device)  # a clear error for an unknown or unavailable device
        if dtype is not None:
            dtype = backend.resolve_dtype(dtype)
            if not backend.is_floating(dtype):
                raise TypeError(f"{type(self).__name__}.to: dtype must be floating point, got {dtype}")
        for p in self.parameters():
            p.data = _convert(p.data, device, dtype)
            if p.grad is not None:
                p.grad = _convert(p.grad, device, dtype)
        for module in self.modules():
            for name, b in list(module._buffers.items()):
                if b is None:
                    continue
                if isinstance(b, Tensor):
                    b.data = _convert(b.data, device, dtype)
                else:
                    module._buffers[name] = _convert(b, device, dtype)
        return self

    def cpu(self) -> Any:
        """Move every parameter and buffer to the host (``to("cpu")``), in place."""
        return self.to("cpu")

    def cuda(self) -> Any:
        """Move every parameter and buffer to the GPU (``to("cuda")``, CuPy), in place."""
        return self.to("cuda")

    def double(self) -> Any:
        """Cast floating state to float64 (for finite-difference checks); ``to(dtype=np.float32)`` casts back."""
        return self.to(dtype=np.float64)

    def float(self) -> Any:  # host: not a call of float() but PyTorch's Module.float(), a cast of the state
        """Cast floating state to float32 (the default dtype)."""
        return self.to(dtype=np.float32)

    def half(self) -> Any:
        """Cast floating state to float16: a frozen base then takes half the bytes (see docs/memory.md)."""
        return self.to(dtype=np.float16)

    def bfloat16(self) -> Any:
        """Cast floating state to bfloat16 (float32's range, 8 bits of mantissa; needs ml_dtypes on the CPU)."""
        return self.to(dtype="bfloat16")


def _convert(a: Any, device: str | None, dtype: Any) -> Any:
    if dtype is not None and backend.is_floating(a.dtype) and a.dtype != dtype:
        a = a.astype(dtype)
    if device is not None and backend.device_of(a) != device:
        a = backend.to_device(a, device)
    return a
