"""The causal-LM core: a family supplies its modules and positions; forward, hooks, cache and generate are shared."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import CausalLMBase, CausalLMMixin, Embedding, LayerNorm, Linear, Module, ModuleList


class ToyBlock(Module):
    """x + W x, attending to nothing: the core must still thread every hook through it."""

    def __init__(self, C: int) -> None:
        super().__init__()
        self.proj = Linear(C, C)

    def forward(self, x: Any, attention_mask: Any = None, prefix_kv: Any = None, kv_cache: Any = None,
                shift: Any = None) -> Any:  # fmt: skip
        return x + self.proj(x) * shift


class ToyLM(CausalLMMixin, CausalLMBase):
    module_paths = {"embed_tokens": "tok", "blocks": "layers", "final_norm": "norm"}
    max_positions_field = "n_ctx"

    def __init__(self, V: int = 7, C: int = 4, n_layer: int = 2, n_ctx: int = 6) -> None:
        super().__init__()
        self.config, self.n_ctx = None, n_ctx
        self.tok, self.layers, self.norm = Embedding(V, C), ModuleList([ToyBlock(C) for _ in range(n_layer)]), \
            LayerNorm(C)
        self.lm_head = Linear(C, V, bias=False)

    max_positions = property(lambda self: self.n_ctx)  # no config to read n_ctx from

    def positions(self, x: Any, pos: Any) -> tuple[Any, dict[str, Any]]:
        return x, {"shift": 1.0}  # a block keyword argument, as Llama's rope


def test_a_new_family_needs_only_its_modules_and_positions(device):
    ml.manual_seed(0)
    m = ToyLM().to(device)
    x = backend.to_device(np.array([[1, 2, 3]]), device)
    logits, loss = m(x, x)
    assert logits.shape == (1, 3, 7) and loss is not None
    a = m.generate(x, 2, temperature=0)
    np.testing.assert_array_equal(backend.to_host(a), backend.to_host(m.generate(x, 2, temperature=0,
                                                                                  use_cache=False)))
    assert m.n_layer == 2 and m.hidden_size == 4 and m.vocab_size == 7


def test_a_family_without_a_module_path_is_told_which():
    class NoNorm(ToyLM):
        module_paths = {"embed_tokens": "tok", "blocks": "layers"}

    with pytest.raises(NotImplementedError, match="NoNorm: module_paths names no 'final_norm'"):
        NoNorm()(np.zeros((1, 2), np.int64))


def test_the_core_names_the_family_field_in_errors():
    m = ToyLM()
    with pytest.raises(ValueError, match=r"7 positions \(0 soft prompt \+ 7 tokens\) exceeds n_ctx 6"):
        m(np.zeros((1, 7), np.int64))
    with pytest.raises(ValueError, match=r"prefix_kv needs one \(k, v\) pair per layer \(2\), got 1"):
        m(np.zeros((1, 2), np.int64), prefix_kv=[None])
    with pytest.raises(IndexError, match="token id 9 is outside the vocabulary"):
        m(np.array([[9]]))
