"""One causal-LM core: what every decoder-only family shares, so that a family supplies only its blocks.

    idx (B, T) -> token embedding (B, T, C) -> [soft prompt ; x] (B, P + T, C)
               -> family's positions (GPT-2: + wpe; Llama: rotary cos/sin handed to the blocks)
               -> n_layer x family Block(x, attention_mask, prefix_kv, kv_cache, **position kwargs)
               -> final norm -> lm_head (B, T, V)             [CausalLMMixin]
               -> final norm -> last real token -> score (B, K)   [SequenceClassifierMixin]

``CausalLMBase.hidden_states`` holds the plumbing of the fine-tuning hooks (``prompt_embeds``
for prompt tuning, ``prefix_kv`` for prefix tuning, ``attention_mask`` for padding, ``kv_cache``
for generation). A family subclass provides four things:

- ``module_paths``: where its own, checkpoint-named modules are (GPT-2's transformer.wte,
  transformer.h, transformer.ln_f; Llama's model.embed_tokens, ...), which the core's
  ``embed_tokens`` (an Embedding), ``blocks`` (a ModuleList) and ``final_norm`` properties follow;
- ``max_positions_field``: its config field for the longest sequence it can place (GPT-2's
  block_size, Llama's max_position_embeddings), read by ``max_positions`` and named in errors;
- ``positions(x, pos)``: ``(x, block_kwargs)`` for absolute positions ``pos`` (T,);
- ``init_std(name)``: the standard deviation its init draws the weight of module ``name`` with.

The heads are mixins (``CausalLMMixin``, ``SequenceClassifierMixin``) over a family's base,
so GPT and LlamaForCausalLM share forward, generate and save_pretrained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from minilora import backend
from minilora import functional as F  # noqa: N812
from minilora.nn.attention import KVCache, expand_batch
from minilora.nn.checkpointing import GradientCheckpointing
from minilora.nn.generation import generate
from minilora.nn.inputs import as_ids, as_mask  # noqa: F401  (public here too)
from minilora.nn.layers import Embedding, Linear, normal_, skip_init, zeros_
from minilora.nn.module import Module
from minilora.nn.precision import match
from minilora.tensor import Tensor


def _family_module(role: str) -> property:
    """A property for the family's module playing ``role``, at the path its ``module_paths`` gives."""

    def get(self: CausalLMBase) -> Module:
        if role not in self.module_paths:
            raise NotImplementedError(f"{type(self).__name__}: module_paths names no {role!r} (a family gives the "
                                      "checkpoint paths of its embed_tokens, blocks and final_norm)")
        return self.get_submodule(self.module_paths[role])

    return property(get, doc=f"The family's {role} module (at module_paths[{role!r}]).")


