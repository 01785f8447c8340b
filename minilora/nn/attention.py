"""What every family's attention shares: the KV cache, the prefix-tuning keys and the padding mask.

A family's attention module (GPT-2's in nn/gpt.py, Llama's in nn/llama.py) takes three hooks, served
here for the fine-tuning methods and generation:

- ``attention_mask`` (B, T_total): 1 for real tokens, 0 for padding, over the key
  positions (cached and new; never the prefix). Combined with causality.
- ``prefix_kv`` = (k_prefix, v_prefix), each (B or 1, nh, P, hs): prefix tuning's
  learned keys and values, put in front of K and V. Every query sees them; the
  causal mask, aligned to the end of the keys, keeps the real tokens causal.
- ``kv_cache``: one layer's LayerKVCache. New keys and values are written into
  it and attention runs over everything cached so far, so a generation step
  costs one token's work. The prefix is not cached: it is put in front again
  at every step (P is small), so the cache holds real positions only.

``attend(owner, q, k, v, attention_mask, prefix_kv, kv_cache, dropout_p)`` serves all three
around the attention op; a family's module only makes its q, k, v and projects the result.
"""

from __future__ import annotations

from typing import Any

from minilora import backend
from minilora import functional as F  # noqa: N812
from minilora.autograd import is_grad_enabled
from minilora.tensor import Tensor


def expand_batch(t: Tensor, B: int) -> Tensor:
    """``t`` with a leading axis of size B: (1, ...) is broadcast (its gradient sums back), (B, ...) passes."""
    if t.shape[0] == B:
        return t
    if t.shape[0] != 1:
        raise ValueError(f"expected a leading (batch) axis of size 1 or {B}, got shape {t.shape}")
    return t + t.xp.zeros((B,) + (1,) * (t.ndim - 1), dtype=t.dtype)  # Add's backward unbroadcasts


