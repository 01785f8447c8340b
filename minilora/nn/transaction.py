"""All-or-nothing changes to module trees: snapshot, try, and roll back on failure.

The entry points that change a model (``get_peft_model``, ``PeftModel.add_adapter``,
``load_adapter``, ``quantize_model``, ``Trainer.resume``) run their work inside
``all_or_nothing(model)``. If anything raises, every object reachable from the model
is put back exactly as it was, and the exception propagates:

- each Module's attributes (so its class's state, ``_modules`` / ``_parameters`` /
  ``_buffers``, adapter dicts such as ``peft_config`` or a layer's ``settings``);
- the contents of every dict, list and set reachable from those attributes (restored
  in place, so other references to them see the old contents too);
- each Tensor's slots: ``data`` (the same array object), ``grad``, ``requires_grad``.

The snapshot keeps references, not copies, so it costs no memory for the weights. That is
bit-exact because the code inside never writes into an existing array in place: it
assigns new arrays (``p.data = ...``), as ``load_state_dict``, ``to()`` and every
injection do. Objects created by the failed call are simply dropped. The per-method
injection code stays simple: it may leave a half-built tree behind when it raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from minilora.nn.module import Module
from minilora.tensor import Tensor

_CONTAINERS = (dict, list, set)


class Snapshot:
    """The restorable state of everything reachable from ``roots``.

    A root of any class (a Module, an optimizer, a Trainer) has its attributes recorded; below the roots,
    Modules, Tensors and dicts/lists/sets are followed, other values (configs, arrays) are kept by reference.
    """

    def __init__(self, *roots: Any) -> None:
        self._objects: list[tuple[Any, dict[str, Any]]] = []  # objects with a __dict__ (Modules, optimizers)
        self._tensors: list[tuple[Tensor, tuple[Any, Any, bool]]] = []
        self._containers: list[tuple[Any, Any]] = []
        self._seen: set[int] = set()
        for root in roots:
            self._visit(root, root=hasattr(root, "__dict__"))

    def _visit(self, obj: Any, root: bool = False) -> None:
        if id(obj) in self._seen:
            return
        if isinstance(obj, Tensor):
            self._seen.add(id(obj))
            self._tensors.append((obj, (obj.data, obj.grad, obj.requires_grad)))
        elif isinstance(obj, _CONTAINERS):
            self._seen.add(id(obj))
            items = dict(obj) if isinstance(obj, dict) else list(obj)
            self._containers.append((obj, items))
            for v in (items.values() if isinstance(items, dict) else items):
                self._visit(v)
        elif root or isinstance(obj, Module):
            self._seen.add(id(obj))
            attrs = dict(obj.__dict__)
            self._objects.append((obj, attrs))
            for v in attrs.values():
                self._visit(v)

    def restore(self) -> None:
        """Put every recorded object back as it was when the snapshot was taken."""
        for obj, attrs in self._objects:
            obj.__dict__.clear()
            obj.__dict__.update(attrs)
        for container, items in self._containers:
            container.clear()
            if isinstance(container, dict):
                container.update(items)
            elif isinstance(container, list):
                container.extend(items)
            else:
                container.update(items)
        for t, (data, grad, flag) in self._tensors:
            t.data, t.grad, t.requires_grad = data, grad, flag


@contextlib.contextmanager
def all_or_nothing(*roots: Any) -> Iterator[Snapshot]:
    """Run the block; if it raises, restore everything reachable from ``roots`` and re-raise."""
    snap = Snapshot(*roots)
    try:
        yield snap
    except BaseException:
        snap.restore()
        raise
