"""Prefix tuning (Li & Liang 2021): P learned key/value vectors in front of K and V in every layer.

In every attention layer l the real tokens' keys and values are extended on the
left by P trainable "virtual token" keys and values:

    K_l = [Kp_l ; X W_k],   V_l = [Vp_l ; X W_v],   Kp_l, Vp_l: (n_kv_head, P, head_size)
    attn = softmax(Q K_l^T / sqrt(hs)) V_l          every query sees the whole prefix

The model itself is frozen; only the prefixes train. n_kv_head is the family's
number of key/value heads (grouped-query attention: fewer than the query heads).
GPT-2's real tokens keep their positions 0..T-1 (the prefix has no position);
Llama's start at P, as with transformers' past_key_values. The base model's
behaviour on the real tokens is changed only through what attention reads from the prefix.

Storage (as Hugging Face PEFT): ONE table ``embedding`` of shape (P, n_layer * 2 * W),
W = n_kv_head * head_size (C without grouped-query attention), each row a virtual
token's keys and values for every layer, split as

    (P, L*2*W) -> (P, L*2, nkv, hs) -> (L*2, nkv, P, hs);  row 2l = Kp_l, row 2l + 1 = Vp_l.

With ``prefix_projection=True`` the paper's reparameterisation is used for training
(optimising the prefixes directly is unstable, the paper reports):

    E (P, C) -> Linear(C, H) -> tanh -> Linear(H, L*2*W) -> the same (P, L*2*W) table

and ``fold()`` computes that table once, stores it as ``embedding`` and drops the MLP,
so inference costs nothing extra and gives identical outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from minilora import backend
from minilora import functional as F  # noqa: N812
from minilora.autograd import no_grad
from minilora.nn.containers import ModuleList
from minilora.nn.layers import Linear
from minilora.nn.module import Module, Parameter
from minilora.peft.config import PeftConfig, check_positive
from minilora.tensor import Tensor


def _normal_parameter(shape: tuple[int, ...]) -> Parameter:
    """N(0, 1) drawn on the host (as torch.nn.Embedding's default init, which PEFT uses), in float32."""
    return Parameter(backend.host_rng().standard_normal(shape).astype("float32"))


@dataclasses.dataclass
class PrefixTuningConfig(PeftConfig):
    """Prefix tuning (Li & Liang 2021): P learned key/value vectors in front of K and V in every layer."""

    peft_type: ClassVar[str] = "PREFIX_TUNING"
    num_virtual_tokens: int = 10
    prefix_projection: bool = False  # train through a reparameterisation MLP, folded away for inference
    encoder_hidden_size: int | None = None  # the MLP's hidden width (default n_embd)
    modules_to_save: tuple[str, ...] = ()

    def validate(self) -> None:
        check_positive(self, "num_virtual_tokens")
        if self.encoder_hidden_size is not None:
            check_positive(self, "encoder_hidden_size")


class PrefixEncoder(Module):
    """The learned prefixes of every layer; ``forward_kwargs(B)`` is what the GPT's forward/generate takes.

    Parameters: ``embedding`` (P, L*2*W), or with prefix_projection ``embedding`` (P, C) and
    ``transform`` = [Linear(C, H), Linear(H, L*2*W)] with tanh between (H = encoder_hidden_size or C).
    """

    def __init__(
        self, config: PrefixTuningConfig, model_config: Any, device: str | None = None, dtype: Any = None
    ) -> None:
        super().__init__()
        if not isinstance(config, PrefixTuningConfig):
            raise TypeError(f"PrefixEncoder: expected a PrefixTuningConfig, got {type(config).__name__}")
        self.num_virtual_tokens = P = config.num_virtual_tokens
        from minilora.models import family_of  # noqa: PLC0415

        family = family_of(model_config)  # grouped-query attention: the prefix has the key/value heads' shape
        self.n_layer, self.n_embd = model_config.n_layer, model_config.n_embd
        self.n_head, self.head_dim = family.num_kv_heads(model_config), family.head_dim(model_config)
        C = self.n_embd
        W = self.n_head * self.head_dim  # one layer's keys (or values) per virtual token: C without GQA
        self.prefix_projection = config.prefix_projection
        if config.prefix_projection:
            hidden = config.encoder_hidden_size or C
            self.embedding = _normal_parameter((P, C))
            self.transform = ModuleList([Linear(C, hidden), Linear(hidden, self.n_layer * 2 * W)])
        else:
            self.embedding = _normal_parameter((P, self.n_layer * 2 * W))
        if device is not None or dtype is not None:
            self.to(device, dtype)

    def prefix_table(self) -> Tensor:
        """The (P, L*2*W) table of every layer's prefix keys and values (through the MLP if there is one)."""
        if not self.prefix_projection:
            return self.embedding
        hidden = F.tanh(self.transform[0](self.embedding))  # (P, H)
        return self.transform[1](hidden)  # (P, L*2*W)

    def forward(self) -> list[tuple[Tensor, Tensor]]:
        """One (k, v) pair per layer, each (1, n_head, P, head_size): broadcast over the batch by the model."""
        P, L, nh, hs = self.num_virtual_tokens, self.n_layer, self.n_head, self.head_dim
        kv = self.prefix_table().reshape(P, 2 * L, nh, hs).transpose(1, 2, 0, 3)  # (2L, nh, P, hs)
        parts = F.split(kv.reshape(2 * L, 1, nh, P, hs), 2 * L, axis=0)  # 2L x (1, 1, nh, P, hs)
        parts = [p.reshape(1, nh, P, hs) for p in parts]  # 2L x (1, nh, P, hs)
        return [(parts[2 * i], parts[2 * i + 1]) for i in range(L)]

    def forward_kwargs(self, batch_size: int) -> dict[str, Any]:
        """{"prefix_kv": [(k, v)] * n_layer} for ``model(idx, **kwargs)`` / ``model.generate(idx, n, **kwargs)``.

        The leading axis is 1 for any batch size: the attention layers broadcast it to B,
        and the gradient of that broadcast sums back into the single prefix.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"PrefixEncoder.forward_kwargs: batch_size must be a positive integer, got {batch_size!r}")
        return {"prefix_kv": self()}

    def fold(self) -> PrefixEncoder:
        """Replace the reparameterisation MLP by the table it computes (for inference); a no-op without one."""
        if not self.prefix_projection:
            return self
        with no_grad():
            table = self.prefix_table().data.copy()  # (P, L*2*W)
        self.embedding = Parameter(table, requires_grad=self.embedding.requires_grad)
        del self.transform
        self.prefix_projection = False
        return self

    def extra_repr(self) -> str:
        mlp = ", prefix_projection" if self.prefix_projection else ""
        return f"num_virtual_tokens={self.num_virtual_tokens}, n_layer={self.n_layer}{mlp}"
