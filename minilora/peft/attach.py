"""Attaching saved adapter weights to a model: wrap (or add) and assign, all or nothing.

Both adapter formats (minilora's and Hugging Face PEFT's) end here once their files are read:
the adapter is built from a config, its tensors are replaced by the saved arrays, and if anything
does not fit the model is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minilora import backend
from minilora.io import nonfinite_names
from minilora.nn import all_or_nothing


class AdapterError(ValueError):
    """An adapter directory that cannot be used here: the message names the file and the problem."""


def attach(
    model: Any, config: Any, build: Any, adapter_name: str, arrays: dict[str, np.ndarray], directory: str,
    is_trainable: bool, wrap: Callable[[Any, Any, str], Any],
) -> Any:
    """Wrap ``model`` (``wrap(model, build, adapter_name)``) or add to it (a PeftModel) an adapter built from
    ``build``, recorded as ``config``, holding ``arrays``; returns the PeftModel.

    On any failure the model is left exactly as it was (types, weights bit for bit, flags, adapters).
    """
    with all_or_nothing(model):  # any failure below leaves the model as it was (see minilora.nn.transaction)
        if hasattr(model, "peft_config"):
            peft = model
            peft.add_adapter(adapter_name, build)  # raises for another method family
        else:
            peft = wrap(model, build, adapter_name)
        peft.peft_config[adapter_name] = config
        assign(peft, adapter_name, arrays, directory)
        frozen = {id(p) for p in peft.frozen_adapter_state(adapter_name).values()}
        for p in peft.adapter_state(adapter_name).values():
            p.requires_grad_(is_trainable and id(p) not in frozen)
    return peft


def assign(peft: Any, adapter_name: str, arrays: dict[str, np.ndarray], directory: str) -> None:
    """Replace the tensors of adapter ``adapter_name`` by ``arrays`` (by plain name), every problem named first."""
    state = peft.adapter_state(adapter_name)
    problems = [f"missing {k}" for k in sorted(set(state) - set(arrays))]
    problems += [f"unexpected {k}" for k in sorted(set(arrays) - set(state))]
    problems += [
        f"{k}: shape {tuple(a.shape)} in the file, {tuple(state[k].shape)} in the model"
        for k, a in arrays.items()
        if k in state and tuple(a.shape) != tuple(state[k].shape)
    ]
    problems += [f"{k}: dtype {a.dtype} (adapter tensors must be floating point)" for k, a in arrays.items()
                 if np.dtype(a.dtype).kind != "f"]
    bad = nonfinite_names(arrays)
    if bad:
        problems.append(f"non-finite values (NaN/Inf) in {', '.join(bad)}")
    if problems:
        raise AdapterError(f"{directory}: the adapter does not fit this model: " + "; ".join(problems))
    for k, a in arrays.items():
        p = state[k]
        p.data = backend.to_device(a, p.device, p.dtype)
