"""GPT (GPT-2 / nanoGPT architecture and parameter names) and a sequence classifier on the same backbone.

    idx (B, T) -> wte (B, T, C) + wpe (T, C) -> drop
               -> n_layer x Block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))
               -> ln_f -> lm_head (B, T, V)          [GPT]
               -> ln_f -> last real token -> score (B, K)   [GPTForSequenceClassification]

Parameter names match nanoGPT and Hugging Face's GPT-2 one to one
(transformer.h.0.attn.c_attn.weight, ...; HF stores Conv1D weights transposed),
and lm_head.weight is the same Parameter as transformer.wte.weight.

Hooks for fine-tuning: ``prefix_kv`` (prefix tuning: per-layer keys and values in
front of K and V), ``prompt_embeds`` (prompt tuning: soft prompts in front of the
token embeddings, before positions are added), ``attention_mask`` (padding) and
``kv_cache`` (generation). See docs/models.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from minilora import backend
from minilora import functional as F  # noqa: N812
from minilora.autograd import no_grad
from minilora.nn.attention import CausalSelfAttention, KVCache, expand_batch
from minilora.nn.layers import GELU, Dropout, Embedding, LayerNorm, Linear, normal_, skip_init, zeros_
from minilora.nn.module import Module, ModuleDict, ModuleList
from minilora.tensor import Tensor


@dataclasses.dataclass
class GPTConfig:
    """Shape of a GPT. ``layer_norm_epsilon`` is 1e-5 as in GPT-2 (and is honoured when loading GPT-2 checkpoints)."""

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GPTConfig: {name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"GPTConfig.from_dict: unknown keys {unknown} (known: {sorted(known)})")
        return cls(**d)


class MLP(Module):
    """c_fc (C -> 4C), GELU (tanh), c_proj (4C -> C), dropout."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        C = config.n_embd
        self.c_fc = Linear(C, 4 * C, bias=config.bias)
        self.gelu = GELU("tanh")
        self.c_proj = Linear(4 * C, C, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(Module):
    """Pre-LayerNorm Transformer block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        C, eps = config.n_embd, config.layer_norm_epsilon
        self.ln_1 = LayerNorm(C, eps=eps, bias=config.bias)
        self.attn = CausalSelfAttention(C, config.n_head, bias=config.bias, dropout=config.dropout)
        self.ln_2 = LayerNorm(C, eps=eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, attention_mask: Any = None, prefix_kv: Any = None, kv_cache: Any = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), attention_mask=attention_mask, prefix_kv=prefix_kv, kv_cache=kv_cache)
        return x + self.mlp(self.ln_2(x))  # (B, T, C)


def _ids(x: Any, device: str, what: str) -> Any:
    """An integer (B, T) array on ``device`` from a Tensor, an array or a nested list."""
    data = x.data if isinstance(x, Tensor) else x
    if not backend.is_array(data):
        data = backend.to_device(data, "cpu")
    if data.dtype.kind not in "iu":
        raise TypeError(f"GPT: {what} must be integers, got dtype {data.dtype} with shape {tuple(data.shape)}")
    if backend.device_of(data) != device:
        data = backend.to_device(data, device)  # an explicit upload (host -> device)
    return data


def _mask_array(mask: Any, device: str) -> Any:
    """A 0/1 padding mask (Tensor, array or list; int, float or bool) as an array on ``device``."""
    data = mask.data if isinstance(mask, Tensor) else mask
    if not backend.is_array(data):
        data = backend.to_device(data, "cpu")
    return data if backend.device_of(data) == device else backend.to_device(data, device)


class GPTBase(Module):
    """The shared backbone: ``transformer`` (wte, wpe, drop, h, ln_f) and ``hidden_states``.

    GPT and GPTForSequenceClassification differ only in their head.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        with skip_init():  # drawn once, by _init_weights
            self.transformer = self._build_transformer(config)

    @staticmethod
    def _build_transformer(config: GPTConfig) -> ModuleDict:
        return ModuleDict(
            {
                "wte": Embedding(config.vocab_size, config.n_embd),
                "wpe": Embedding(config.block_size, config.n_embd),
                "drop": Dropout(config.dropout),
                "h": ModuleList([Block(config) for _ in range(config.n_layer)]),
                "ln_f": LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
            }
        )

    def _init_weights(self) -> None:
        """GPT-2 init: N(0, 0.02) for Linear and Embedding weights, zero biases, residual projections
        (attn.c_proj, mlp.c_proj) N(0, 0.02 / sqrt(2 n_layer)) so the residual stream does not grow with depth.
        Each Parameter is drawn once (the tied embedding/head too), in module order, from the host generator."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        seen: set[int] = set()
        for name, m in self.named_modules():
            if not isinstance(m, (Linear, Embedding)) or id(m.weight) in seen:
                continue
            seen.add(id(m.weight))
            normal_(m.weight, residual_std if name.endswith("c_proj") else 0.02)
            if isinstance(m, Linear) and m.bias is not None:
                zeros_(m.bias)

    def check_token_ids(self, ids: Any) -> None:
        """Raise IndexError for ids outside [0, vocab_size): one host sync (CuPy would wrap them silently)."""
        if ids.size == 0:
            return
        xp = backend.get_array_module(ids)
        lo, hi = backend.to_host(xp.stack([ids.min(), ids.max()])).tolist()  # host: one small transfer
        V = self.config.vocab_size
        if lo < 0 or hi >= V:
            raise IndexError(
                f"{type(self).__name__}: token id {lo if lo < 0 else hi} is outside the vocabulary [0, {V}) "
                f"(ids of shape {tuple(ids.shape)})"
            )

    def hidden_states(
        self,
        idx: Any,
        *,
        attention_mask: Any = None,
        prefix_kv: Sequence[tuple[Tensor, Tensor]] | None = None,
        prompt_embeds: Tensor | None = None,
        kv_cache: KVCache | None = None,
        check_ids: bool = True,
    ) -> tuple[Tensor, int]:
        """The final hidden states (B, P + T, C) after ln_f, and P, the number of soft prompt positions in them.

        With a kv_cache holding earlier positions, only the new tokens are computed
        (P is then 0: the soft prompt was processed at the first step).
        """
        cfg = self.config
        device = self.device
        ids = _ids(idx, device, "token ids")
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"{type(self).__name__}: idx must be (B, T) with T >= 1, got shape {tuple(ids.shape)}")
        B, T = ids.shape
        past = kv_cache.length if kv_cache is not None else 0
        if prompt_embeds is not None and past == 0:
            pe = prompt_embeds if prompt_embeds.ndim == 3 else prompt_embeds.reshape(1, *prompt_embeds.shape)
            if pe.ndim != 3 or pe.shape[2] != cfg.n_embd:
                raise ValueError(
                    f"{type(self).__name__}: prompt_embeds must be (P, {cfg.n_embd}) or (B, P, {cfg.n_embd}), "
                    f"got {prompt_embeds.shape}"
                )
            P = pe.shape[1]
        else:
            pe, P = None, 0
        n_prompt = P if past == 0 else kv_cache.n_prompt  # soft prompt positions in the whole sequence
        if past + P + T > cfg.block_size:
            raise ValueError(
                f"{type(self).__name__}: sequence of {past + P + T} positions ({P} soft prompt + {T} tokens"
                f"{f' + {past} cached' if past else ''}) exceeds block_size {cfg.block_size}"
            )
        if prefix_kv is not None and len(prefix_kv) != cfg.n_layer:
            raise ValueError(f"{type(self).__name__}: prefix_kv needs one (k, v) pair per layer "
                             f"({cfg.n_layer}), got {len(prefix_kv)}")
        if check_ids:
            self.check_token_ids(ids)
        wte, wpe = self.transformer.wte, self.transformer.wpe
        x = wte(ids, check_ids=False)  # (B, T, C)
        if pe is not None:
            x = F.concat([expand_batch(pe, B), x], axis=1)  # (B, P + T, C)
        pos = backend.module_for(device).arange(past, past + P + T)  # (P + T,)
        x = self.transformer.drop(x + wpe(pos, check_ids=False))  # (B, P + T, C)
        mask = self._full_mask(attention_mask, B, past + P + T, n_prompt, device)
        for i, block in enumerate(self.transformer.h):
            x = block(
                x,
                attention_mask=mask,
                prefix_kv=prefix_kv[i] if prefix_kv is not None else None,
                kv_cache=kv_cache[i] if kv_cache is not None else None,
            )
        if kv_cache is not None and past == 0:
            kv_cache.n_prompt = P
        return self.transformer.ln_f(x), P  # (B, P + T, C)

    def _full_mask(self, attention_mask: Any, B: int, total: int, n_prompt: int, device: str) -> Any:
        """The (B, total) padding mask over every position: ones are put in front for soft prompt positions."""
        if attention_mask is None:
            return None
        m = _mask_array(attention_mask, device)
        if m.ndim == 2 and m.shape == (B, total - n_prompt) and n_prompt:
            xp = backend.get_array_module(m)
            m = xp.concatenate([xp.ones((B, n_prompt), dtype=m.dtype), m], axis=1)
        if m.ndim != 2 or m.shape != (B, total):
            raise ValueError(
                f"{type(self).__name__}: attention_mask must be (B, T) = ({B}, {total - n_prompt}) over the real "
                f"tokens (cached + new), got {tuple(m.shape)}"
            )
        return m


class GPT(GPTBase):
    """The GPT-2 language model (nanoGPT layout); lm_head.weight is tied to transformer.wte.weight."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        with skip_init():
            self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # one Parameter in two places: both gradients sum into it
        self._init_weights()

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", dropout: float = 0.0) -> GPT:
        """Load a Hugging Face GPT-2 folder (config.json + model.safetensors): see minilora.hf.gpt2."""
        from minilora.hf.gpt2 import from_pretrained  # noqa: PLC0415  (optional extra, imported on use)

        return from_pretrained(path, device=device, dropout=dropout)

    def save_pretrained(self, path: str, **kwargs: Any) -> None:
        """Write a Hugging Face GPT-2 folder that GPT2LMHeadModel loads: see minilora.hf.gpt2."""
        from minilora.hf.gpt2 import save_pretrained  # noqa: PLC0415

        save_pretrained(self, path, **kwargs)

    def forward(
        self,
        idx: Any,
        targets: Any = None,
        *,
        attention_mask: Any = None,
        prefix_kv: Sequence[tuple[Tensor, Tensor]] | None = None,
        prompt_embeds: Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """(logits (B, T, V) over the T real tokens, mean cross entropy over targets != -100 or None)."""
        h, P = self.hidden_states(
            idx, attention_mask=attention_mask, prefix_kv=prefix_kv, prompt_embeds=prompt_embeds, kv_cache=kv_cache
        )
        if P:
            h = h[:, P:, :]  # drop the soft prompt positions: (B, T, C)
        logits = self.lm_head(h)  # (B, T, V)
        loss = None
        if targets is not None:
            tgt = _ids(targets, logits.device, "targets")
            B, T, V = logits.shape
            if tuple(tgt.shape) != (B, T):
                raise ValueError(f"GPT: targets must have the shape of idx ({B}, {T}), got {tuple(tgt.shape)}")
            loss = F.cross_entropy(logits.reshape(B * T, V), tgt.reshape(B * T), ignore_index=-100)
        return logits, loss

    def generate(
        self,
        idx: Any,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        use_cache: bool = True,
        **forward_kwargs: Any,
    ) -> Any:
        """Append ``max_new_tokens`` sampled tokens to idx (B, T) and return it (see docs/models.md).

        temperature 0 is greedy; top_k keeps the k most likely tokens; ``seed`` gives a
        private generator (else the device generator of ``minilora.manual_seed``).
        forward_kwargs (prefix_kv, prompt_embeds, attention_mask) go to every forward.
        With the KV cache each step computes one token; the tokens equal those of
        ``use_cache=False``, which recomputes the (cropped) sequence at every step.
        Runs in eval mode under no_grad. Returns a Tensor if idx was one, else an
        array on the model's device.
        """
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                ids = self._generate(idx, max_new_tokens, temperature, top_k, seed, use_cache, forward_kwargs)
        finally:
            self.train(was_training)
        return Tensor(ids) if isinstance(idx, Tensor) else ids

    def _generate(
        self, idx: Any, n_new: int, temperature: float, top_k: int | None, seed: int | None, use_cache: bool,
        kwargs: dict[str, Any],
    ) -> Any:
        unknown = set(kwargs) - {"prefix_kv", "prompt_embeds", "attention_mask"}
        if unknown:
            raise TypeError(f"GPT.generate: unexpected keyword arguments {sorted(unknown)}")
        if temperature < 0:
            raise ValueError(f"GPT.generate: temperature must be >= 0, got {temperature}")
        cfg, device = self.config, self.device
        xp = backend.module_for(device)
        ids = _ids(idx, device, "idx")
        self.check_token_ids(ids)
        prefix_kv, prompt = kwargs.get("prefix_kv"), kwargs.get("prompt_embeds")
        mask = kwargs.get("attention_mask")
        mask = None if mask is None else _mask_array(mask, device)
        window = cfg.block_size - (prompt.shape[-2] if prompt is not None else 0)  # real tokens that fit
        if window < 1:
            raise ValueError(f"GPT.generate: the soft prompt fills the whole block_size {cfg.block_size}")
        rng = xp.random.default_rng(seed) if seed is not None else backend.device_rng(device)
        cache = KVCache(cfg.n_layer, cfg.block_size) if use_cache else None
        B = ids.shape[0]
        for _ in range(n_new):
            T = ids.shape[1]
            if cache is not None and T <= window:
                first = cache.length == 0
                h, _ = self.hidden_states(
                    ids if first else ids[:, -1:], attention_mask=mask, prefix_kv=prefix_kv,
                    prompt_embeds=prompt if first else None, kv_cache=cache, check_ids=False,
                )
            else:
                cache = None  # the window slides past block_size: recompute it, as nanoGPT does
                h, _ = self.hidden_states(
                    ids[:, -window:], attention_mask=None if mask is None else mask[:, -window:],
                    prefix_kv=prefix_kv, prompt_embeds=prompt, check_ids=False,
                )
            logits = self.lm_head(h[:, -1, :]).data  # (B, V)
            nxt = _sample(xp, logits, temperature, top_k, rng)  # (B, 1), on the device
            ids = xp.concatenate([ids, nxt.astype(ids.dtype)], axis=1)
            if mask is not None:
                mask = xp.concatenate([mask, xp.ones((B, 1), dtype=mask.dtype)], axis=1)
        return ids


def _sample(xp: Any, logits: Any, temperature: float, top_k: int | None, rng: Any) -> Any:
    """Next ids (B, 1): argmax for temperature 0, else a Gumbel-max draw from softmax(logits / temperature).

    argmax(z + g) with g = -log(-log(u)), u ~ U(0, 1), is an exact sample of softmax(z),
    drawn with one random array and no cumulative sums or host round trips.
    """
    if temperature == 0:
        return logits.argmax(axis=-1)[:, None]
    z = logits.astype(xp.float64) / temperature
    if top_k is not None:
        k = min(int(top_k), z.shape[-1])
        kth = xp.sort(z, axis=-1)[:, -k][:, None]  # (B, 1): the k-th largest
        z = xp.where(z < kth, -xp.inf, z)
    u = xp.clip(rng.random(z.shape), 1e-300, 1.0 - 1e-16)
    return (z - xp.log(-xp.log(u))).argmax(axis=-1)[:, None]


class GPTForSequenceClassification(GPTBase):
    """A GPT backbone (same ``transformer`` names, so GPT weights load) with a ``score`` head on the last real token."""

    def __init__(self, config: GPTConfig, num_classes: int) -> None:
        super().__init__(config)
        if num_classes < 1:
            raise ValueError(f"GPTForSequenceClassification: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        with skip_init():
            self.score = Linear(config.n_embd, num_classes, bias=False)
        self._init_weights()

    @classmethod
    def from_gpt(cls, gpt: GPTBase, num_classes: int) -> GPTForSequenceClassification:
        """A classifier whose backbone is a copy of ``gpt``'s (same device and dtype); ``score`` is new."""
        model = cls(gpt.config, num_classes).to(gpt.device, gpt.dtype)
        backbone = {k: v for k, v in gpt.state_dict().items() if k.startswith("transformer.")}
        model.load_state_dict(backbone, strict=False)
        return model

    def forward(
        self,
        idx: Any,
        labels: Any = None,
        *,
        attention_mask: Any = None,
        prefix_kv: Sequence[tuple[Tensor, Tensor]] | None = None,
        prompt_embeds: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """(logits (B, num_classes) at each row's last real token, mean cross entropy against labels (B,) or None)."""
        h, P = self.hidden_states(idx, attention_mask=attention_mask, prefix_kv=prefix_kv, prompt_embeds=prompt_embeds)
        B = h.shape[0]
        if attention_mask is None:
            last = h[:, -1, :]  # (B, C)
        else:
            xp = h.xp
            real = self._full_mask(attention_mask, B, h.shape[1], P, h.device) != 0  # (B, P + T)
            # (B,) the last real position, whichever side the padding is on
            pos = real.shape[1] - 1 - real[:, ::-1].astype(xp.int8).argmax(axis=1)
            last = h[xp.arange(B), pos]  # (B, C)
        logits = self.score(last)  # (B, num_classes)
        loss = None
        if labels is not None:
            lab = _ids(labels, logits.device, "labels")
            if tuple(lab.shape) != (B,):
                raise ValueError(f"GPTForSequenceClassification: labels must be ({B},), got {tuple(lab.shape)}")
            loss = F.cross_entropy(logits, lab)
        return logits, loss

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"