class CausalLMBase(GradientCheckpointing, Module):
    """The shared backbone plumbing; a family subclass builds its modules and says where they are."""

    config: Any
    backbone_prefix = ""  # the state-dict prefix of the backbone ("transformer." for GPT-2, "model." for Llama)

    # ---------------------------------------------------------------- what a family provides
    # the checkpoint paths of its modules: the core reaches them by role, so a family's names stay its checkpoints'
    module_paths: ClassVar[dict[str, str]] = {}  # "embed_tokens", "blocks", "final_norm" -> dotted path
    max_positions_field = "max_positions"  # the config field bounding the positions (GPT-2: "block_size")

    embed_tokens = _family_module("embed_tokens")  # an Embedding
    blocks = _family_module("blocks")  # a ModuleList of the family's blocks
    final_norm = _family_module("final_norm")

    @property
    def max_positions(self) -> int:
        return int(getattr(self.config, self.max_positions_field))

    def init_std(self, name: str) -> float:
        """The standard deviation of the normal init of the Linear or Embedding weight of module ``name``."""
        raise NotImplementedError

    def positions(self, x: Tensor, pos: Any) -> tuple[Tensor, dict[str, Any]]:
        """(x with positions applied, extra keyword arguments for every block) for absolute positions pos (T,)."""
        raise NotImplementedError

    def position_offset(self, n_prefix: int) -> int:
        """Where the first real position starts when ``n_prefix`` prefix-tuning keys sit in front (GPT-2: 0)."""
        return 0

    # ---------------------------------------------------------------- shared
    def _init_weights(self) -> None:
        """N(0, init_std(name)) for every Linear and Embedding weight, zero Linear biases (norms keep their ones).
        Each Parameter is drawn once (a tied embedding/head too), in module order, from the host generator."""
        seen: set[int] = set()
        for name, m in self.named_modules():
            if isinstance(m, (Linear, Embedding)) and id(m.weight) not in seen:
                seen.add(id(m.weight))
                normal_(m.weight, self.init_std(name))
                if isinstance(m, Linear) and m.bias is not None:
                    zeros_(m.bias)

    @property
    def n_layer(self) -> int:
        return len(self.blocks)

    @property
    def hidden_size(self) -> int:
        return int(self.embed_tokens.weight.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.embed_tokens.weight.shape[0])

    def check_token_ids(self, ids: Any) -> None:
        """Raise IndexError for ids outside [0, vocab_size): one host sync (CuPy would wrap them silently)."""
        if ids.size == 0:
            return
        xp = backend.get_array_module(ids)
        lo, hi = backend.to_host(xp.stack([ids.min(), ids.max()])).tolist()  # host: one small transfer
        V = self.vocab_size
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
        position_ids: Any = None,
        check_ids: bool = True,
    ) -> tuple[Tensor, int]:
        """The final hidden states (B, P + T, C) after the final norm, and P, the soft prompt positions in them.

        With a kv_cache holding earlier positions, only the new tokens are computed
        (P is then 0: the soft prompt was processed at the first step).
        position_ids (B, P + T) or (P + T,): the positions of what is computed, counted from the first
        soft-prompt position (cache included; prefix-tuning keys not: the family adds their offset).
        None: past, past + 1, ..., as transformers' forward does, padding or not; generate passes
        the positions a padding mask implies (mask_positions), as transformers' generate does.
        """
        name, C = type(self).__name__, self.hidden_size
        device = self.device
        ids = as_ids(idx, device, "token ids", name)
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"{name}: idx must be (B, T) with T >= 1, got shape {tuple(ids.shape)}")
        B, T = ids.shape
        past = kv_cache.length if kv_cache is not None else 0
        if prompt_embeds is not None and past == 0:
            pe = prompt_embeds if prompt_embeds.ndim == 3 else prompt_embeds.reshape(1, *prompt_embeds.shape)
            if pe.ndim != 3 or pe.shape[2] != C:
                raise ValueError(f"{name}: prompt_embeds must be (P, {C}) or (B, P, {C}), got {prompt_embeds.shape}")
            P = pe.shape[1]
        else:
            pe, P = None, 0
        n_prompt = P if past == 0 else kv_cache.n_prompt  # soft prompt positions in the whole sequence
        if prefix_kv is not None and len(prefix_kv) != self.n_layer:
            raise ValueError(
                f"{name}: prefix_kv needs one (k, v) pair per layer ({self.n_layer}), got {len(prefix_kv)}"
            )
        start = self.position_offset(prefix_kv[0][0].shape[2] if prefix_kv else 0) + past
        if start + P + T > self.max_positions:
            raise ValueError(
                f"{name}: sequence of {start + P + T} positions ({P} soft prompt + {T} tokens"
                f"{f' + {past} cached' if past else ''}{f' + {start - past} prefix' if start > past else ''}) "
                f"exceeds {self.max_positions_field} {self.max_positions}"
            )
        if check_ids:
            self.check_token_ids(ids)
        x = self.embed_tokens(ids, check_ids=False)  # (B, T, C)
        if pe is not None:
            x = F.concat([expand_batch(pe, B), x], axis=1)  # (B, P + T, C)
        if position_ids is None:
            pos = backend.module_for(device).arange(start, start + P + T)  # (P + T,)
        else:
            pos = self.check_positions(position_ids, B, P + T, start - past, check_ids) + (start - past)  # (B, P + T)
        x, block_kwargs = self.positions(x, pos)  # (B, P + T, C)
        mask = self.full_mask(attention_mask, B, past + P + T, n_prompt, device)
        for i, block in enumerate(self.blocks):
            x = self.run_block(
                block,
                x,
                i,
                len(self.blocks),
                attention_mask=mask,
                prefix_kv=prefix_kv[i] if prefix_kv is not None else None,
                kv_cache=kv_cache[i] if kv_cache is not None else None,
                **block_kwargs,
            )
        if kv_cache is not None and past == 0:
            kv_cache.n_prompt = P
        return self.final_norm(x), P  # (B, P + T, C)

    def check_positions(self, position_ids: Any, B: int, n: int, offset: int, check_range: bool = True) -> Any:
        """position_ids as a (B, n) or (n,) integer device array within [0, max_positions - offset), or an error."""
        name = type(self).__name__
        pos = as_ids(position_ids, self.device, "position_ids", name)
        if tuple(pos.shape) not in ((n,), (B, n)):
            raise ValueError(f"{name}: position_ids must be ({B}, {n}) or ({n},) (soft prompt + tokens), "
                             f"got {tuple(pos.shape)}")
        if check_range:
            xp = backend.get_array_module(pos)
            lo, hi = backend.to_host(xp.stack([pos.min(), pos.max()])).tolist()  # host: one small transfer
            if lo < 0 or hi + offset >= self.max_positions:
                raise ValueError(f"{name}: position_ids reach {lo if lo < 0 else hi + offset}, outside "
                                 f"[0, {self.max_positions_field} {self.max_positions})")
        return pos

    def full_mask(self, attention_mask: Any, B: int, total: int, n_prompt: int, device: str) -> Any:
        """The (B, total) padding mask over every position: ones are put in front for soft prompt positions."""
        if attention_mask is None:
            return None
        m = as_mask(attention_mask, device)
        if m.ndim == 2 and m.shape == (B, total - n_prompt) and n_prompt:
            xp = backend.get_array_module(m)
            m = xp.concatenate([xp.ones((B, n_prompt), dtype=m.dtype), m], axis=1)
        if m.ndim != 2 or m.shape != (B, total):
            raise ValueError(
                f"{type(self).__name__}: attention_mask must be (B, T) = ({B}, {total - n_prompt}) over the real "
                f"tokens (cached + new), got {tuple(m.shape)}"
            )
        return m

    _full_mask = full_mask  # the name GPTBase had


