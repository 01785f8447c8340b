"""IA3: keys and values (not queries) and the MLP's inner activation rescaled by learned vectors."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import GPT, GPTConfig, GPTForSequenceClassification, Linear
from minilora.nn.gradcheck import check_module_grad
from minilora.peft import IA3Config, IA3Linear, get_peft_model

CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def test_placement_and_init(device, rng):
    ml.manual_seed(0)
    model = GPT(CFG).to(device)
    x = backend.to_device(rng.integers(0, 11, (2, 5)), device)
    ref = model(x)[0].numpy()
    peft = get_peft_model(model, IA3Config())
    shapes = {n: p.shape for n, p in peft.named_parameters() if p.requires_grad}
    assert shapes == {f"transformer.h.{i}.{k}": s for i in range(2) for k, s in
                      [("attn.c_attn.ia3_l_k", (8,)), ("attn.c_attn.ia3_l_v", (8,)), ("mlp.c_proj.ia3_l", (32,))]}
    assert all(np.all(p.numpy() == 1) for n, p in peft.named_parameters() if "ia3" in n)
    np.testing.assert_array_equal(peft(x)[0].numpy(), ref)


def test_layer_forward_against_numpy(device, rng):
    ml.manual_seed(0)
    qkv = Linear(4, 12).to(device)
    attn = IA3Linear(qkv, feedforward=False, kv_fused=True)
    attn.add_adapter("default", activate=True)
    lk, lv = rng.uniform(0.5, 1.5, 4), rng.uniform(0.5, 1.5, 4)
    attn.ia3_l_k.data = backend.to_device(lk, device, np.float32)
    attn.ia3_l_v.data = backend.to_device(lv, device, np.float32)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    y = x @ qkv.weight.numpy().T + qkv.bias.numpy()
    ref = y * np.concatenate([np.ones(4), lk, lv]).astype(np.float32)  # the query part is untouched
    np.testing.assert_allclose(attn(ml.tensor(x, device=device)).numpy(), ref, rtol=1e-6)
    ff_base = Linear(6, 3).to(device)
    ff = IA3Linear(ff_base, feedforward=True, kv_fused=False)
    ff.add_adapter("default", activate=True)
    l = rng.uniform(0.5, 1.5, 6)
    ff.ia3_l.data = backend.to_device(l, device, np.float32)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    ref = (x * l) @ ff_base.weight.numpy().T + ff_base.bias.numpy()
    np.testing.assert_allclose(ff(ml.tensor(x, device=device)).numpy(), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="fused q/k/v projection must map C to 3C"):
        IA3Linear(Linear(4, 4), feedforward=False, kv_fused=True)


@pytest.mark.parametrize("classifier", [False, True])
def test_gradcheck_through_frozen_model(device, rng, classifier):
    ml.manual_seed(0)
    model = (GPTForSequenceClassification(CFG, 3) if classifier else GPT(CFG)).to(device).double()
    peft = get_peft_model(model, IA3Config())
    for n, p in peft.named_parameters():
        if "ia3" in n:
            p.data = backend.to_device(rng.uniform(0.5, 1.5, p.shape), device)
    x = backend.to_device(rng.integers(0, 11, (2, 4)), device)
    y = backend.to_device(rng.integers(0, 3, (2,) if classifier else (2, 4)), device)
    pe = backend.to_device(rng.standard_normal((2, 8)), device)
    check_module_grad(peft, lambda i, t, e: peft(i, t, prompt_embeds=e)[1], [x, y, pe], full_max=0)
