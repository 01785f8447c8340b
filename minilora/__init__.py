"""minilora: a from-scratch deep-learning framework in NumPy/CuPy for learning how fine-tuning works.

``import minilora as ml`` loads the engine (Tensor, autograd, F, nn); the other subpackages load on
first use (``ml.optim.AdamW``, ``ml.peft``, ``ml.data``, ``ml.train``, ``ml.hf``, ...), so importing
minilora stays fast and never imports an optional extra (CuPy, safetensors, tokenizers, matplotlib).
"""

import importlib
from typing import Any

from minilora import (
    blas_threads,  # noqa: F401  (first, before anything loads NumPy: sets OPENBLAS_THREAD_TIMEOUT)
    functional,  # noqa: F401
    gradcheck,  # noqa: F401
    heap,
    models,  # noqa: F401
    nn,  # noqa: F401
)
from minilora import functional as F  # noqa: N812
from minilora.activation_checkpoint import checkpoint
from minilora.autograd import is_grad_enabled, no_grad
from minilora.backend import cuda_available, get_array_module, manual_seed
from minilora.models import build_model
from minilora.tensor import Tensor, tensor

__version__ = "0.1.0"

heap.keep_freed_memory()  # freed NumPy buffers stay in the heap: no page faults on each step's activations

# subpackages imported on first attribute access (PEP 562)
_LAZY = ("analysis", "cli", "data", "demo", "distributed", "hf", "io", "models", "ops", "optim", "peft", "testing",
         "train")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        try:
            return importlib.import_module(f"minilora.{name}")  # the import also sets it as an attribute
        except ModuleNotFoundError as exc:
            if exc.name != f"minilora.{name}":
                raise
    raise AttributeError(f"module 'minilora' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "F",
    "Tensor",
    "build_model",
    "checkpoint",
    "cuda_available",
    "functional",
    "get_array_module",
    "gradcheck",
    "is_grad_enabled",
    "manual_seed",
    "nn",
    "no_grad",
    "tensor",
]
