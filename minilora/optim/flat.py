"""One flat buffer per parameter group: the parameters, their optimizer state and (on request) their gradients
as views into a few contiguous arrays, so an update is a few large in-place ufunc calls (PyTorch's foreach).

``FlatGroup(params)`` copies the parameters into one array and makes each ``p.data`` a view of it; ``moment``
does the same for a state buffer (Adam's ``exp_avg``, ``exp_avg_sq``): the per-parameter views stay in
``optimizer.state`` as before, so ``state_dict()`` and checkpoints keep their format. ``gather_grads``
copies every ``p.grad`` into one flat gradient array and makes each ``p.grad`` a view of it: a data-parallel
all-reduce (or a global norm, or an unscale) can then work on ONE array in place before ``step()``
(``Optimizer.flat_grads(i)`` is the public way in). Whoever replaces ``p.data`` or a state array with a new
one (``load_state_dict``, ``Module.to``) simply detaches it: ``attached()`` sees that and the optimizer
rebuilds the group from the current arrays at its next step.

``chunks(xp, n)``: the update's work list, cache-sized ranges of the flat arrays on NumPy (for
``parallel.for_rows``), one range on CuPy (one kernel per ufunc).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minilora import parallel
from minilora.tensor import Tensor


class FlatGroup:
    """The flat buffers of one parameter group's trainable parameters (one dtype, one device)."""

    def __init__(self, params: list[Tensor]) -> None:
        xp = params[0].xp
        self.xp, self.params = xp, list(params)
        self.dtype = params[0].data.dtype
        self.offsets, off = [], 0
        for p in self.params:
            self.offsets.append((off, off + int(p.data.size)))
            off += int(p.data.size)
        self.size = off
        self.data, self.views = self._flatten([p.data for p in self.params])
        for p, v in zip(self.params, self.views):
            p.data = v
        self.grad: Any = None
        self.grad_views: list[Any] = []
        self.moments: dict[str, tuple[Any, list[Any]]] = {}

    @staticmethod
    def key(params: list[Tensor]) -> tuple[int, ...]:
        return tuple(id(p) for p in params)

    @staticmethod
    def can_flatten(params: list[Tensor]) -> bool:
        """One dtype, one array type (device): otherwise the optimizer keeps its per-parameter loop."""
        if not params:
            return False
        first = params[0].data
        return all(p.data.dtype == first.dtype and type(p.data) is type(first) for p in params)

    def _flatten(self, arrays: list[Any]) -> tuple[Any, list[Any]]:
        flat = self.xp.empty(self.size, dtype=self.dtype)
        views = []
        for (a, b), p, arr in zip(self.offsets, self.params, arrays):
            view = flat[a:b].reshape(p.data.shape)
            if arr is not None:
                view[...] = arr
            views.append(view)
        return flat, views

    def attached(self, states: list[dict[str, Any]]) -> bool:
        """Every parameter and every moment is still the view this group made (nobody replaced one)."""
        if any(p.data is not v for p, v in zip(self.params, self.views)):
            return False
        for name, (_, views) in self.moments.items():
            if any(s.get(name) is not v for s, v in zip(states, views)):
                return False
        return True

    def moment(self, name: str, states: list[dict[str, Any]]) -> Any:
        """The flat array of state buffer ``name`` (zeros where a parameter has none yet); views go in the states."""
        if name not in self.moments:
            flat, views = self._flatten([s.get(name) for s in states])
            for (a, b), s in zip(self.offsets, states):
                if name not in s:
                    flat[a:b] = 0
            for s, v in zip(states, views):
                s[name] = v
            self.moments[name] = (flat, views)
        return self.moments[name][0]

    def grads_gathered(self) -> bool:
        return self.grad is not None and all(p.grad is v for p, v in zip(self.params, self.grad_views))

    def gather_grads(self) -> Any:
        """Copy each p.grad into the flat gradient array (once), make p.grad a view of it; return the array."""
        if self.grad is None:
            self.grad, self.grad_views = self._flatten([None] * len(self.params))
        for p, v in zip(self.params, self.grad_views):
            if p.grad is not v:
                v[...] = p.grad
                p.grad = v
        return self.grad

    def chunks(self, gathered: bool) -> list[tuple[int, int, int]]:
        """(parameter index or -1 for the whole group, start, stop) ranges for the update to run over.

        Gathered gradients: ranges of the flat arrays. Otherwise each parameter's own range, since its
        gradient is its own array. On NumPy the ranges are cut to parallel.CHUNK elements.
        """
        whole = [(-1, 0, self.size)] if gathered else [(i, a, b) for i, (a, b) in enumerate(self.offsets)]
        if self.xp is not np:
            return whole
        step = parallel.CHUNK
        return [(i, s, min(s + step, b)) for i, a, b in whole for s in range(a, b, step)]
