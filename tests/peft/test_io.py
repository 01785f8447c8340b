"""Adapter files: only the adapter is written, never pickle; round trips; another base is refused."""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import GPT, GPTConfig
from minilora.peft import (
    IA3Config,
    LoraConfig,
    PeftModel,
    base_fingerprint,
    get_peft_model,
    load_adapter,
    registry,
)
from minilora.peft.io import AdapterError

CFG = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8)


def tiny(device="cpu", seed=0):
    ml.manual_seed(seed)
    return GPT(CFG).to(device)


def trained(device, config, rng):
    peft = get_peft_model(tiny(device), config)
    for _, p in peft.named_parameters():
        if p.requires_grad:
            p.data = p.data + backend.to_device(0.3 * rng.standard_normal(p.shape), p.device, p.dtype)
    return peft


SMALL = {"r": 2, "num_virtual_tokens": 2, "bottleneck": 3, "encoder_hidden_size": 4}  # by field, where a config has it


def small_config(name):
    """The registry's config for variant ``name`` (with the demo's settings), shrunk to the tiny model."""
    method, variant = registry.get_variant(name)
    fields = {f.name for f in dataclasses.fields(method.config_cls)}
    return method.config(name, **{**variant.demo_settings, **{k: v for k, v in SMALL.items() if k in fields}})


CONFIGS = {name: small_config(name) for name in registry.variants()}  # every registered method


@pytest.mark.parametrize("method", CONFIGS)
def test_round_trip(device, rng, tmp_path, method):
    config = CONFIGS[method]
    if getattr(config, "init", None) == "text":  # prompt tuning from text: the tokenizer is only needed here
        peft = get_peft_model(tiny(device), config, tokenizer=type("T", (), {"encode": lambda self, s: [1, 2]})())
        for _, p in peft.named_parameters():
            if p.requires_grad:
                p.data = p.data * 1.5
    else:
        peft = trained(device, config, rng)
    x = backend.to_device(rng.integers(0, 11, (2, 5)), device)
    out = peft(x)[0].numpy()
    size = peft.save_adapter(str(tmp_path))
    files = sorted(os.listdir(tmp_path))
    assert files == ["adapter_config.json", "adapter_model.npz"]
    assert size == sum(os.path.getsize(tmp_path / f) for f in files)
    with np.load(tmp_path / "adapter_model.npz", allow_pickle=False) as npz:
        saved = set(npz.files)
    assert saved == set(peft.adapter_state())
    if registry.method_of(config).can_disable:  # only the adapter: of the base's own tensors, at most trained biases
        assert all(k.endswith(".bias") for k in saved & set(dict(tiny().named_parameters())))
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    target = tiny(device)
    if meta["base_fingerprint"] != base_fingerprint(target):  # PiSSA / OLoRA: the adapter fits the residual base
        target = copy.deepcopy(peft).unload()
        assert meta["base_fingerprint"] == base_fingerprint(target)
    loaded = load_adapter(target, str(tmp_path))
    assert isinstance(loaded, PeftModel) and type(loaded.peft_config["default"]) is type(config)
    np.testing.assert_allclose(loaded(x)[0].numpy(), out, rtol=1e-6, atol=1e-6)
    assert not any(p.requires_grad for p in loaded.parameters())  # is_trainable=False: inference
    assert meta["base_fingerprint"] == loaded.base_fingerprint
    assert meta["base_model"]["config"]["n_embd"] == 8 and meta["minilora_version"] == ml.__version__


def test_lora_adapter_is_small_and_named_plainly(tmp_path, rng):
    peft = trained("cpu", LoraConfig(r=2), rng)
    peft.save_adapter(str(tmp_path))
    with np.load(tmp_path / "adapter_model.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(f"transformer.h.{i}.attn.c_attn.lora_{ab}" for i in range(2) for ab in "AB")


def test_load_as_second_adapter_and_trainable(tmp_path, rng):
    src = trained("cpu", LoraConfig(r=2), rng)
    x = rng.integers(0, 11, (2, 5))
    out = src(x)[0].numpy()
    src.save_adapter(str(tmp_path))
    peft = get_peft_model(tiny(), LoraConfig(r=4), adapter_name="mine")
    peft.load_adapter(str(tmp_path), adapter_name="theirs", is_trainable=True)
    assert peft.active_adapter == "mine"
    peft.set_adapter("theirs")
    np.testing.assert_allclose(peft(x)[0].numpy(), out, rtol=1e-6)
    assert all(p.requires_grad for n, p in peft.named_parameters() if "lora_" in n)


def test_wrong_base_is_refused_and_nothing_changes(tmp_path, rng):
    trained("cpu", LoraConfig(r=2), rng).save_adapter(str(tmp_path))
    other = tiny(seed=1)
    before = {n: p.numpy() for n, p in other.named_parameters()}
    modules = [n for n, _ in other.named_modules()]
    with pytest.raises(AdapterError, match=r"another base model \(adapter's base fingerprint sha256:[0-9a-f]{64}, "
                                           r"this model's sha256:[0-9a-f]{64}\)"):
        load_adapter(other, str(tmp_path))
    assert [n for n, _ in other.named_modules()] == modules
    assert all(np.array_equal(p.numpy(), before[n]) and p.requires_grad for n, p in other.named_parameters())
    peft = get_peft_model(tiny(seed=1), LoraConfig(r=2))
    with pytest.raises(AdapterError, match="another base model"):
        peft.load_adapter(str(tmp_path), adapter_name="x")
    assert list(peft.peft_config) == ["default"]


def test_fingerprint_ignores_adapters_and_wrappers():
    model = tiny()
    fp = base_fingerprint(model)
    peft = get_peft_model(model, LoraConfig(r=2, use_dora=True, modules_to_save=("lm_head",)))
    assert base_fingerprint(peft) == fp == peft.base_fingerprint
    assert base_fingerprint(tiny(seed=1)) != fp
    assert base_fingerprint(tiny().double()) != fp  # dtypes are part of it


def test_bad_files_and_formats(tmp_path, rng):
    peft = trained("cpu", LoraConfig(r=2), rng)
    with pytest.raises(ValueError, match="format must be one of"):
        peft.save_adapter(str(tmp_path / "p"), format="torch")
    with pytest.raises(FileNotFoundError):
        load_adapter(tiny(), str(tmp_path / "missing"))
    peft.save_adapter(str(tmp_path / "a"))
    (tmp_path / "a" / "adapter_model.npz").write_bytes(b"not a zip")
    with pytest.raises(AdapterError, match="adapter_model.npz: not a readable adapter"):
        load_adapter(tiny(), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="one method family"):
        peft.save_adapter(str(tmp_path / "b"))
        get_peft_model(tiny(), IA3Config()).load_adapter(str(tmp_path / "b"), adapter_name="x")
