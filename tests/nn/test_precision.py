"""16-bit weights: Module.to(dtype=...)/half()/bfloat16()/float(), a frozen 16-bit base under every PEFT method
(exact to the stored rounding, adapters/logits/loss float32, half the bytes), mixed-dtype and ml_dtypes errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import GPT, GPTConfig, Linear
from minilora.peft import AdapterConfig, IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model
from minilora.train import load_checkpoint, restore_model, save_checkpoint

CFG = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8)
HALF = ["bfloat16", "float16"]
PEFT = {
    "lora": LoraConfig(target_modules="all-linear"), "dora": LoraConfig(use_dora=True), "ia3": IA3Config(),
    "adapter": AdapterConfig(), "prefix": PrefixTuningConfig(num_virtual_tokens=2),
    "prompt": PromptTuningConfig(num_virtual_tokens=2), "qlora": LoraConfig(quantize=True, quant_block_size=8),
}


def test_to_dtype_names_and_shortcuts():
    model = GPT(CFG)
    w = model.lm_head.weight
    assert model.half() is model and w.dtype == np.float16 and model.transformer.wte.weight is w  # tie kept
    assert model.bfloat16().dtype.name == "bfloat16"
    assert model.float().dtype == np.float32
    for name, want in [("bf16", "bfloat16"), ("fp16", "float16"), ("half", "float16"), ("float32", "float32")]:
        assert model.to(dtype=name).dtype.name == want
    assert model.to("bfloat16").dtype.name == "bfloat16"  # a dtype name in place of the device, as PyTorch
    with pytest.raises(TypeError, match="dtype must be floating point"):
        model.to(dtype="int32")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        model.to("tpu")


def test_bfloat16_without_ml_dtypes_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import ml_dtypes now raises ImportError
    with pytest.raises(ImportError, match=r"^bfloat16 needs the ml_dtypes package: pip install ml_dtypes") as e:
        GPT(CFG).bfloat16()
    assert "\n" not in str(e.value)


def test_mixing_dtypes_in_one_op_is_a_one_line_error():
    a, b = ml.tensor([1.0, 2.0], dtype="float16"), ml.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match=r"^Add: inputs mix dtypes \(float16 \(2,\), float32 \(2,\)\); cast one") as e:
        a + b
    assert "\n" not in str(e.value)
    assert (a.astype("float32") + b).dtype == np.float32  # with the cast it is fine
    with pytest.raises(TypeError, match="mix dtypes"):  # float32 against float64 is not silently upcast either
        ml.F.linear(ml.tensor(np.ones((2, 3), np.float32)), ml.tensor(np.ones((4, 3))))


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("method", PEFT)
def test_peft_on_a_16bit_base_is_exact_to_its_rounding(device, dtype, method):
    ml.manual_seed(0)
    base = GPT(CFG).to(device, dtype)
    ref = GPT(CFG).to(device)
    ref.load_state_dict(base.state_dict())  # float32 holding exactly the rounded 16-bit weights
    models = []
    for m in (base, ref):
        ml.manual_seed(1)
        models.append(get_peft_model(m, PEFT[method]))
    idx = np.random.default_rng(0).integers(0, CFG.vocab_size, (2, 6))
    out = []
    for m in models:
        for p in m.parameters():  # off the init, identically (LoRA's B = 0 would hide the branch)
            if p.requires_grad:
                p.data = p.data + 0.05
        logits, loss = m(idx, targets=np.roll(idx, -1, axis=1))
        loss.backward()
        trained = {n: p for n, p in m.named_parameters() if p.requires_grad}
        out.append((logits, loss, trained))
    (lg, loss, trained), (lg_ref, loss_ref, trained_ref) = out
    assert lg.dtype == loss.dtype == np.float32
    assert np.array_equal(lg.numpy(), lg_ref.numpy()) and loss.item() == loss_ref.item()
    assert trained.keys() == trained_ref.keys() and trained
    for name, p in trained.items():
        assert p.dtype == np.float32 and ml.Tensor(p.grad).dtype == np.float32, name
        assert np.array_equal(ml.Tensor(p.grad).numpy(), ml.Tensor(trained_ref[name].grad).numpy()), name


def _linear_weight_bytes(model) -> int:
    return sum(m.weight.data.nbytes for m in model.modules() if isinstance(m, Linear))


@pytest.mark.parametrize("dtype", HALF)
def test_a_16bit_base_halves_the_linear_weight_bytes(dtype):
    full = _linear_weight_bytes(GPT(CFG))
    half = get_peft_model(GPT(CFG).to(dtype=dtype), LoraConfig())
    assert _linear_weight_bytes(half.base_model) * 2 == full


def test_merge_into_a_16bit_base_and_checkpoint_round_trip(tmp_path):
    ml.manual_seed(0)
    model = get_peft_model(GPT(CFG).bfloat16(), LoraConfig())
    model.base_model.transformer.h[0].attn.c_attn.lora_B.data += 0.5
    idx = np.arange(6)[None]
    with ml.no_grad():
        before = model(idx)[0].numpy()
        merged = model.merge_and_unload()
        assert merged.dtype.name == "bfloat16"
        after = merged(idx)[0].numpy()
    assert np.allclose(before, after, atol=0.05)  # the merged weight is rounded to bfloat16
    save_checkpoint(tmp_path / "ckpt.npz", merged)
    back = GPT(CFG).bfloat16()
    restore_model(load_checkpoint(tmp_path / "ckpt.npz"), back)
    for (n, a), b in zip(merged.state_dict().items(), back.state_dict().values(), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a.astype(np.float32), b.astype(np.float32)), n


def test_backend_dtype_helpers():
    assert backend.is_floating(backend.resolve_dtype("bf16")) and backend.is_16bit("float16")
    assert not backend.is_floating("int8") and not backend.is_16bit("float32")


@pytest.mark.parametrize("dtype", HALF)
def test_lora_on_a_16bit_llama_is_exact_to_its_rounding(dtype):
    from minilora.models import build_model  # noqa: PLC0415

    cfg = {"family": "llama", "vocab_size": 11, "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 12}
    ml.manual_seed(0)
    base = build_model(cfg).to(dtype=dtype)
    ref = build_model(cfg)
    ref.load_state_dict(base.state_dict())
    idx = np.arange(6)[None]
    out = []
    for m in (base, ref):
        ml.manual_seed(1)
        peft = get_peft_model(m, LoraConfig(target_modules="all-linear"))
        for p in peft.parameters():
            if p.requires_grad:
                p.data = p.data + 0.05
        logits, loss = peft(idx, targets=idx)
        loss.backward()
        out.append((logits.numpy(), [p.grad for p in peft.parameters() if p.requires_grad]))
    assert out[0][0].dtype == np.float32 and np.array_equal(out[0][0], out[1][0])
    for a, b in zip(out[0][1], out[1][1], strict=True):
        assert a.dtype == np.float32 and np.array_equal(a, b)
