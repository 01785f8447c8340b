"""minilora.nn.transaction: a failed block leaves the tree exactly as it was."""

from __future__ import annotations

import pytest

import minilora as ml
from minilora import nn
from minilora.testing.digest import model_digest


def _gpt() -> nn.GPT:
    ml.manual_seed(0)
    return nn.GPT(nn.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))


def test_rollback_restores_modules_parameters_flags_and_containers():
    model = _gpt()
    model.extra = {"a": [1, 2]}  # a plain attribute holding containers
    before = model_digest(model)
    c_attn = model.transformer.h[0].attn.c_attn
    with pytest.raises(RuntimeError, match="boom"), nn.all_or_nothing(model):
        model.requires_grad_(False)
        model.transformer.h[0].attn.c_attn = nn.Linear(8, 24)
        model.lm_head.weight.data = model.lm_head.weight.data * 0
        model.extra["a"].append(3)
        model.extra["b"] = 1
        raise RuntimeError("boom")
    assert model_digest(model) == before
    assert model.transformer.h[0].attn.c_attn is c_attn
    assert model.extra == {"a": [1, 2]}
    assert model.lm_head.weight is model.transformer.wte.weight  # ties stay ties


def test_success_keeps_the_changes():
    model = _gpt()
    with nn.all_or_nothing(model):
        model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
