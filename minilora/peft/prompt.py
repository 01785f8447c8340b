"""Prompt tuning (Lester et al. 2021): P trainable soft prompt embeddings prepended to the input.

With token embeddings X = wte[idx] (B, T, C) the model reads

    H0 = [E ; X] + wpe[0 .. P+T-1],    E: (P, C) trainable, broadcast over the batch

and everything else (every weight, wte included) is frozen. The soft prompt
positions produce no logits and no loss: the GPT drops them before the head, so
the loss is the usual mean cross entropy over the T real tokens.

Initialisation (the paper's two options):
- "random": E ~ N(0, sigma^2) with sigma the standard deviation of the model's
  token embedding table, so the prompt starts on the scale of real tokens
  (PEFT draws N(0, 1), ~50x the 0.02 of a GPT-2-initialised embedding table);
- "text": E = wte[ids] for the token ids of ``init_text``, repeated or cropped to P
  (the paper's best start: the prompt begins as a sentence describing the task).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from minilora import backend
from minilora.nn.module import Module, Parameter
from minilora.peft.config import PeftConfig, check_choice, check_positive
from minilora.tensor import Tensor


@dataclasses.dataclass
class PromptTuningConfig(PeftConfig):
    """Prompt tuning (Lester et al. 2021): P soft prompt embeddings prepended to the input embeddings."""

    peft_type: ClassVar[str] = "PROMPT_TUNING"
    num_virtual_tokens: int = 10
    init: str = "random"  # "random" | "text"
    init_text: str | None = None
    modules_to_save: tuple[str, ...] = ()

    def validate(self) -> None:
        check_positive(self, "num_virtual_tokens")
        check_choice(self, "init", ("random", "text"))
        if self.init == "text" and not self.init_text:
            raise ValueError("PromptTuningConfig: init='text' needs init_text")


def _init_ids(
    config: PromptTuningConfig, vocab: int, tokenizer: Any, init_token_ids: Sequence[int] | None
) -> list[int]:
    """The token ids of init_text, repeated / cropped to num_virtual_tokens (host integers)."""
    if init_token_ids is None:
        if tokenizer is None:
            raise ValueError(
                "PromptEmbedding: init='text' needs a tokenizer (tokenizer=...) or the text's ids (init_token_ids=...)"
            )
        encoded = tokenizer.encode(config.init_text)
        init_token_ids = getattr(encoded, "ids", encoded)  # a `tokenizers` Encoding carries .ids
    ids = [int(i) for i in init_token_ids]
    if not ids:
        raise ValueError(f"PromptEmbedding: init_text {config.init_text!r} encodes to no tokens")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise IndexError(f"PromptEmbedding: init token ids {bad[:5]} are outside the vocabulary [0, {vocab})")
    P = config.num_virtual_tokens
    return (ids * -(-P // len(ids)))[:P]


class PromptEmbedding(Module):
    """The soft prompt E (P, C) as the Parameter ``embedding``; ``forward_kwargs(B)`` feeds it to the GPT.

    ``word_embeddings`` (PEFT's name) is the model's token Embedding (or its weight): the source of the text init
    and of the random init's scale; E is created on its device in its dtype.
    """

    def __init__(
        self,
        config: PromptTuningConfig,
        model_config: Any,
        word_embeddings: Any,
        tokenizer: Any = None,
        init_token_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, PromptTuningConfig):
            raise TypeError(f"PromptEmbedding: expected a PromptTuningConfig, got {type(config).__name__}")
        table = getattr(word_embeddings, "weight", word_embeddings)
        table = table.data if isinstance(table, Tensor) else table
        V, C = model_config.vocab_size, model_config.n_embd
        if not backend.is_array(table) or tuple(table.shape) != (V, C):
            raise ValueError(
                f"PromptEmbedding: word_embeddings must be the model's ({V}, {C}) token embedding, "
                f"got {getattr(table, 'shape', type(table).__name__)}"
            )
        if backend.is_16bit(table.dtype):
            table = table.astype("float32")  # the soft prompt trains in float32 over a 16-bit base
        self.num_virtual_tokens = P = config.num_virtual_tokens
        self.n_embd = C
        if config.init == "text":
            ids = _init_ids(config, V, tokenizer, init_token_ids)
            self.init_token_ids = ids
            e = table[backend.to_device(ids, backend.device_of(table), "int64")].copy()  # (P, C): token-embedding rows
        else:
            self.init_token_ids = None
            noise = backend.to_device(backend.host_rng().standard_normal((P, C)), backend.device_of(table), table.dtype)
            e = noise * table.std()  # (P, C); the std stays on the device (no sync)
        self.embedding = Parameter(e)

    def forward(self) -> Tensor:
        return self.embedding  # (P, C)

    def forward_kwargs(self, batch_size: int) -> dict[str, Any]:
        """{"prompt_embeds": E (P, C)} for ``model(idx, **kwargs)`` / ``model.generate(idx, n, **kwargs)``.

        (P, C) serves any batch size: the model broadcasts it to (B, P, C), and the
        gradient of that broadcast sums back into E.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"PromptEmbedding.forward_kwargs: batch_size must be a positive integer, got {batch_size!r}"
            )
        return {"prompt_embeds": self.embedding}

    def extra_repr(self) -> str:
        return f"num_virtual_tokens={self.num_virtual_tokens}, n_embd={self.n_embd}"
