"""PiSSA / OLoRA: PEFT's residual and s B A, the model unchanged at step 0, the residual base's fingerprint, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import minilora as ml
from minilora.nn import GPT, GPTConfig, Linear
from minilora.peft import LoraConfig, base_fingerprint, get_peft_model, load_adapter
from minilora.peft.io import AdapterError
from minilora.peft.lora_init import principal_init

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
IDX = np.array([[1, 4, 0, 9, 3], [10, 2, 2, 7, 5]])
TARGETS = np.array([[4, 0, 9, 3, 1], [2, 2, 7, 5, 10]])


def base(device="cpu", dtype="float32"):
    ml.manual_seed(0)
    return GPT(CFG).to(device, dtype)


@pytest.mark.parametrize("init", ["pissa", "pissa_niter_16"])
@pytest.mark.parametrize("rslora", [False, True])
def test_residual_and_product_are_peft_s(init, rslora):
    want = np.load(FIXTURES / "pissa_expected.npz")
    peft = get_peft_model(base(), LoraConfig(r=3, lora_alpha=6, target_modules=("c_attn",), init_lora_weights=init,
                                             use_rslora=rslora))
    s = 6 / (3**0.5 if rslora else 3)
    tol = 1e-5 if init == "pissa" else 1e-3  # a randomised SVD: each side draws its own sketch
    for i in range(CFG.n_layer):
        layer = peft.get_submodule(f"transformer.h.{i}.attn.c_attn")
        np.testing.assert_allclose(layer.base_layer.weight.numpy(), want[f"{init}:{rslora}:{i}:residual"], atol=tol)
        np.testing.assert_allclose(s * layer.lora_B.numpy() @ layer.lora_A.numpy(), want[f"{init}:{rslora}:{i}:sba"],
                                   atol=tol)


@pytest.mark.parametrize("rslora", [False, True])
def test_olora_is_peft_s(rslora):
    want = np.load(FIXTURES / "pissa_expected.npz")
    peft = get_peft_model(base(), LoraConfig(r=3, lora_alpha=6, target_modules=("h.0.attn.c_attn",),
                                             init_lora_weights="olora", use_rslora=rslora))
    layer = peft.get_submodule("transformer.h.0.attn.c_attn")
    s = 6 / (3**0.5 if rslora else 3)
    np.testing.assert_allclose(layer.base_layer.weight.numpy(), want[f"olora:{rslora}:0:residual"], atol=1e-5)
    np.testing.assert_allclose(s * layer.lora_B.numpy() @ layer.lora_A.numpy(), want[f"olora:{rslora}:0:sba"],
                               atol=1e-5)


def test_principal_part_is_the_best_rank_r_approximation(device, rng):
    from minilora import backend

    w = rng.standard_normal((6, 9))
    a, b, res = principal_init(backend.to_device(w, device), 2, 0.5, "pissa")
    u, s, vh = np.linalg.svd(w, full_matrices=False)
    best = (u[:, :2] * s[:2]) @ vh[:2]
    np.testing.assert_allclose(0.5 * backend.to_host(b) @ backend.to_host(a), best, atol=1e-12)
    np.testing.assert_allclose(backend.to_host(res), w - best, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(init_lora_weights="pissa"), dict(init_lora_weights="olora"),
                                dict(init_lora_weights="pissa", use_dora=True),
                                dict(init_lora_weights="pissa", use_rslora=True, use_dora=True)])
def test_unchanged_at_step_zero_and_merges_to_an_ordinary_model(device, rng, kw):
    ref_logits, ref_loss = base(device, "float64")(IDX, TARGETS)
    peft = get_peft_model(base(device, "float64"), LoraConfig(r=4, target_modules=("c_attn", "c_fc"), **kw))
    logits, loss = peft(IDX, TARGETS)
    np.testing.assert_allclose(logits.numpy(), ref_logits.numpy(), atol=1e-12)
    np.testing.assert_allclose(loss.numpy(), ref_loss.numpy(), atol=1e-12)
    for _, p in peft.named_parameters():
        if p.requires_grad:
            p.data = p.data + 0.05 * p.xp.asarray(rng.standard_normal(p.shape))
    out = peft(IDX)[0].numpy()
    plain = peft.merge_and_unload()
    assert isinstance(plain, GPT) and all(isinstance(plain.get_submodule(f"transformer.h.{i}.attn.c_attn"), Linear)
                                          for i in range(2))
    np.testing.assert_allclose(plain(IDX)[0].numpy(), out, atol=1e-10)


def test_the_adapter_belongs_to_the_residual_base(tmp_path):
    original = base()
    peft = get_peft_model(base(), LoraConfig(r=2, init_lora_weights="pissa"))
    assert peft.base_fingerprint != base_fingerprint(original)
    peft.save_adapter(str(tmp_path))
    with pytest.raises(AdapterError, match="saved as trained, for the residual W0 - s B0 A0 of this base"):
        load_adapter(original, str(tmp_path))
    residual = get_peft_model(base(), LoraConfig(r=2, init_lora_weights="pissa")).unload()
    assert base_fingerprint(residual) == peft.base_fingerprint
    loaded = load_adapter(residual, str(tmp_path))  # the saved A, B are used as they are: no second SVD
    np.testing.assert_array_equal(loaded(IDX)[0].numpy(), peft(IDX)[0].numpy())
    assert loaded.peft_config["default"].init_lora_weights == "pissa"


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match=r"init_lora_weights='pissa' needs the float base weights"):
        LoraConfig(init_lora_weights="pissa", quantize=True)
    with pytest.raises(ValueError, match=r"init_lora_weights must be one of .* got 'svd'"):
        LoraConfig(init_lora_weights="svd")
    from minilora.peft import quantize_model

    nf4 = quantize_model(base(), ("c_attn",), block_size=8)
    before = {n: b.copy() for n, b in nf4.named_buffers()}
    with pytest.raises(ValueError, match=r"init_lora_weights='pissa': the base layer is NF4-quantised"):
        get_peft_model(nf4, LoraConfig(r=2, init_lora_weights="pissa"))
    assert all(np.array_equal(b, before[n]) for n, b in nf4.named_buffers())
    peft = get_peft_model(base(), LoraConfig(r=2))
    with pytest.raises(ValueError, match="must be the PeftModel's first adapter"):
        peft.add_adapter("p", LoraConfig(r=2, init_lora_weights="pissa"))