class LayerKVCache:
    """One layer's past keys and values, (B, nh, max_len, hs) buffers filled from the left.

    Inference only: the cached arrays carry no graph, so using a cache while
    gradients are being recorded is refused.
    """

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.k: Any = None
        self.v: Any = None
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, nh, T, hs) after the cached positions; return all keys and values so far."""
        if is_grad_enabled() and (k.requires_grad or v.requires_grad):
            raise RuntimeError("KVCache is for inference: run generation under minilora.no_grad()")
        B, nh, T, hs = k.shape
        if self.k is None:
            self.k = k.xp.empty((B, nh, self.max_len, hs), dtype=k.dtype)
            self.v = k.xp.empty((B, nh, self.max_len, hs), dtype=v.dtype)
        elif self.k.shape[:2] != (B, nh) or self.k.shape[3] != hs:
            raise ValueError(f"KVCache: new keys of shape {k.shape} do not fit the cache {tuple(self.k.shape)}")
        end = self.length + T
        if end > self.max_len:
            raise ValueError(f"KVCache: {end} positions would exceed the cache size {self.max_len}")
        self.k[:, :, self.length : end] = k.data
        self.v[:, :, self.length : end] = v.data
        self.length = end
        return Tensor(self.k[:, :, :end]), Tensor(self.v[:, :, :end])  # (B, nh, end, hs)


class KVCache:
    """The KV caches of every layer of a model, plus the model-level position count.

    ``length`` is the number of positions processed so far (soft prompt
    positions included; prefix-tuning prefixes never), ``n_prompt`` how many of
    them are prompt-tuning embeddings (set by the model at the first step).
    """

    def __init__(self, n_layer: int, max_len: int) -> None:
        self.layers = [LayerKVCache(max_len) for _ in range(n_layer)]
        self.max_len = max_len
        self.n_prompt = 0

    def __getitem__(self, i: int) -> LayerKVCache:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def length(self) -> int:
        return self.layers[0].length if self.layers else 0


def padding_mask(attention_mask: Any, T: int, n_prefix: int, device: str) -> Any:
    """The boolean (B, 1, T, n_prefix + Tk) "may attend" mask from a (B, Tk) 0/1 padding mask.

    Prefix keys are always visible. Each query may also always see its own key,
    so a padded query row is never empty (its output is unused, but stays finite);
    for real tokens that adds nothing. Causality is left to the attention op.
    """
    data = attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask
    if not backend.is_array(data):
        raise TypeError(f"attention_mask must be a Tensor or array, got {type(attention_mask).__name__}")
    if backend.device_of(data) != device:
        raise RuntimeError(f"attention_mask is on {backend.device_of(data)} but the model is on {device}")
    xp = backend.get_array_module(data)
    B, Tk = data.shape
    keys = data != 0  # (B, Tk)
    if n_prefix:
        keys = xp.concatenate([xp.ones((B, n_prefix), dtype=bool), keys], axis=1)  # (B, P + Tk)
    total = n_prefix + Tk
    own = xp.arange(total)[None, :] == (total - T + xp.arange(T))[:, None]  # (T, P + Tk): query i's own key
    return keys[:, None, None, :] | own[None, None, :, :]  # (B, 1, T, P + Tk)


def with_prefix(
    owner: str, k: Tensor, v: Tensor, prefix_kv: tuple[Tensor, Tensor] | None, heads: str = "n_head",
    width: str = "head_size",
) -> tuple[Tensor, Tensor, int]:
    """(k, v) (B, nkv, Tk, hs) with prefix tuning's keys and values in front, and the prefix length P.

    The prefix must be (B or 1, nkv, P, hs); ``heads`` and ``width`` are the owner's names for nkv and hs.
    """
    if prefix_kv is None:
        return k, v, 0
    B, nkv, _, hs = k.shape
    k_prefix, v_prefix = prefix_kv
    shape = k_prefix.shape
    if len(shape) != 4 or shape[1] != nkv or shape[3] != hs or v_prefix.shape != shape:
        raise ValueError(f"{owner}: prefix keys and values must both be (B or 1, {heads}={nkv}, P, {width}={hs}), "
                         f"got {k_prefix.shape} and {v_prefix.shape}")
    k = F.concat([expand_batch(k_prefix, B), k], axis=2)  # (B, nkv, P + Tk, hs)
    v = F.concat([expand_batch(v_prefix, B), v], axis=2)  # (B, nkv, P + Tk, hs)
    return k, v, shape[2]


def key_mask(owner: str, attention_mask: Any, T: int, Tk: int, n_prefix: int, device: str) -> Any:
    """The (B, 1, T, P + Tk) "may attend" mask from a (B, Tk) padding mask over the cached + new keys, or None."""
    if attention_mask is None:
        return None
    B = attention_mask.shape[0]
    if tuple(attention_mask.shape) != (B, Tk):
        raise ValueError(f"{owner}: attention_mask must be (B, T_total) = ({B}, {Tk}) (cached + new positions), "
                         f"got {tuple(attention_mask.shape)}")
    return padding_mask(attention_mask, T, n_prefix, device)  # (B, 1, T, P + Tk)


def attend(
    owner: str, q: Tensor, k: Tensor, v: Tensor, attention_mask: Any, prefix_kv: tuple[Tensor, Tensor] | None,
    kv_cache: LayerKVCache | None, dropout_p: float, heads: str = "n_head", width: str = "head_size",
) -> Tensor:
    """Causal attention of q over k, v with the three hooks served, in the one order that is right.

    The new k, v go into the cache first (so the cache holds real positions only), the prefix in
    front of all of them, and the padding mask covers the prefix and the cached + new keys.
    q (B, nh, T, hs); k, v (B, nkv, T, hs) -> (B, nh, T, hs). ``heads``, ``width``: as with_prefix.
    """
    if kv_cache is not None:
        k, v = kv_cache.append(k, v)  # (B, nkv, T_past + T, hs)
    Tk = k.shape[2]
    k, v, n_prefix = with_prefix(owner, k, v, prefix_kv, heads, width)  # (B, nkv, P + Tk, hs)
    mask = key_mask(owner, attention_mask, q.shape[2], Tk, n_prefix, q.device)  # (B, 1, T, P + Tk)
    return F.scaled_dot_product_attention(q, k, v, mask=mask, causal=True, dropout_p=dropout_p)  # (B, nh, T, hs)
