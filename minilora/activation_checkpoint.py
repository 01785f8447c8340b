"""Activation (gradient) checkpointing: keep a segment's input, not its graph, and rerun it in backward.

    y = checkpoint(fn, x)          forward:  y = fn(x) under no_grad; only x (and the random state) is kept
                                   backward: rerun y' = fn(x) with the graph on, the same random draws
                                             (dropout masks match), then backpropagate g_y through y'

A Transformer block keeps about a dozen (B, T, C)-sized arrays for backward; checkpointed, it keeps its
(B, T, C) input only, and each block's arrays exist only while that block is rerun. The price is one
more forward per block.

The node's inputs are every tensor requiring grad that ``fn`` reads from outside itself: its
arguments, the parameters of the modules it calls, tensors it captured (prefix tuning's keys). They
are found by running the forward with ``autograd.record_inputs``. So a segment whose arguments need no
gradient (a frozen embedding's output, the usual PEFT set-up) still gives its LoRA parameters their
gradients: PyTorch's reentrant checkpoint would silently train nothing there, and PEFT users need
``enable_input_require_grads`` to work around it. Here that case cannot happen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minilora import backend
from minilora.autograd import Function, backward, enable_grad, is_grad_enabled, no_grad, node_zeros, record_inputs
from minilora.gradcheck_cases import register
from minilora.tensor import Tensor


class Checkpoint(Function):
    """y = fn(args) with its graph dropped; in backward fn is rerun and g_y backpropagated through the rerun.

    Inputs u_1..u_k: every outside tensor requiring grad that fn reads.  g_u_i = (d fn / d u_i)^T g_y,
    computed by the engine on the rerun's graph, stopped at the u_i.
    """

    float_only = False

    def __init__(self, fn: Callable[..., Tensor], args: tuple[Any, ...], kwargs: dict[str, Any], rng: Any,
                 out: Any) -> None:
        self.fn, self.args, self.kwargs, self.rng, self.out = fn, args, kwargs, rng, out

    def forward(self, *used: Any) -> Any:
        out, self.out = self.out, None  # computed already, under no_grad: hand it over, hold no reference
        return out  # nothing is saved: the inputs (and fn's arguments) are all backward needs

    def backward(self, g_y: Any) -> tuple[Any, ...]:
        now = backend.generators_snapshot()
        backend.restore_generators(self.rng)  # the segment's own random draws again
        try:
            with enable_grad():
                y = self.fn(*self.args, **self.kwargs)
        finally:
            backend.restore_generators(now)  # the rest of the run draws as if nothing was rerun
        inputs = {id(u): u for u in self.inputs}
        sunk = backward(y, g_y, stop_at=inputs) if y.requires_grad else {}
        grads = []
        for u, need in zip(self.inputs, self.needs_input_grad, strict=True):
            g = sunk.get(id(u))
            if need and g is None:
                g = node_zeros(u)  # read, but with no path to the output
            grads.append(g.copy() if g is g_y else g)
        return tuple(grads)

    def release(self) -> None:
        super().release()
        self.fn = self.args = self.kwargs = self.rng = None


def checkpoint(fn: Callable[..., Tensor], *args: Any, **kwargs: Any) -> Tensor:
    """``fn(*args, **kwargs)``, keeping only its arguments for backward and rerunning it there.

    Gradients equal those of calling fn directly (the rerun replays the same random draws). fn must
    return one Tensor and compute the same thing when called again (no in-place changes to its inputs).
    Under no_grad it is just ``fn(*args, **kwargs)``.
    """
    if not is_grad_enabled():
        return _one_tensor(fn, fn(*args, **kwargs))
    rng = backend.generators_snapshot()
    with record_inputs() as used, no_grad():
        out = _one_tensor(fn, fn(*args, **kwargs))
    if not used:
        return out  # nothing upstream needs a gradient: there is nothing to rerun for
    return Checkpoint.apply(*used.values(), fn=fn, args=args, kwargs=kwargs, rng=rng, out=out.data)


def _one_tensor(fn: Any, out: Any) -> Tensor:
    if not isinstance(out, Tensor):
        name = getattr(fn, "__qualname__", type(fn).__name__)
        raise TypeError(
            f"checkpoint: {name} returned a {type(out).__name__}; it must return one Tensor (checkpoint a function "
            "that returns the tensor, and compute the other outputs outside it)"
        )
    return out


def _segment(x: Tensor, w: Tensor) -> Tensor:
    return ((x @ w).tanh() * x.sum(axis=-1, keepdims=True)).sigmoid()


def _segment_with_dropout(x: Tensor, w: Tensor) -> Tensor:
    from minilora.ops.dropout import dropout  # noqa: PLC0415

    backend.manual_seed(0)  # the same mask in every finite-difference evaluation (and in the rerun)
    return checkpoint(lambda a: dropout(a @ w, 0.3).tanh(), x)


register(Checkpoint, lambda x, w: checkpoint(_segment, x, w), (3, 4), (4, 4), name="Checkpoint (tanh segment)")
register(Checkpoint, _segment_with_dropout, (2, 3, 4), (4, 5), name="Checkpoint (dropout, captured weight)")