class CausalLMMixin:
    """The language-model head over a family's base: forward with loss, generate, save_pretrained.

    With targets and B * T * V above ``chunked_loss_threshold`` logits, the head and the loss run as one
    chunked op (F.linear_cross_entropy) that never holds the (B, T, V) logits: forward then returns
    ``(None, loss)``; call ``model(idx)`` without targets for the logits.
    """

    lm_head: Any
    chunked_loss_threshold: int = 1 << 22  # logits (16 MB in float32); 0 always chunks, a huge value never

    model_family: Any = None  # the Family that registered this class (minilora.models.register binds it)

    @classmethod
    def _family(cls) -> Any:
        if cls.model_family is None:
            raise TypeError(f"{cls.__name__} belongs to no registered model family (minilora.models.register)")
        return cls.model_family

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", dtype: Any = None, **kwargs: Any) -> Any:
        """Load a Hugging Face folder of this family (config.json + safetensors) with the family's converter
        (minilora.hf; the model family registry binds it, so the models never import it)."""
        model = cls._family().from_pretrained(path, device=device, **kwargs)
        if not isinstance(model, cls):
            raise ValueError(f"{path}: holds a {type(model).__name__}, not a {cls.__name__}")
        if dtype is not None:
            model.to(model.device, dtype)
        return model

    def save_pretrained(self, path: str, **kwargs: Any) -> None:
        """Write a Hugging Face folder that transformers loads (the family's converter, as from_pretrained)."""
        type(self)._family().save_pretrained(self, path, **kwargs)

    def forward(
        self,
        idx: Any,
        targets: Any = None,
        *,
        attention_mask: Any = None,
        prefix_kv: Sequence[tuple[Tensor, Tensor]] | None = None,
        prompt_embeds: Tensor | None = None,
        kv_cache: KVCache | None = None,
        position_ids: Any = None,
    ) -> tuple[Tensor, Tensor | None]:
        """(logits (B, T, V) over the T real tokens, mean cross entropy over targets != -100 or None).

        position_ids: None counts positions from 0 (plus the cache), padding or not, as transformers'
        forward does; pass ``mask_positions(attention_mask)`` for what generate uses on left padding.
        logits is None when the chunked loss ran (targets given, B * T * V > ``chunked_loss_threshold``)."""
        h, P = self.hidden_states(  # type: ignore[attr-defined]
            idx, attention_mask=attention_mask, prefix_kv=prefix_kv, prompt_embeds=prompt_embeds, kv_cache=kv_cache,
            position_ids=position_ids,
        )
        if P:
            h = h[:, P:, :]  # drop the soft prompt positions: (B, T, C)
        if targets is None:
            return self.lm_head(h), None  # (B, T, V)
        B, T, C = h.shape
        tgt = as_ids(targets, h.device, "targets", type(self).__name__)
        if tuple(tgt.shape) != (B, T):
            raise ValueError(
                f"{type(self).__name__}: targets must have the shape of idx ({B}, {T}), got {tuple(tgt.shape)}"
            )
        head = self.lm_head
        V = head.out_features
        if B * T * V > self.chunked_loss_threshold and type(head) is Linear:  # not a PEFT-wrapped head
            # same as the two lines below, by chunks of tokens: no (B * T, V) array is kept
            return None, F.linear_cross_entropy(h.reshape(B * T, C), match(head.weight, h), tgt.reshape(B * T),
                                                match(head.bias, h))
        logits = head(h)  # (B, T, V)
        return logits, F.cross_entropy(logits.reshape(B * T, V), tgt.reshape(B * T), ignore_index=-100)

    def generate(self, idx: Any, max_new_tokens: int, **kwargs: Any) -> Any:
        """Append up to ``max_new_tokens`` tokens to idx (B, T): see minilora.nn.generation.generate."""
        return generate(self, idx, max_new_tokens, **kwargs)


