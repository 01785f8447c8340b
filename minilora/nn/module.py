"""The module system: Parameter and Module (ModuleList, ModuleDict: containers.py; to(): placement.py).

A Module is a tree. Assigning a Parameter or a Module to an attribute
registers it (in ``_parameters`` / ``_modules``), so the tree can be walked:
named_parameters() for the optimizer, state_dict() for checkpoints, to() to
move everything to a device, set_submodule() to swap a Linear for a LoRA layer.
Non-trainable arrays (running statistics, the uint8 codes of an NF4 weight)
are buffers: register_buffer(). The design follows PyTorch's torch.nn.Module,
so its names and habits carry over.

A Parameter used in two places (GPT's tied embedding and output head) is one
object: it is listed once, moved once, and autograd sums both gradients into it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from minilora import backend
from minilora.nn.placement import Placement
from minilora.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that is part of a Module's state and requires grad by default."""

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        flag = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, device='{self.device}'{flag})"


class StateDictError(RuntimeError):
    """load_state_dict() refused a state: every problem is listed, and nothing was changed."""


class LoadResult(NamedTuple):
    """What load_state_dict(strict=False) did not match."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _data(v: Any) -> Any:
    return v.data if isinstance(v, Tensor) else v


class Module(Placement):
    """Base class of every layer and model. Subclasses call ``super().__init__()`` first, then assign."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() is called (call super().__init__() first)"
            )
        if isinstance(value, Parameter):
            self._forget(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            self._modules[name] = value
        elif name in self._parameters or name in self._modules:
            if value is not None:
                kind = "parameter" if name in self._parameters else "submodule"
                raise TypeError(
                    f"cannot assign a {type(value).__name__} to {kind} {name!r} of {type(self).__name__} "
                    f"(expected a {'Parameter' if kind == 'parameter' else 'Module'} or None)"
                )
            (self._parameters if name in self._parameters else self._modules)[name] = None
        elif name in self._buffers:
            self._buffers[name] = value  # reassigning a buffer (e.g. a new array) keeps it a buffer
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent.discard(name)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: the registries are searched here
        for registry in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(registry)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter({name!r}): expected a Parameter, got {type(param).__name__}")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, value: Any, persistent: bool = True) -> None:
        """A non-trainable array or Tensor kept with the module: moved by to(); in state_dict() if persistent.

        The attribute returns what was registered (an array stays an array, a Tensor a Tensor).
        """
        if value is not None and not (isinstance(value, Tensor) or backend.is_array(value)):
            raise TypeError(
                f"register_buffer({name!r}): expected a NumPy/CuPy array or a Tensor, got {type(value).__name__}"
            )
        if isinstance(value, Parameter):
            raise TypeError(f"register_buffer({name!r}): a Parameter is not a buffer; assign it as an attribute")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"register_buffer({name!r}): the name is already a parameter or submodule")
        self.__dict__.pop(name, None)
        self._buffers[name] = value
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module({name!r}): expected a Module, got {type(module).__name__}")
        self._forget(name)
        self._modules[name] = module

    # ------------------------------------------------------------------ walking the tree
    def named_modules(
        self, memo: set[int] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """(dotted path, module) for this module and every descendant, depth first, parents first."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter); a parameter reachable under two names is listed once (its first name)."""
        seen: set[int] = set()
        for mod_prefix, module in self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate):
            for name, p in module._parameters.items():
                if p is None:
                    continue
                if remove_duplicate:
                    if id(p) in seen:
                        continue
                    seen.add(id(p))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(
        self, prefix: str = "", remove_duplicate: bool = True, persistent_only: bool = False
    ) -> Iterator[tuple[str, Any]]:
        for mod_prefix, module in self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate):
            for name, b in module._buffers.items():
                if b is None or (persistent_only and name in module._non_persistent):
                    continue
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def buffers(self) -> Iterator[Any]:
        for _, b in self.named_buffers():
            yield b

    def get_submodule(self, target: str) -> Module:
        """The module at a dotted path ("" is this module), e.g. "transformer.h.0.attn.c_attn"."""
        module: Module = self
        if not target:
            return module
        walked = []
        for part in target.split("."):
            child = module._modules.get(part)
            if child is None:
                where = ".".join(walked) or type(self).__name__
                raise AttributeError(
                    f"get_submodule({target!r}): {where} has no submodule {part!r} "
                    f"(it has: {', '.join(module._modules) or 'none'})"
                )
            module = child
            walked.append(part)
        return module

    def set_submodule(self, target: str, module: Module) -> None:
        """Replace the existing submodule at a dotted path (how PEFT swaps a Linear for a LoRA layer)."""
        if not isinstance(module, Module):
            raise TypeError(f"set_submodule({target!r}): expected a Module, got {type(module).__name__}")
        if not target:
            raise ValueError("set_submodule: the target path is empty (a module cannot replace itself)")
        parent_path, _, name = target.rpartition(".")
        parent = self.get_submodule(parent_path)
        if name not in parent._modules:
            raise AttributeError(
                f"set_submodule({target!r}): {parent_path or type(self).__name__} has no submodule {name!r} "
                f"(it has: {', '.join(parent._modules) or 'none'})"
            )
        parent._modules[name] = module

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call fn on every submodule (children first, as PyTorch does) and on this module."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Every parameter and persistent buffer by dotted name: copies of the arrays, on the model's device.

        A tied parameter appears under each of its names (as in nanoGPT/PyTorch checkpoints).
        """
        out: dict[str, Any] = {}
        for name, p in self.named_parameters(remove_duplicate=False):
            out[name] = p.data.copy()
        for name, b in self.named_buffers(remove_duplicate=False, persistent_only=True):
            out[name] = _data(b).copy()
        return out

    def _state_slots(self) -> dict[str, tuple[Module, str, str]]:
        """dotted name -> (owning module, attribute, kind) for every parameter and persistent buffer."""
        slots: dict[str, tuple[Module, str, str]] = {}
        for mod_prefix, module in self.named_modules(remove_duplicate=False):
            pre = f"{mod_prefix}." if mod_prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    slots[pre + name] = (module, name, "parameter")
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    slots[pre + name] = (module, name, "buffer")
        return slots

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> LoadResult:
        """Copy arrays (NumPy or CuPy, or Tensors) into this model's parameters and persistent buffers.

        Every key is checked before anything is assigned: a missing key (strict), an
        unexpected key (strict), a shape mismatch or a float/integer mismatch is collected,
        and one StateDictError names them all while the model stays untouched. Floating
        arrays are cast to the parameter's dtype and moved to its device. For a tied
        parameter one of its names is enough. Returns (missing_keys, unexpected_keys).
        """
        slots = self._state_slots()
        names_of: dict[int, list[str]] = {}  # a tied object's names: one of them is enough
        for key, slot in slots.items():
            names_of.setdefault(id(_slot_value(slot)), []).append(key)
        missing = [
            k for k, slot in slots.items() if not any(alias in state for alias in names_of[id(_slot_value(slot))])
        ]
        unexpected = [k for k in state if k not in slots]
        problems = []
        plan: list[tuple[Module, str, str, Any]] = []
        for key, value in state.items():
            if key not in slots:
                continue
            module, attr, kind = slots[key]
            current = _data(_slot_value(slots[key]))
            array = _data(value)
            if not (backend.is_array(array) or isinstance(array, np.generic)):
                problems.append(f"{key}: expected an array, got {type(value).__name__}")
                continue
            if tuple(array.shape) != tuple(current.shape):
                problems.append(f"{key}: shape {tuple(array.shape)} in the state, {tuple(current.shape)} in the model")
                continue
            if backend.is_floating(array.dtype) != backend.is_floating(current.dtype):
                problems.append(f"{key}: dtype {array.dtype} in the state, {current.dtype} in the model")
                continue
            plan.append((module, attr, kind, array))
        if strict:
            problems = [f"missing key: {k}" for k in missing] + [f"unexpected key: {k}" for k in unexpected] + problems
        if problems:
            raise StateDictError(
                f"load_state_dict into {type(self).__name__} failed; nothing was loaded. "
                f"{len(problems)} problem(s):\n  " + "\n  ".join(problems)
            )
        for module, attr, kind, array in plan:
            if kind == "parameter":
                p = module._parameters[attr]
                p.data = _fresh_copy(array, p.device, p.dtype)
            else:
                b = module._buffers[attr]
                new = _fresh_copy(array, backend.device_of(_data(b)), _data(b).dtype)
                if isinstance(b, Tensor):
                    b.data = new
                else:
                    module._buffers[attr] = new
        return LoadResult(missing, unexpected)

    # ------------------------------------------------------------------ modes (devices and dtypes: Placement)
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze (True) every parameter."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (``set_to_none=False``: fill existing ones with zeros, as PyTorch)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = p.xp.zeros_like(p.grad)  # out of place: backward may share arrays

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of scalars in the parameters, a tied parameter counted once."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ calling and printing
    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        """One line of settings shown in the repr tree (e.g. "in_features=4, out_features=8")."""
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}({extra}" if extra else f"{type(self).__name__}("
        sep = "\n  " if not extra else ",\n  "
        return head + sep + "\n  ".join(lines) + "\n)"

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))


def _slot_value(slot: tuple[Module, str, str]) -> Any:
    module, attr, kind = slot
    return module._parameters[attr] if kind == "parameter" else module._buffers[attr]


def _fresh_copy(array: Any, device: str, dtype: Any) -> Any:
    """``array`` on ``device`` in ``dtype``, never sharing memory with the caller's array."""
    out = backend.to_device(array, device, dtype)
    if out is array or (isinstance(array, np.ndarray) and isinstance(out, np.ndarray) and np.shares_memory(out, array)):
        out = out.copy()
    return out
