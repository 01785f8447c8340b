"""minilora: a from-scratch deep-learning framework in NumPy/CuPy for learning how fine-tuning works."""

from minilora import (
    functional,  # noqa: F401
    gradcheck,  # noqa: F401
    models,  # noqa: F401
    nn,  # noqa: F401
)
from minilora import functional as F  # noqa: N812
from minilora.autograd import is_grad_enabled, no_grad
from minilora.backend import cuda_available, get_array_module, manual_seed
from minilora.models import build_model
from minilora.tensor import Tensor, tensor

__version__ = "0.1.0"

__all__ = [
    "F",
    "Tensor",
    "build_model",
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
