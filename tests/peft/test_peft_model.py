"""PeftModel: counting, naming, disable_adapter, merging, named adapters, virtual tokens, training with AdamW."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import GPT, GPTConfig, Linear
from minilora.optim import AdamW
from minilora.peft import (
    AdapterConfig,
    FullFineTuneConfig,
    IA3Config,
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    get_peft_model,
)

CFG = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8)
C = 8


def tiny(device):
    ml.manual_seed(0)
    return GPT(CFG).to(device)


def ids(rng, *shape, device="cpu"):
    return backend.to_device(rng.integers(0, 11, shape), device)


def perturb(peft, rng, scale=0.3):
    """Move every trainable tensor away from its initial value (so the adapter changes the outputs)."""
    for _, p in peft.named_parameters():
        if p.requires_grad:
            p.data = p.data + backend.to_device(scale * rng.standard_normal(p.shape), p.device, p.dtype)


def test_print_trainable_parameters(capsys):
    peft = get_peft_model(tiny("cpu"), LoraConfig(r=4, target_modules=("c_attn",)))
    base = tiny("cpu").num_parameters()  # the tied head counted once
    lora = 2 * (4 * C + 3 * C * 4)
    assert peft.get_nb_trainable_parameters() == (lora, base + lora)
    peft.print_trainable_parameters()
    pct = 100 * lora / (base + lora)
    want = f"trainable params: {lora:,} || all params: {base + lora:,} || trainable%: {pct:.4f}\n"
    assert capsys.readouterr().out == want


def test_freezes_base_and_names_have_no_prefix():
    peft = get_peft_model(tiny("cpu"), LoraConfig(r=2))
    names = dict(peft.named_parameters())
    assert all(not n.startswith("base_model") for n in names)
    assert all(p.requires_grad == ("lora_" in n) for n, p in names.items())
    sd = peft.state_dict()
    assert "transformer.h.1.attn.c_attn.lora_B" in sd and "lm_head.weight" in sd
    with pytest.raises(TypeError, match="already a PeftModel"):
        get_peft_model(peft, LoraConfig())


def test_full_fine_tuning_is_the_same_api():
    model = tiny("cpu")
    peft = get_peft_model(model, FullFineTuneConfig())
    assert peft.get_nb_trainable_parameters() == (model.num_parameters(),) * 2
    with pytest.raises(ValueError, match="no adapter to disable"), peft.disable_adapter():
        pass


METHODS = {
    "lora": LoraConfig(r=2, target_modules="all-linear", bias="all"),
    "dora": LoraConfig(r=2, target_modules=("c_attn", "c_proj"), use_dora=True),
    "ia3": IA3Config(),
    "adapter": AdapterConfig(bottleneck=3, train_layernorms=True),
    "prefix": PrefixTuningConfig(num_virtual_tokens=2),
    "prompt": PromptTuningConfig(num_virtual_tokens=2),
}


@pytest.mark.parametrize("method", METHODS)
def test_disable_adapter_gives_base_outputs(device, rng, method):
    model = tiny(device)
    x = ids(rng, 2, 5, device=device)
    ref = model(x)[0].numpy()
    peft = get_peft_model(model, METHODS[method])
    if method == "lora":  # trained biases change the base itself (as in PEFT); leave them alone here
        for n, p in peft.named_parameters():
            if n.endswith("bias"):
                p.requires_grad_(False)
    perturb(peft, rng)
    assert not np.allclose(peft(x)[0].numpy(), ref)
    with peft.disable_adapter():
        np.testing.assert_array_equal(peft(x)[0].numpy(), ref)
    assert not np.allclose(peft(x)[0].numpy(), ref)


@pytest.mark.parametrize("method", ["lora", "dora", "ia3"])
def test_merge_unmerge_and_merge_and_unload(device, rng, method):
    model = tiny(device)
    x = ids(rng, 2, 5, device=device)
    before = {n: p.numpy() for n, p in model.named_parameters()}
    peft = get_peft_model(model, METHODS[method])
    perturb(peft, rng)
    adapted = peft(x)[0].numpy()
    peft.merge()
    np.testing.assert_allclose(peft(x)[0].numpy(), adapted, rtol=1e-5, atol=1e-5)
    peft.unmerge()
    for n, p in peft.named_parameters():
        if "base_layer" in n and not n.endswith("bias"):
            np.testing.assert_allclose(p.numpy(), before[n.replace(".base_layer", "")], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(peft(x)[0].numpy(), adapted, rtol=1e-5, atol=1e-5)
    merged = peft.merge_and_unload()
    assert type(merged) is GPT and isinstance(merged.transformer.h[0].attn.c_attn, Linear)
    assert sorted(n for n, _ in merged.named_parameters()) == sorted(before)
    np.testing.assert_allclose(merged(x)[0].numpy(), adapted, rtol=1e-5, atol=1e-5)


def test_adapters_cannot_be_merged():
    peft = get_peft_model(tiny("cpu"), AdapterConfig())
    with pytest.raises(ValueError, match="AdapterConfig adapters cannot be merged"):
        peft.merge_and_unload()


def test_named_adapters(device, rng):
    model = tiny(device)
    x = ids(rng, 2, 5, device=device)
    ref = model(x)[0].numpy()
    peft = get_peft_model(model, LoraConfig(r=2), adapter_name="a")
    perturb(peft, rng)
    out_a = peft(x)[0].numpy()
    peft.add_adapter("b", LoraConfig(r=3, target_modules=("c_attn", "c_fc")))
    assert peft.active_adapter == "a"
    np.testing.assert_array_equal(peft(x)[0].numpy(), out_a)  # adding does not activate
    peft.set_adapter("b")
    shapes = {n: p.shape for n, p in peft.named_parameters() if p.requires_grad}
    assert shapes["transformer.h.0.attn.c_attn.lora_A"] == (3, C) and "transformer.h.0.mlp.c_fc.lora_A" in shapes
    np.testing.assert_array_equal(peft(x)[0].numpy(), ref)  # b is still at its initialisation
    perturb(peft, rng)
    out_b = peft(x)[0].numpy()
    peft.set_adapter("a")
    np.testing.assert_array_equal(peft(x)[0].numpy(), out_a)
    assert "transformer.h.0.mlp.c_fc.lora_A" not in dict(peft.named_parameters())  # a does not target c_fc
    with pytest.raises(ValueError, match="'a' is the active adapter"):
        peft.delete_adapter("a")
    with pytest.raises(ValueError, match=r"no adapter named 'c'; adapters: \['a', 'b'\]"):
        peft.set_adapter("c")
    with pytest.raises(ValueError, match="one method family per PeftModel"):
        peft.add_adapter("c", IA3Config())
    with pytest.raises(ValueError, match="already exists"):
        peft.add_adapter("b", LoraConfig())
    peft.set_adapter("b")
    np.testing.assert_array_equal(peft(x)[0].numpy(), out_b)
    peft.set_adapter("a")
    peft.delete_adapter("b")
    assert list(peft.peft_config) == ["a"]
    assert isinstance(peft.get_submodule("transformer.h.0.mlp.c_fc"), Linear)  # no adapter left there
    np.testing.assert_array_equal(peft(x)[0].numpy(), out_a)


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_virtual_tokens_reach_forward_and_generate(device, rng, method):
    peft = get_peft_model(tiny(device), METHODS[method])
    names = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert names and all(n.startswith("prompt_encoder.default.") for n in names)
    x = ids(rng, 2, 3, device=device)
    logits, _ = peft(x)
    assert logits.shape == (2, 3, 11)
    assert peft.generate(x, 3, temperature=0).shape == (2, 6)
    with peft.disable_adapter():
        mine = backend.to_host(peft.generate(x, 3, temperature=0))
    np.testing.assert_array_equal(mine, backend.to_host(peft.base_model.generate(x, 3, temperature=0)))


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "adapter", "prefix"])
def test_training_keeps_frozen_weights_bit_identical(device, rng, method):
    peft = get_peft_model(tiny(device), METHODS[method])
    frozen = {n: p.numpy() for n, p in peft.named_parameters() if not p.requires_grad}
    trainable = [p for p in peft.parameters() if p.requires_grad]
    opt = AdamW(peft.named_parameters(), lr=1e-2)
    x, y = ids(rng, 2, 6, device=device), ids(rng, 2, 6, device=device)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        _, loss = peft(x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for n, p in peft.named_parameters():
        if n in frozen:
            np.testing.assert_array_equal(p.numpy(), frozen[n])
            assert p.grad is None
    assert opt.state_size() == 2 * sum(p.size for p in trainable)  # Adam moments for trainable tensors only


def test_isinstance_and_attribute_fallback():
    model = tiny("cpu")
    peft = get_peft_model(model, LoraConfig())
    assert isinstance(peft, PeftModel) and peft.base_model is model
    assert peft.transformer.h[0].attn.c_attn.in_features == C  # the wrapper forwards attribute reads
    with pytest.raises(TypeError, match="config must be a PeftConfig"):
        get_peft_model(tiny("cpu"), {"r": 8})
