"""LoRA initialisations that start from the base weight: PiSSA (Meng et al. 2024) and OLoRA (Büyükakyüz 2024).

Both put the principal part of W0 (out, in) into the adapter and leave the rest in the base, so the
layer computes exactly W0 x at step 0 and training starts along W0's most important directions:

PiSSA:  W0 = U S V^T (SVD, singular values descending); with the top r triplets and s the LoRA scaling
            A = (S_r / s)^1/2 V_r^T   (r, in),   B = U_r (S_r / s)^1/2   (out, r),
        so s B A = U_r S_r V_r^T, the best rank-r approximation of W0 (sign-free: flipping a singular
        pair flips a row of A and a column of B together). "pissa_niter_N" takes U_r, S_r, V_r from a
        randomised SVD with N power iterations (Halko et al. 2011, as torch.svd_lowrank) instead.
OLoRA:  W0 = Q R (QR decomposition);  B = Q[:, :r]  (out, r),  A = R[:r]  (r, in).

In both the frozen base becomes the residual  W_res = W0 - s B A,  as PEFT's peft/tuners/lora/layer.py
does (pissa_init, olora_init). The adapter is then only meaningful on that residual base, so the layer
also keeps the initial A0, B0 (``LoraInitial``: buffers, never trained, in the model's state_dict and so in
a Trainer checkpoint): lora_convert.py turns the trained adapter into a plain LoRA on the original W0.
"""

from __future__ import annotations

import re
from typing import Any

from minilora import backend
from minilora.nn import Module

BASE_CHANGING_INITS = ("pissa", "olora")  # plus "pissa_niter_<N>"


class LoraInitial(Module):
    """The adapter's A0 (r, in) and B0 (out, r) as initialised, kept as buffers (frozen, checkpointed, moved by
    to()) so the trained adapter can be re-expressed on the original base (lora_convert.py)."""

    def __init__(self, a0: Any, b0: Any) -> None:
        super().__init__()
        self.register_buffer("lora_A", a0.copy())  # (r, in): a copy, never the trained Parameter's array
        self.register_buffer("lora_B", b0.copy())  # (out, r)


def changes_base(init: str) -> bool:
    """True for an initialisation that replaces the base weight by a residual (PiSSA, OLoRA)."""
    return init in BASE_CHANGING_INITS or re.fullmatch(r"pissa_niter_\d+", init) is not None


def svd_lowrank(w: Any, r: int, niter: int) -> tuple[Any, Any, Any]:
    """(U_r (out, r), S_r (r,), V_r (in, r)) of w from a randomised range finder with ``niter`` power iterations."""
    xp = backend.get_array_module(w)
    g = backend.to_device(backend.host_rng().standard_normal((w.shape[1], r)), backend.device_of(w), w.dtype)
    q, _ = xp.linalg.qr(w @ g)  # (out, r): an orthonormal basis of w's dominant range
    for _ in range(niter):  # power iterations sharpen it, re-orthonormalised each half step
        z, _ = xp.linalg.qr(w.T @ q)  # (in, r)
        q, _ = xp.linalg.qr(w @ z)  # (out, r)
    u_b, s, vh = xp.linalg.svd(q.T @ w, full_matrices=False)  # the small (r, in) problem
    return q @ u_b, s, vh.T


def principal_init(w0: Any, r: int, scaling: float, init: str) -> tuple[Any, Any, Any]:
    """(A (r, in), B (out, r), W_res (out, in)) for ``init`` in "pissa", "pissa_niter_N", "olora".

    Computed in float64 on w0's device, returned in w0's dtype.
    """
    w = w0.astype("float64")
    if init == "olora":
        q, rr = backend.get_array_module(w).linalg.qr(w)  # (out, k), (k, in)
        b, a = q[:, :r], rr[:r]
    else:
        xp = backend.get_array_module(w)
        if init == "pissa":
            u, s, vh = xp.linalg.svd(w, full_matrices=False)
            u_r, s_r, vh_r = u[:, :r], s[:r], vh[:r]
        else:
            u_r, s_r, v_r = svd_lowrank(w, r, int(init.rsplit("_", 1)[1]))
            vh_r = v_r.T
        root = xp.sqrt(s_r / scaling)  # (r,)
        a = root[:, None] * vh_r  # (r, in)
        b = u_r * root[None, :]  # (out, r)
    residual = w - scaling * (b @ a)  # (out, in)
    dtype = w0.dtype
    return a.astype(dtype), b.astype(dtype), residual.astype(dtype)
