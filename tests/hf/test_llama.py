"""Hugging Face Llama/Qwen2 folders: fixtures written by transformers (bf16; f16 sharded), round trips, refusals.

The fixtures and their expected logits come from benchmarks/verify_llama.py --fixtures (transformers 5.24).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="needs the hf extra: pip install 'minilora[hf]'")

from safetensors.numpy import load_file, save_file  # noqa: E402

import minilora as ml  # noqa: E402
from minilora import backend  # noqa: E402
from minilora.hf import UnsupportedCheckpointError, from_pretrained, save_pretrained  # noqa: E402
from minilora.hf.safetensors_io import read_safetensors  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("kind, cls", [("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM")])
def test_fixture_logits_loss_and_greedy_equal_transformers(device, kind, cls):
    expected = np.load(FIXTURES / f"{kind}_expected.npz")
    model = from_pretrained(FIXTURES / kind, device=device)
    assert type(model).__name__ == cls and model.dtype == np.float32
    ids = expected["ids"]
    targets = np.concatenate([ids[:, 1:], np.full((ids.shape[0], 1), -100)], axis=1)
    logits, loss = model(backend.to_device(ids, device), backend.to_device(targets, device))
    np.testing.assert_allclose(backend.to_host(logits.data), expected["logits"], rtol=1e-4, atol=2e-5)
    assert abs(float(loss.item()) - float(expected["loss"])) < 2e-5
    for use_cache in (True, False):
        out = model.generate(backend.to_device(ids, device), 6, do_sample=False, use_cache=use_cache)
        np.testing.assert_array_equal(backend.to_host(out), expected["greedy"])


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_left_padded_batch_equals_transformers(device, kind):
    """transformers' forward counts positions 0, 1, ... whatever the mask (so does minilora's without position_ids);
    its generate derives position_ids = cumsum(mask) - 1 (so does minilora's: mask_positions)."""
    expected = np.load(FIXTURES / f"{kind}_padded_expected.npz")
    model = from_pretrained(FIXTURES / kind, device=device)
    ids, mask = (backend.to_device(expected[k], device) for k in ("ids", "mask"))
    real = expected["mask"].astype(bool)
    pos = ml.nn.mask_positions(mask)
    np.testing.assert_array_equal(backend.to_host(pos), expected["positions"])
    for logits, want in ((model(ids, attention_mask=mask)[0], "logits"),
                         (model(ids, attention_mask=mask, position_ids=pos)[0], "logits_mask_positions")):
        np.testing.assert_allclose(backend.to_host(logits.data)[real], expected[want], rtol=1e-4, atol=2e-5)
    for use_cache in (True, False):
        out = model.generate(ids, 8, do_sample=False, use_cache=use_cache, attention_mask=mask)
        np.testing.assert_array_equal(backend.to_host(out), expected["greedy"])


def test_save_pretrained_round_trip_and_dtype(tmp_path):
    model = from_pretrained(FIXTURES / "qwen2")
    model.save_pretrained(tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["architectures"] == ["Qwen2ForCausalLM"]
    assert "lm_head.weight" not in load_file(tmp_path / "out" / "model.safetensors")  # tied
    again = ml.hf.from_pretrained(tmp_path / "out")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)
    double = from_pretrained(FIXTURES / "llama", dtype=np.float64)
    assert double.dtype == np.float64


def test_unsupported_model_type_and_options(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(FIXTURES / "llama", folder)
    cfg = json.loads((folder / "config.json").read_text())
    for change, match in (({"model_type": "mistral"}, r"model_type 'mistral' is not supported \(supported: gpt2, "
                                                       r"llama, qwen2\)"),
                          ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
                          ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 1e4}}, "rope_type 'llama3'"),
                          ({"num_key_value_heads": 3}, "num_key_value_heads 3")):
        (folder / "config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(UnsupportedCheckpointError, match=match) as e:
            from_pretrained(folder)
        assert "\n" not in str(e.value)


def test_tensors_that_do_not_fit_are_named(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(FIXTURES / "llama", folder)
    t = read_safetensors(folder / "model.safetensors")  # bfloat16 in the file, widened
    t["model.layers.0.self_attn.k_proj.weight"] = np.zeros((4, 16), np.float32)
    del t["model.norm.weight"]
    save_file(t, folder / "model.safetensors")
    with pytest.raises(UnsupportedCheckpointError) as e:
        from_pretrained(folder)
    msg = str(e.value)
    assert "model.safetensors" in msg and "missing key: model.norm.weight" in msg
    assert "model.layers.0.self_attn.k_proj.weight: shape (4, 16) in the file, (8, 16) expected" in msg
    sharded = tmp_path / "s"  # a sharded folder: the index, and the shard holding the misfit tensor
    shutil.copytree(FIXTURES / "qwen2", sharded)
    shard = json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"][
        "model.layers.0.self_attn.k_proj.weight"]
    t = read_safetensors(sharded / shard)
    t["model.layers.0.self_attn.k_proj.weight"] = np.zeros((4, 16), np.float32)
    save_file(t, sharded / shard)
    with pytest.raises(UnsupportedCheckpointError, match=rf"(?s)model.safetensors.index.json does not fit .*"
                       rf"k_proj.weight: shape \(4, 16\) in {shard}, \(8, 16\) expected"):
        from_pretrained(sharded)


def test_adapted_models_must_be_merged_before_saving(tmp_path):
    from minilora.peft import LoraConfig, get_peft_model

    model = from_pretrained(FIXTURES / "llama")
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=("q_proj",)))
    with pytest.raises(UnsupportedCheckpointError, match="merged first"):
        save_pretrained(peft.base_model, tmp_path / "x")
    assert not (tmp_path / "x" / "config.json").exists()


def test_a_peft_lora_adapter_on_llama_gives_peft_logits(device, tmp_path):
    from minilora.peft import load_adapter

    expected = np.load(FIXTURES / "llama_peft_lora_expected.npz")
    model = load_adapter(from_pretrained(FIXTURES / "llama", device=device), FIXTURES / "llama_peft_lora")
    assert sorted({p.rpartition(".")[2] for p, _ in model.peft_layers()}) == ["q_proj", "v_proj"]
    logits, _ = model(backend.to_device(expected["ids"], device))
    np.testing.assert_allclose(backend.to_host(logits.data), expected["logits"], rtol=1e-4, atol=2e-5)
    model.save_adapter(str(tmp_path / "back"), format="peft")  # and back in PEFT's names
    cfg = json.loads((tmp_path / "back" / "adapter_config.json").read_text())
    assert cfg["fan_in_fan_out"] is False and sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]
    again = load_file(tmp_path / "back" / "adapter_model.safetensors")
    theirs = load_file(FIXTURES / "llama_peft_lora" / "adapter_model.safetensors")
    assert sorted(again) == sorted(theirs)
    for k in theirs:
        np.testing.assert_array_equal(again[k], theirs[k])
