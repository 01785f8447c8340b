"""The optimizer base class: parameter groups, zero_grad, state only for trainable parameters, state_dict.

Parameters arrive in one of three forms (as in PyTorch):

- an iterable of Tensors/Parameters: one group with the optimizer's defaults;
- an iterable of dicts ``{"params": [...], "lr": ..., "weight_decay": ...}``: one group each;
- an iterable of ``(name, param)`` pairs from ``model.named_parameters()``: one group, names kept
  (so errors and checkpoints can say which parameter).

A module (anything with ``named_parameters``) is accepted too. Per-parameter state
(momentum buffers, Adam moments) is created lazily on the first step that sees a
gradient, and never for a parameter with ``requires_grad == False``: a frozen base
model costs the optimizer nothing, which is where much of LoRA's memory saving comes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from minilora import backend
from minilora.optim.flat import FlatGroup
from minilora.tensor import Tensor


class Optimizer:
    """Base class. Subclasses implement ``_update(p, grad, state, group)`` for one parameter."""

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        # state keyed by id(param): {"step": int, "<buffer>": device array, ...}
        self.state: dict[int, dict[str, Any]] = {}
        self._flat: dict[int, FlatGroup] = {}  # group index -> its flat buffers (optimizers that use them)
        seen: set[int] = set()
        for group in _as_groups(params):
            self._add_group(group, seen)
        if not self.param_groups or not any(g["params"] for g in self.param_groups):
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")

    def _add_group(self, group: dict[str, Any], seen: set[int]) -> None:
        unknown = set(group) - set(self.defaults) - {"params", "names", "initial_lr"}
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown parameter-group option(s) {sorted(unknown)}")
        params, names = [], []
        for i, (name, p) in enumerate(group["params"]):
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: parameter {name or i} is a {type(p).__name__}, not a Tensor")
            if not backend.is_floating(p.data.dtype):
                raise TypeError(f"{type(self).__name__}: parameter {name or i} has integer dtype {p.dtype}")
            if id(p) in seen:  # a tied weight listed twice: update it once
                continue
            seen.add(id(p))
            params.append(p)
            names.append(name or f"param{len(seen) - 1}")
        g = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}, "params": params, "names": names}
        g.setdefault("initial_lr", g["lr"])  # schedules scale this (lr = initial_lr * schedule(step))
        self.param_groups.append(g)

    # ------------------------------------------------------------------ the loop's calls
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (None, not zeros: backward then stores instead of adding).

        ``set_to_none=False`` (PyTorch's option) fills existing gradients with zeros instead.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad = p.xp.zeros_like(p.grad)  # out of place: backward may share arrays

    def step(self) -> None:
        """One update of every trainable parameter that has a gradient (frozen or grad-less ones are skipped)."""
        for group in self.param_groups:
            for p in group["params"]:
                if not p.requires_grad or p.grad is None:
                    continue
                state = self.state.get(id(p))
                if state is None:
                    state = self.state[id(p)] = {"step": 0}
                state["step"] += 1
                self._update(p, p.grad, state, group)

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError  # pragma: no cover - interface

    # ------------------------------------------------------------------ flat buffers (minilora.optim.flat)
    def _flat_group(self, index: int, live: list[Tensor]) -> FlatGroup | None:
        """Group ``index``'s FlatGroup over ``live`` (its trainable parameters that have gradients), built or
        rebuilt from the current arrays as needed; None when the group cannot be flat (some trainable parameter
        has no gradient this step, or dtypes/devices are mixed): the caller then updates parameter by parameter."""
        group = self.param_groups[index]
        trainable = [p for p in group["params"] if p.requires_grad]
        if len(live) != len(trainable) or not FlatGroup.can_flatten(live):
            return None
        states = [self.state.setdefault(id(p), {"step": 0}) for p in live]
        flat = self._flat.get(index)
        if flat is None or FlatGroup.key(flat.params) != FlatGroup.key(live) or not flat.attached(states):
            flat = self._flat[index] = FlatGroup(live)
        return flat

    def flat_grads(self, index: int = 0) -> Any:
        """Parameter group ``index``'s gradients as ONE contiguous array, every ``p.grad`` then a view of it.

        For whoever works on all gradients at once before ``step()`` (a data-parallel all-reduce, a global
        norm, a loss-scale unscale): change the array in place and ``step()`` sees the change, with no copy.
        Every trainable parameter of the group must have a gradient.
        """
        group = self.param_groups[index]
        live = [p for p in group["params"] if p.requires_grad and p.grad is not None]
        flat = self._flat_group(index, live)
        if flat is None:
            raise ValueError(
                f"{type(self).__name__}.flat_grads: group {index} has trainable parameters without a gradient "
                "(or mixed dtypes/devices); call it after backward()"
            )
        return flat.gather_grads()

    # ------------------------------------------------------------------ introspection
    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        for group in self.param_groups:
            yield from zip(group["names"], group["params"])

    def state_size(self) -> int:
        """How many numbers the optimizer holds (sum of the sizes of every state array)."""
        return sum(int(v.size) for s in self.state.values() for v in s.values() if backend.is_array(v))

    def state_nbytes(self) -> int:
        return sum(int(v.nbytes) for s in self.state.values() for v in s.values() if backend.is_array(v))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Host-side copy: ``{"state": {index: {key: np.ndarray | int}}, "param_groups": [...]}``.

        Parameters are numbered across groups in order (as PyTorch does); groups keep
        their hyper-parameters, their parameters' indices and names.
        """
        groups, state, index = [], {}, 0
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                s = self.state.get(id(p))
                if s is not None:
                    state[index] = {k: backend.to_host(v).copy() if backend.is_array(v) else v for k, v in s.items()}
                ids.append(index)
                index += 1
            hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
            groups.append({**hyper, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from ``state_dict()``; validates everything first, so a bad state changes nothing."""
        name = type(self).__name__
        try:
            groups, saved_state = state_dict["param_groups"], state_dict["state"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{name}.load_state_dict: missing key {exc}") from None
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the state has {len(groups)} parameter groups, the optimizer has "
                f"{len(self.param_groups)}"
            )
        new_state: dict[int, dict[str, Any]] = {}
        by_index: dict[int, Tensor] = {}
        for gi, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: group {gi} has {len(saved['params'])} parameters in the state, "
                    f"{len(group['params'])} in the optimizer"
                )
            for idx, p in zip(saved["params"], group["params"]):
                by_index[int(idx)] = p
        for idx, s in saved_state.items():
            p = by_index.get(int(idx))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter index {idx}, which does not exist")
            pname = self._name_of(p)
            restored: dict[str, Any] = {}
            for k, v in s.items():
                if isinstance(v, (np.ndarray, np.generic)) or backend.is_array(v):
                    if tuple(v.shape) != tuple(p.shape):
                        raise ValueError(
                            f"{name}.load_state_dict: state {k!r} of {pname} has shape {tuple(v.shape)}, "
                            f"the parameter has {tuple(p.shape)}"
                        )
                    restored[k] = backend.to_device(backend.to_host(v), p.device, dtype=p.dtype)
                else:
                    restored[k] = int(v)
            new_state[id(p)] = restored
        for saved, group in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k not in ("params", "names"):
                    group[k] = tuple(v) if isinstance(v, list) else v
        self.state = new_state

    def _name_of(self, p: Tensor) -> str:
        for n, q in self.named_parameters():
            if q is p:
                return n
        return "<unknown>"  # pragma: no cover

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            hyper = ", ".join(f"{k}={v}" for k, v in g.items() if k not in ("params", "names", "initial_lr"))
            lines.append(f"  group {i}: {len(g['params'])} params, {hyper}")
        return "\n".join([*lines, ")"])


def _as_groups(params: Any) -> list[dict[str, Any]]:
    """Normalise the accepted parameter forms to groups whose "params" are (name or None, tensor) pairs."""
    if hasattr(params, "named_parameters"):
        params = params.named_parameters()
    if isinstance(params, Tensor):
        raise TypeError("optimizer params must be an iterable of Tensors, (name, Tensor) pairs or dicts, not a Tensor")
    items = list(params)
    if items and all(isinstance(x, dict) for x in items):
        groups = []
        for g in items:
            if "params" not in g:
                raise ValueError("a parameter group dict needs a 'params' entry")
            pairs = _pairs(g["params"])
            names = g.get("names")
            if names is not None:
                pairs = [(n, p) for n, (_, p) in zip(names, pairs, strict=True)]
            groups.append({**{k: v for k, v in g.items() if k != "names"}, "params": pairs})
        return groups
    return [{"params": _pairs(items)}]


def _pairs(params: Iterable[Any]) -> list[tuple[str | None, Any]]:
    if hasattr(params, "named_parameters"):
        params = params.named_parameters()
    if isinstance(params, Tensor):
        params = [params]
    out = []
    for x in params:
        if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str):
            out.append((x[0], x[1]))
        else:
            out.append((None, x))
    return out


def param_groups(model_or_named_params: Any, weight_decay: float, lr: float | None = None) -> list[dict[str, Any]]:
    """The default grouping: weight decay on matrices (ndim >= 2), none on biases, norms and other 1-D parameters.

    Only trainable parameters (requires_grad) are included. ``lr`` (optional) is set on both groups.
    """
    named = model_or_named_params
    if hasattr(named, "named_parameters"):
        named = named.named_parameters()
    decay, no_decay = [], []
    for n, p in _pairs(named):
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append((n, p))
    groups = []
    for pairs, wd in ((decay, weight_decay), (no_decay, 0.0)):
        if pairs:
            g: dict[str, Any] = {"params": [p for _, p in pairs], "names": [n for n, _ in pairs], "weight_decay": wd}
            if lr is not None:
                g["lr"] = lr
            groups.append(g)
    if not groups:
        raise ValueError("param_groups: the model has no trainable parameters (all have requires_grad=False)")
    return groups
