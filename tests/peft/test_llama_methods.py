"""Every fine-tuning method on Llama and Qwen2, with the defaults the family gives (minilora.models)."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn.llama import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from minilora.optim import AdamW
from minilora.peft import (
    AdapterConfig,
    FullFineTuneConfig,
    IA3Config,
    IA3Linear,
    LoraConfig,
    LoraLinear,
    PrefixTuningConfig,
    PromptTuningConfig,
    get_peft_model,
    load_adapter,
)

TINY = {"vocab_size": 13, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32}
METHODS = {
    "full": FullFineTuneConfig, "lora": LoraConfig, "rslora": lambda: LoraConfig(use_rslora=True),
    "dora": lambda: LoraConfig(use_dora=True), "qlora": lambda: LoraConfig(quantize=True, quant_block_size=8),
    "ia3": IA3Config, "houlsby": AdapterConfig, "pfeiffer": lambda: AdapterConfig(placement="pfeiffer"),
    "prefix": lambda: PrefixTuningConfig(num_virtual_tokens=3),
    "prefix_mlp": lambda: PrefixTuningConfig(num_virtual_tokens=3, prefix_projection=True),
    "prompt": lambda: PromptTuningConfig(num_virtual_tokens=3),
}


def base(qwen=False, seed=0, device="cpu"):
    ml.manual_seed(seed)
    cls, cfg = (Qwen2ForCausalLM, Qwen2Config) if qwen else (LlamaForCausalLM, LlamaConfig)
    return cls(cfg(**TINY)).to(device)


def batch(device="cpu"):
    x = np.random.default_rng(0).integers(0, 13, (2, 6))
    return backend.to_device(x, device), backend.to_device(np.roll(x, -1, axis=1), device)


@pytest.mark.parametrize("qwen", [False, True])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_generates_and_round_trips(tmp_path, device, name, qwen):
    model = get_peft_model(base(qwen, device=device), METHODS[name]())
    x, y = batch(device)
    trainable, total = model.get_nb_trainable_parameters()
    assert 0 < trainable <= total
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(3):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    assert losses[-1] < losses[0]
    a = model.generate(x, 3, temperature=0)
    b = model.generate(x, 3, temperature=0, use_cache=False)
    np.testing.assert_array_equal(backend.to_host(a), backend.to_host(b))
    if name == "full":
        return
    model.eval()
    want = backend.to_host(model(x)[0].data)
    model.save_adapter(str(tmp_path / "a"))
    again = load_adapter(base(qwen, device=device), str(tmp_path / "a"))
    np.testing.assert_allclose(backend.to_host(again(x)[0].data), want, rtol=1e-5, atol=1e-6)


def test_defaults_come_from_the_family():
    lora = get_peft_model(base(), LoraConfig())
    assert sorted({p.rpartition(".")[2] for p, m in lora.peft_layers()}) == ["q_proj", "v_proj"]
    assert lora.peft_config["default"].target_modules == ("q_proj", "v_proj")
    ia3 = get_peft_model(base(), IA3Config())
    kinds = {p.rpartition(".")[2]: m.feedforward for p, m in ia3.peft_layers() if isinstance(m, IA3Linear)}
    assert kinds == {"k_proj": False, "v_proj": False, "down_proj": True}
    ad = get_peft_model(base(), AdapterConfig())
    assert [p for p, _ in ad.peft_layers()][:2] == ["model.layers.0.self_attn", "model.layers.0.mlp"]
    prefix = get_peft_model(base(), PrefixTuningConfig(num_virtual_tokens=3))
    k, _ = prefix.prompt_encoder["default"]()[0]
    assert k.shape == (1, 2, 3, 4)  # num_key_value_heads=2, not the 4 query heads


@pytest.mark.parametrize("qwen", [False, True])
def test_merge_unmerge_and_merge_and_unload(qwen):
    for cfg in (LoraConfig(r=2), LoraConfig(r=2, use_dora=True), IA3Config()):
        model = get_peft_model(base(qwen), cfg)
        for p in model.parameters():  # move off the identity init
            if p.requires_grad:
                p.data = p.data + backend.host_rng().normal(0, 0.1, p.shape).astype(np.float32)
        x, _ = batch()
        adapted = model(x)[0].numpy()
        model.merge()
        np.testing.assert_allclose(model(x)[0].numpy(), adapted, rtol=1e-5, atol=1e-6)
        model.unmerge()
        merged = model.merge_and_unload()
        assert not any(isinstance(m, (LoraLinear, IA3Linear)) for _, m in merged.named_modules())
        np.testing.assert_allclose(merged(x)[0].numpy(), adapted, rtol=1e-5, atol=1e-6)


def test_wrong_base_is_refused_and_peft_names(tmp_path):
    model = get_peft_model(base(), LoraConfig(r=2))
    model.save_adapter(str(tmp_path / "a"))
    with pytest.raises(ValueError, match="base"):
        load_adapter(base(seed=1), str(tmp_path / "a"))
    model.save_adapter(str(tmp_path / "p"), format="peft")
    from safetensors.numpy import load_file

    keys = sorted(load_file(tmp_path / "p" / "adapter_model.safetensors"))
    assert keys[0] == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    import json

    cfg = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    assert cfg["fan_in_fan_out"] is False and sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]


def test_a_target_the_family_lacks_is_a_one_line_error():
    with pytest.raises(ValueError, match="c_attn") as e:
        get_peft_model(base(), LoraConfig(target_modules=("c_attn",)))
    assert "\n" not in str(e.value)