class SequenceClassifierMixin:
    """The classification head over a family's base: ``score`` on each row's last real token."""

    score: Any
    num_classes: int

    def __init__(self, config: Any, num_classes: int) -> None:
        super().__init__(config)  # type: ignore[call-arg]  # the family's base builds the backbone
        if num_classes < 1:
            raise ValueError(f"{type(self).__name__}: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        with skip_init():
            self.score = Linear(self.hidden_size, num_classes, bias=False)  # type: ignore[attr-defined]
        self._init_weights()  # type: ignore[attr-defined]

    @classmethod
    def from_lm(cls, lm: Any, num_classes: int) -> Any:
        """A classifier whose backbone is a copy of ``lm``'s (same device and dtype); ``score`` is new."""
        model = cls(lm.config, num_classes).to(lm.device, lm.dtype)
        prefix = cls.backbone_prefix  # type: ignore[attr-defined]
        model.load_state_dict({k: v for k, v in lm.state_dict().items() if k.startswith(prefix)}, strict=False)
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
        h, P = self.hidden_states(  # type: ignore[attr-defined]
            idx, attention_mask=attention_mask, prefix_kv=prefix_kv, prompt_embeds=prompt_embeds
        )
        B = h.shape[0]
        if attention_mask is None:
            last = h[:, -1, :]  # (B, C)
        else:
            xp = h.xp
            real = self.full_mask(attention_mask, B, h.shape[1], P, h.device) != 0  # type: ignore[attr-defined]
            # (B,) the last real position, whichever side the padding is on
            pos = real.shape[1] - 1 - real[:, ::-1].astype(xp.int8).argmax(axis=1)
            last = h[xp.arange(B), pos]  # (B, C)
        logits = self.score(last)  # (B, num_classes)
        loss = None
        if labels is not None:
            lab = as_ids(labels, logits.device, "labels", type(self).__name__)
            if tuple(lab.shape) != (B,):
                raise ValueError(f"{type(self).__name__}: labels must be ({B},), got {tuple(lab.shape)}")
            loss = F.cross_entropy(logits, lab)
        return logits, loss

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"
