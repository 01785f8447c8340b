"""PromptEmbedding: text and random init, gradients through a frozen tiny GPT, loss over real tokens, generation."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import F, backend
from minilora.nn import GPT, GPTConfig
from minilora.nn.gradcheck import check_module_grad
from minilora.peft.config import PrefixTuningConfig, PromptTuningConfig
from minilora.peft.prompt import PromptEmbedding

CFG = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8)


class _Tokenizer:
    def encode(self, text):
        return np.array([ord(c) - ord("a") for c in text])


class _Encoding:
    ids = [9, 1]


class _HFTokenizer:
    def encode(self, text):
        return _Encoding()


def _setup(device, P=3, **kw):
    ml.manual_seed(0)
    model = GPT(CFG).to(device).requires_grad_(False)
    pe = PromptEmbedding(PromptTuningConfig(P, **kw.pop("cfg", {})), CFG, model.transformer.wte, **kw)
    return model, pe


def test_text_init_copies_the_right_wte_rows(device):
    model, pe = _setup(device, P=5, cfg={"init": "text", "init_text": "dfc"}, tokenizer=_Tokenizer())
    wte = model.transformer.wte.weight.numpy()
    assert pe.init_token_ids == [3, 5, 2, 3, 5]  # "dfc" -> 3 5 2, repeated to P = 5
    np.testing.assert_array_equal(pe.embedding.numpy(), wte[[3, 5, 2, 3, 5]])
    assert pe.embedding.device == device and pe.embedding.requires_grad
    pe.embedding.data += 1.0
    np.testing.assert_array_equal(model.transformer.wte.weight.numpy(), wte)  # a copy, not a view of wte
    _, cropped = _setup(device, P=1, cfg={"init": "text", "init_text": "x"}, tokenizer=_HFTokenizer())
    assert cropped.init_token_ids == [9]
    _, by_ids = _setup(device, P=2, cfg={"init": "text", "init_text": "x"}, init_token_ids=[7, 4, 1])
    np.testing.assert_array_equal(by_ids.embedding.numpy(), wte[[7, 4]])


def test_random_init_is_reproducible_and_on_the_embedding_scale(device):
    model, a = _setup(device, P=40)
    _, b = _setup(device, P=40)
    np.testing.assert_array_equal(a.embedding.numpy(), b.embedding.numpy())
    assert a.embedding.shape == (40, 8) and a.embedding.dtype == np.float32
    ratio = a.embedding.numpy().std() / model.transformer.wte.weight.numpy().std()
    assert 0.7 < ratio < 1.3


def test_bad_input_is_refused_clearly():
    model = GPT(CFG)
    text = PromptTuningConfig(2, init="text", init_text="ab")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        PromptEmbedding(text, CFG, model.transformer.wte)
    with pytest.raises(IndexError, match=r"\[11\] are outside the vocabulary \[0, 11\)"):
        PromptEmbedding(text, CFG, model.transformer.wte, init_token_ids=[1, 11])
    with pytest.raises(ValueError, match=r"word_embeddings must be the model's \(11, 8\) token embedding"):
        PromptEmbedding(PromptTuningConfig(2), CFG, model.transformer.wpe)
    with pytest.raises(TypeError, match="expected a PromptTuningConfig"):
        PromptEmbedding(PrefixTuningConfig(), CFG, model.transformer.wte)


def test_gradcheck_of_the_prompt_through_frozen_gpt(device, rng):
    model, pe = _setup(device, P=3)
    model.double()
    pe.double()
    idx, tgt = rng.integers(0, 11, (2, 4)), rng.integers(0, 11, (2, 4))
    reports = check_module_grad(pe, lambda: model(idx, tgt, **pe.forward_kwargs(2))[1], full_max=24)
    assert set().union(*(r.per_input for r in reports)) == {"embedding"}
    _, loss = model(idx, tgt, **pe.forward_kwargs(2))
    loss.backward()
    assert all(p.grad is None for p in model.parameters()) and pe.embedding.grad is not None


def test_loss_covers_only_the_real_tokens(device, rng):
    model, pe = _setup(device, P=4)
    idx, tgt = rng.integers(0, 11, (3, 5)), rng.integers(0, 11, (3, 5))
    tgt[0, :2] = -100
    logits, loss = model(idx, tgt, **pe.forward_kwargs(3))
    assert logits.shape == (3, 5, 11)  # no logits for the 4 prompt positions
    z = logits.numpy().reshape(-1, 11).astype(np.float64)
    logp = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    t = tgt.reshape(-1)
    keep = t != -100
    np.testing.assert_allclose(loss.item(), -logp[keep, t[keep]].mean(), rtol=1e-5)
    base, _ = model(idx)
    assert not np.allclose(base.numpy(), logits.numpy())  # the prompt does change what the model predicts
    # the same prompt broadcast by the model equals an explicit (B, P, C) batch of it
    explicit = F.concat([pe.embedding.reshape(1, 4, 8)] * 3, axis=0)
    np.testing.assert_allclose(model(idx, prompt_embeds=explicit)[0].numpy(), logits.numpy(), rtol=1e-6, atol=1e-6)


def test_generation_with_the_prompt_equals_recomputation(device, rng, greedy_by_recomputation):
    model, pe = _setup(device, P=3, cfg={"init": "text", "init_text": "x"}, init_token_ids=[1, 2])
    kw = pe.forward_kwargs(2)
    idx = rng.integers(0, 11, (2, 3))
    cached = model.generate(idx, 4, temperature=0, **kw)
    uncached = model.generate(idx, 4, temperature=0, use_cache=False, **kw)
    ids = greedy_by_recomputation(model, idx, 4, **kw)
    np.testing.assert_array_equal(backend.to_host(cached), ids)
    np.testing.assert_array_equal(backend.to_host(uncached), ids)
