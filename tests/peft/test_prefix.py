"""PrefixEncoder: layout, gradients through a frozen tiny GPT, folding the MLP, generation with prefixes."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.nn import GPT, GPTConfig, GPTForSequenceClassification
from minilora.nn.gradcheck import check_module_grad
from minilora.peft.config import PrefixTuningConfig, PromptTuningConfig
from minilora.peft.prefix import PrefixEncoder

CFG = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8)


def _setup(device, projection=False, P=2, hidden=None):
    ml.manual_seed(0)
    model = GPT(CFG).to(device).requires_grad_(False)
    enc = PrefixEncoder(PrefixTuningConfig(P, prefix_projection=projection, encoder_hidden_size=hidden), CFG, device)
    return model, enc


def test_layout_and_shapes(device):
    _, enc = _setup(device, P=3)
    assert [(n, p.shape) for n, p in enc.named_parameters()] == [("embedding", (3, 2 * 2 * 8))]
    kv = enc.forward_kwargs(4)["prefix_kv"]
    assert len(kv) == 2 and all(k.shape == v.shape == (1, 2, 3, 4) for k, v in kv)
    assert kv[0][0].device == device and kv[0][0].dtype == np.float32
    # row p of the table holds [K_0 | V_0 | K_1 | V_1] of virtual token p, each split into heads
    table = enc.embedding.numpy().reshape(3, 4, 2, 4).transpose(1, 2, 0, 3)  # (2L, nh, P, hs)
    for layer, (k, v) in enumerate(kv):
        np.testing.assert_array_equal(k.numpy()[0], table[2 * layer])
        np.testing.assert_array_equal(v.numpy()[0], table[2 * layer + 1])
    _, mlp = _setup(device, projection=True, P=3, hidden=5)
    assert [(n, p.shape) for n, p in mlp.named_parameters()] == [
        ("embedding", (3, 8)), ("transform.0.weight", (5, 8)), ("transform.0.bias", (5,)),
        ("transform.1.weight", (32, 5)), ("transform.1.bias", (32,)),
    ]  # fmt: skip


def test_init_is_reproducible_and_bad_input_refused():
    _, a = _setup("cpu")
    _, b = _setup("cpu")
    np.testing.assert_array_equal(a.embedding.numpy(), b.embedding.numpy())
    with pytest.raises(TypeError, match="expected a PrefixTuningConfig, got PromptTuningConfig"):
        PrefixEncoder(PromptTuningConfig(), CFG)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        a.forward_kwargs(0)


@pytest.mark.parametrize("projection", [False, True])
def test_gradcheck_of_prefix_parameters_through_frozen_gpt(device, rng, projection):
    model, enc = _setup(device, projection=projection, hidden=4)
    model.double()
    enc.double()
    idx = rng.integers(0, 11, (2, 4))
    tgt = rng.integers(0, 11, (2, 4))
    reports = check_module_grad(enc, lambda: model(idx, tgt, **enc.forward_kwargs(2))[1], full_max=16)
    checked = set().union(*(r.per_input for r in reports))
    assert checked == {n for n, _ in enc.named_parameters()}
    _, loss = model(idx, tgt, **enc.forward_kwargs(2))
    loss.backward()
    assert all(p.grad is None for p in model.parameters())  # the base model gets no gradient
    assert all(p.grad is not None for p in enc.parameters())


def test_prefix_changes_the_output_and_keeps_real_positions(device, rng):
    model, enc = _setup(device, P=3)
    idx = rng.integers(0, 11, (2, 5))
    base, _ = model(idx)
    out, _ = model(idx, **enc.forward_kwargs(2))
    assert out.shape == base.shape == (2, 5, 11)
    assert not np.allclose(out.numpy(), base.numpy())
    # real tokens stay causal with a prefix: changing the last token changes no earlier logit
    idx2 = idx.copy()
    idx2[:, -1] = (idx[:, -1] + 1) % 11
    out2, _ = model(idx2, **enc.forward_kwargs(2))
    out1, _ = model(idx, **enc.forward_kwargs(2))
    np.testing.assert_allclose(out2.numpy()[:, :-1], out1.numpy()[:, :-1], rtol=1e-5, atol=1e-6)


def test_fold_gives_identical_outputs_and_drops_the_mlp(device, rng):
    model, enc = _setup(device, projection=True, P=3, hidden=6)
    idx = rng.integers(0, 11, (2, 5))
    before, _ = model(idx, **enc.forward_kwargs(2))
    assert enc.fold() is enc
    assert [(n, p.shape) for n, p in enc.named_parameters()] == [("embedding", (3, 32))]
    assert not hasattr(enc, "transform") and not enc.prefix_projection
    after, _ = model(idx, **enc.forward_kwargs(2))
    np.testing.assert_array_equal(after.numpy(), before.numpy())
    assert enc.fold() is enc  # folding twice is a no-op


def test_generation_with_prefix_equals_recomputation(device, rng, greedy_by_recomputation):
    model, enc = _setup(device, P=3)
    kw = enc.forward_kwargs(2)
    idx = rng.integers(0, 11, (2, 3))
    cached = model.generate(idx, 5, temperature=0, **kw)
    uncached = model.generate(idx, 5, temperature=0, use_cache=False, **kw)
    ids = greedy_by_recomputation(model, idx, 5, **kw)
    np.testing.assert_array_equal(ml.backend.to_host(cached), ids)
    np.testing.assert_array_equal(ml.backend.to_host(uncached), ids)


def test_prefix_on_the_classifier(device, rng):
    ml.manual_seed(0)
    clf = GPTForSequenceClassification(CFG, num_classes=3).to(device).requires_grad_(False)
    enc = PrefixEncoder(PrefixTuningConfig(2), CFG, device)
    logits, loss = clf(rng.integers(0, 11, (2, 4)), np.array([0, 2]), **enc.forward_kwargs(2))
    assert logits.shape == (2, 3)
    loss.backward()
    assert enc.embedding.grad is not None
