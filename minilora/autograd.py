"""The autograd engine: Function (one differentiable op) and the backward pass.

A forward call builds a define-by-run graph: each output Tensor remembers the
Function that made it (``_ctx``) and each Function its input Tensors. backward()
sorts that graph topologically with an explicit stack (no recursion, so a chain
of 10,000 ops is fine), walks it from the output to the leaves, calls each
Function's hand-written backward once, sums gradients where a tensor fans out,
and releases what each Function saved unless ``retain_graph=True``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from minilora import backend

if TYPE_CHECKING:
    from minilora.tensor import Tensor

FUNCTIONS: dict[str, type[Function]] = {}  # every op class, so gradcheck can insist each has a case
_grad_enabled = True
_RELEASED = object()
_used: dict[int, Tensor] | None = None  # activation_checkpoint's recorder: tensors requiring grad that ops read


@contextlib.contextmanager
def set_grad_enabled(mode: bool) -> Iterator[None]:
    """Inside this block ops record the graph if ``mode`` is true, else not (as torch.set_grad_enabled)."""
    global _grad_enabled
    prev, _grad_enabled = _grad_enabled, mode
    try:
        yield
    finally:
        _grad_enabled = prev


def no_grad() -> contextlib.AbstractContextManager[None]:
    """Inside this block ops record no graph (inference, weight updates)."""
    return set_grad_enabled(False)


def enable_grad() -> contextlib.AbstractContextManager[None]:
    """Record the graph again inside a no_grad block (activation checkpointing reruns a segment this way)."""
    return set_grad_enabled(True)


def is_grad_enabled() -> bool:
    return _grad_enabled


@contextlib.contextmanager
def record_inputs() -> Iterator[dict[int, Tensor]]:
    """Collect (by id) every tensor requiring grad that an op reads inside this block, graph or not.

    Run under no_grad, that is exactly what a segment takes from outside itself (its inputs, the
    parameters it uses, tensors it captured): activation_checkpoint makes them its node's inputs.
    """
    global _used
    prev, _used = _used, {}
    try:
        yield _used
    finally:
        _used = prev


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Undo broadcasting: the gradient of a broadcast input is g summed over the broadcast axes."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


class Function:
    """One differentiable op.

    Subclasses implement ``forward(*arrays) -> array`` on raw arrays and
    ``backward(g_y) -> tuple`` returning one gradient per input (None where
    ``self.needs_input_grad[i]`` is False: those are never computed). ``self.xp``
    is the array module of the inputs. Keyword arguments of ``apply`` go to
    ``__init__`` (axis, eps, ...). Only what backward needs is saved.
    """

    float_only = True  # refuse integer tensors (exp of an int is a user mistake); shape ops set False
    # True where backward returns newly allocated arrays, one per input, that nothing else references:
    # the engine may then sum a fan-out's other gradients into them in place instead of allocating a sum.
    # Ops that pass g_y through (Add, Reshape, Transpose, ...) return views and leave it False.
    fresh_grads = False
    xp: Any
    needs_input_grad: tuple[bool, ...]
    # The graph's edges: a leaf input as its Tensor, any other input as the Function that made it (see apply)
    inputs: tuple[Tensor | Function, ...] | None
    saved: Any
    out_shape: tuple[int, ...]
    out_dtype: Any
    requires_grad = True  # as a graph node a Function stands for its output, which always requires grad

    @property
    def _ctx(self) -> Function:
        """A node's producer: the Function itself (a leaf Tensor's ``_ctx`` is None), so the engine walks both alike."""
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            FUNCTIONS[f"{cls.__module__}.{cls.__qualname__}"] = cls

    @property
    def name(self) -> str:
        return type(self).__name__

    @classmethod
    def apply(cls, *inputs: Tensor, **params: Any) -> Tensor:
        fn = cls(**params)
        datas = [x.data for x in inputs]
        kind = type(datas[0])
        for d in datas:
            if type(d) is not kind:  # one array type means one device; otherwise compare devices properly
                _check_same_device(cls.__name__, inputs)
                break
        first = datas[0].dtype
        if (cls.float_only and not backend.is_floating(first)) or any(d.dtype != first for d in datas):
            _check_dtypes(cls.__name__, inputs, cls.float_only)
        needs = tuple([x.requires_grad for x in inputs])
        if _used is not None and True in needs:
            _used.update((id(x), x) for x in inputs if x.requires_grad)
        record = _grad_enabled and True in needs
        fn.needs_input_grad = needs if record else (False,) * len(inputs)
        fn.xp = np if kind is np.ndarray else backend.get_array_module(*datas)
        fn.saved = ()
        out = Tensor(fn.forward(*datas))
        if record:
            # A non-leaf input is recorded by its producer, not its Tensor: the graph then keeps no activation
            # alive that no backward saved (PyTorch's graph holds nodes, not tensors, for the same reason).
            fn.inputs = tuple([x if x._ctx is None else x._ctx for x in inputs])
            fn.out_shape, fn.out_dtype = out.data.shape, out.data.dtype
            out._ctx = fn
            out.requires_grad = True
        return out

    def save_for_backward(self, *arrays: Any) -> None:
        if any(self.needs_input_grad):
            self.saved = arrays

    def forward(self, *xs: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, g_y: Any) -> tuple[Any, ...]:  # pragma: no cover - interface
        raise NotImplementedError

    def release(self) -> None:
        self.saved = _RELEASED
        self.inputs = None


def _check_dtypes(op: str, inputs: tuple[Tensor, ...], float_only: bool) -> None:
    """An op takes one floating dtype: float16 beside float32 is a user mistake (NumPy would promote silently
    and a 16-bit model would quietly compute in 32 bits); float ops refuse integer tensors too."""
    floats = [x for x in inputs if backend.is_floating(x.dtype)]
    if float_only and len(floats) < len(inputs):
        x = next(x for x in inputs if not backend.is_floating(x.dtype))
        raise TypeError(f"{op}: expected floating-point tensors, got dtype {x.dtype} with shape {tuple(x.shape)}")
    if len({x.dtype for x in floats}) > 1:
        desc = ", ".join(f"{x.dtype} {tuple(x.shape)}" for x in inputs)
        raise TypeError(f"{op}: inputs mix dtypes ({desc}); cast one first, e.g. x.astype(w.dtype)")


def _check_same_device(op: str, inputs: tuple[Tensor, ...]) -> None:
    device = inputs[0].device
    for x in inputs:
        if x.device != device:
            raise RuntimeError(
                f"{op}: inputs are on different devices ({device} and {x.device}); move them with .to(device) first"
            )


def backward(
    root: Tensor, grad: Any = None, retain_graph: bool = False, stop_at: dict[int, Tensor] | None = None
) -> dict[int, Any]:
    """Accumulate d(root)/d(leaf) into every leaf's ``.grad`` (see module docstring).

    ``stop_at`` (tensors by id) are treated as sinks: the walk does not go past them and their
    gradients are returned ({id: array}) instead of accumulated (activation checkpointing's rerun).
    """
    stop = stop_at or {}
    sunk: dict[int, Any] = {}
    if not root.requires_grad:
        raise RuntimeError("backward(): the tensor does not require grad and has no graph")
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward(): the output has shape {tuple(root.shape)}; pass grad= for a non-scalar output"
            )
        grad = root.xp.ones_like(root.data)
    elif isinstance(grad, Tensor):
        grad = grad.data
    if tuple(grad.shape) != tuple(root.shape):
        raise ValueError(f"backward(): grad shape {tuple(grad.shape)} does not match output shape {tuple(root.shape)}")

    start = root._ctx if root._ctx is not None else root  # the node that stands for root in the graph
    order = _topological_order(start, stop)
    grads: dict[int, Any] = {id(start): grad}
    # Arrays already stored as some leaf's .grad (and the caller's grad): a new leaf gradient that may share
    # memory with one of them is copied, so an in-place update of one .grad never changes another.
    handed_out: list[Any] = [grad]
    handed_views: list[Any] = [grad] if grad.base is not None else []
    owned: set[int] = set()  # ids of tensors whose pending gradient only the engine references (summed in place)
    for t in order:
        g = grads.pop(id(t), None)
        if g is None:
            continue
        owned.discard(id(t))
        if id(t) in stop:
            sunk[id(t)] = g
            continue
        fn = t._ctx
        if fn is None:  # a leaf: accumulate
            if t.grad is not None:
                t.grad = t.grad + g
            else:
                t.grad = g.copy() if _must_copy(g, handed_out, handed_views) else g
                handed_out.append(t.grad)
                if t.grad.base is not None:
                    handed_views.append(t.grad)
            continue
        in_grads = fn.backward(g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        for x, need, g_x in zip(fn.inputs, fn.needs_input_grad, in_grads, strict=True):
            if not need or g_x is None:
                continue
            shape, dtype = node_shape_dtype(x)
            if g_x.shape != shape:
                raise RuntimeError(
                    f"{fn.name}.backward returned a gradient of shape {tuple(g_x.shape)} "
                    f"for an input of shape {tuple(shape)}"
                )
            if g_x.dtype != dtype:
                g_x = g_x.astype(dtype)
            prev = grads.get(id(x))
            if prev is None:
                grads[id(x)] = g_x
                if fn.fresh_grads:
                    owned.add(id(x))
            elif id(x) in owned:
                prev += g_x  # in place: prev is a sum or a fresh op result no one else holds
            elif fn.fresh_grads:
                g_x += prev  # in place into this op's own fresh result; prev (maybe a view of g_y) is only read
                grads[id(x)] = g_x
                owned.add(id(x))
            else:
                grads[id(x)] = prev + g_x
                owned.add(id(x))
        if not retain_graph:
            fn.release()
    return sunk


def node_shape_dtype(x: Tensor | Function) -> tuple[tuple[int, ...], Any]:
    """Shape and dtype of a graph node: a leaf Tensor's, or the output of the Function that stands for it."""
    if isinstance(x, Function):
        return x.out_shape, x.out_dtype
    return x.data.shape, x.data.dtype


def node_zeros(x: Tensor | Function) -> Any:
    """Zeros shaped like a graph node's value, on its array module."""
    shape, dtype = node_shape_dtype(x)
    return x.xp.zeros(shape, dtype=dtype)


def _must_copy(g: Any, arrays: list[Any], views: list[Any]) -> bool:
    """True if g is one of ``arrays``, may overlap one, or is a broadcast view (one element in many places).

    The bounds checks run only where views exist, so the common case costs an identity scan.
    """
    if any(g is a for a in arrays):
        return True
    xp = backend.get_array_module(g)
    if g.base is not None:  # a view: it may point into any of them, or repeat elements (stride 0)
        return 0 in g.strides or any(xp.may_share_memory(g, a) for a in arrays)
    return any(xp.may_share_memory(g, v) for v in views)  # g owns its memory: only views can point into it


def _topological_order(root: Any, stop: dict[int, Any]) -> list[Any]:
    """Nodes (Functions and leaf Tensors) from root to leaves, each after every node that uses it (iterative DFS)."""
    order: list[Any] = []
    visited: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        fn = t._ctx
        if fn is None or id(t) in stop:
            continue
        if fn.saved is _RELEASED:
            raise RuntimeError(
                f"backward through the graph a second time (at {fn.name}): its saved arrays were released; "
                "call backward(retain_graph=True) the first time"
            )
        for x in fn.inputs:
            if x.requires_grad and id(x) not in visited:
                stack.append((x, False))
    order.reverse()
    return order


from minilora.tensor import Tensor  # noqa: E402  (last: tensor.py imports the ops, which import Function)
