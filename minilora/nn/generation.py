"""Text generation, written once for every causal LM (any ``CausalLMBase`` with an ``lm_head``).

Each step turns the last position's logits z (B, V) into the next token:

    greedy (do_sample=False, or temperature 0):   argmax z
    sampled:   z / temperature  -> keep the top_k largest (top_k 0 or None: all)
                                -> keep the smallest set whose probability reaches top_p (nucleus)
                                -> one draw from softmax of what is left

The draw is Gumbel-max: argmax(z + g), g = -log(-log(u)), u ~ U(0, 1), an exact sample of
softmax(z) with one random array and no host round trip. With ``eos_token_id`` a row that
emits it is finished: it gets ``pad_token_id`` (default: eos) from then on, and generation
stops early once every row is finished (one host read per step, only then).

With the KV cache each step computes one token, and the tokens equal those of
``use_cache=False``, which recomputes the (cropped) sequence at every step. Past the
model's position limit the window slides and is recomputed, as nanoGPT does.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from minilora import backend
from minilora.autograd import no_grad
from minilora.nn.attention import KVCache
from minilora.nn.inputs import as_ids, as_mask, mask_positions
from minilora.tensor import Tensor

FORWARD_KWARGS = ("prefix_kv", "prompt_embeds", "attention_mask")


def generate(
    model: Any,
    idx: Any,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    *,
    top_p: float | None = None,
    do_sample: bool | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    **forward_kwargs: Any,
) -> Any:
    """Append up to ``max_new_tokens`` tokens to idx (B, T) and return the sequences (see the module docstring).

    do_sample: None samples unless temperature is 0; False is greedy; True with temperature 0 is refused.
    seed gives a private generator (else the device generator of ``minilora.manual_seed``).
    forward_kwargs (prefix_kv, prompt_embeds, attention_mask) go to every forward.
    Runs in eval mode under no_grad. Returns a Tensor if idx was one, else an array on the model's device.
    """
    name = f"{type(model).__name__}.generate"
    unknown = set(forward_kwargs) - set(FORWARD_KWARGS)
    if unknown:
        raise TypeError(f"{name}: unexpected keyword arguments {sorted(unknown)}")
    greedy = _check_options(name, max_new_tokens, temperature, top_k, top_p, do_sample, eos_token_id, pad_token_id)
    shape = tuple(getattr(idx, "shape", ()))
    if len(shape) != 2 or shape[1] < 1:
        raise ValueError(f"{name}: idx must be a (batch, time) array of token ids with time >= 1, got shape {shape} "
                         "(for one sequence use ids[None, :])")
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            temp = None if greedy else float(temperature)  # host: the caller's Python number, not an array
            ids = _generate(model, idx, max_new_tokens, temp, top_k, top_p, seed,
                            use_cache, eos_token_id, pad_token_id, forward_kwargs)
    finally:
        model.train(was_training)
    return Tensor(ids) if isinstance(idx, Tensor) else ids


def _check_options(
    name: str, n: Any, temperature: Any, top_k: Any, top_p: Any, do_sample: Any, eos: Any, pad: Any
) -> bool:
    """Validate every option before anything runs; True for greedy decoding."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{name}: max_new_tokens must be a non-negative integer, got {n!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not math.isfinite(temperature) \
            or temperature < 0:
        raise ValueError(f"{name}: temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        raise ValueError(f"{name}: top_k must be a non-negative integer (0 or None: off), got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0.0 < top_p <= 1.0):
        raise ValueError(f"{name}: top_p must be in (0, 1] (None: off), got {top_p!r}")
    if do_sample not in (None, True, False):
        raise ValueError(f"{name}: do_sample must be True, False or None, got {do_sample!r}")
    if do_sample is True and temperature == 0:
        raise ValueError(f"{name}: do_sample=True needs a temperature > 0, got 0 (use do_sample=False for greedy)")
    for label, v in (("eos_token_id", eos), ("pad_token_id", pad)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise ValueError(f"{name}: {label} must be a non-negative integer or None, got {v!r}")
    return do_sample is False or temperature == 0


def _generate(
    model: Any, idx: Any, n_new: int, temperature: float | None, top_k: int | None, top_p: float | None,
    seed: int | None, use_cache: bool, eos: int | None, pad: int | None, kwargs: dict[str, Any],
) -> Any:
    device = model.device
    xp = backend.module_for(device)
    ids = as_ids(idx, device, "idx", type(model).__name__)
    model.check_token_ids(ids)
    if pad is not None and pad >= model.vocab_size:
        raise ValueError(f"{type(model).__name__}.generate: pad_token_id {pad} is outside the vocabulary "
                         f"[0, {model.vocab_size})")
    prefix_kv, prompt = kwargs.get("prefix_kv"), kwargs.get("prompt_embeds")
    mask = kwargs.get("attention_mask")
    mask = None if mask is None else as_mask(mask, device)
    limit = model.max_positions - model.position_offset(prefix_kv[0][0].shape[2] if prefix_kv else 0)
    n_prompt = prompt.shape[-2] if prompt is not None else 0
    window = limit - n_prompt  # real tokens that fit
    if window < 1:
        raise ValueError(f"{type(model).__name__}.generate: the soft prompt and prefix fill the whole "
                         f"{model.max_positions_field} {model.max_positions}")
    rng = xp.random.default_rng(seed) if seed is not None else backend.device_rng(device)
    cache = KVCache(model.n_layer, limit) if use_cache else None
    B = ids.shape[0]
    done = xp.zeros((B, 1), dtype=bool) if eos is not None else None
    for _ in range(n_new):
        T = ids.shape[1]
        if cache is not None and T <= window:
            first = cache.length == 0
            n = T + n_prompt if first else 1  # positions computed now (the soft prompt at the first step)
            h, _ = model.hidden_states(
                ids if first else ids[:, -1:], attention_mask=mask, prefix_kv=prefix_kv,
                prompt_embeds=prompt if first else None, kv_cache=cache, check_ids=False,
                position_ids=None if mask is None else mask_positions(mask, n_prompt)[:, -n:],
            )
        else:
            cache = None  # the window slides past the position limit: recompute it
            part = None if mask is None else mask[:, -window:]
            h, _ = model.hidden_states(
                ids[:, -window:], attention_mask=part, prefix_kv=prefix_kv, prompt_embeds=prompt, check_ids=False,
                position_ids=None if part is None else mask_positions(part, n_prompt),
            )
        logits = model.lm_head(h[:, -1, :]).data  # (B, V)
        nxt = next_tokens(xp, logits, temperature, top_k, top_p, rng).astype(ids.dtype)  # (B, 1), on the device
        if done is not None:
            nxt = xp.where(done, pad if pad is not None else eos, nxt)  # finished rows are padded
            done = done | (nxt == eos)
        ids = xp.concatenate([ids, nxt], axis=1)
        if mask is not None:
            mask = xp.concatenate([mask, xp.ones((B, 1), dtype=mask.dtype)], axis=1)
        if done is not None and bool(backend.to_host(done.all())):  # host: one flag per step, to stop early
            break
    return ids


def next_tokens(xp: Any, logits: Any, temperature: float | None, top_k: int | None, top_p: float | None,
                rng: Any) -> Any:  # fmt: skip
    """Next ids (B, 1) from logits (B, V): argmax when temperature is None, else a filtered Gumbel-max draw."""
    if temperature is None:
        return logits.argmax(axis=-1)[:, None]
    z = logits.astype(xp.float64) / temperature  # (B, V)
    if top_k:  # 0 and None: off
        k = min(int(top_k), z.shape[-1])
        kth = xp.sort(z, axis=-1)[:, -k][:, None]  # (B, 1): the k-th largest
        z = xp.where(z < kth, -xp.inf, z)
    if top_p is not None and top_p < 1.0:
        order = xp.argsort(-z, axis=-1)  # (B, V): most likely first
        zs = xp.take_along_axis(z, order, axis=-1)  # (B, V)
        p = xp.exp(zs - zs[:, :1])
        p /= p.sum(axis=-1, keepdims=True)  # (B, V) sorted probabilities
        before = xp.cumsum(p, axis=-1) - p  # (B, V): the mass strictly ahead of each token
        keep_sorted = before < top_p  # the most likely token always stays (0 < top_p)
        keep = xp.empty_like(keep_sorted)
        keep[xp.arange(z.shape[0])[:, None], order] = keep_sorted  # back to vocabulary order
        z = xp.where(keep, z, -xp.inf)
    u = xp.clip(rng.random(z.shape), 1e-300, 1.0 - 1e-16)
    return (z - xp.log(-xp.log(u))).argmax(axis=-1)[:, None]
