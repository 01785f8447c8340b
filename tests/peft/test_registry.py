"""The method registry: every method is found, configured, injected, disabled, merged and listed from it alone."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.cli import build_parser
from minilora.cli.finetune_cmd import build_config
from minilora.nn import GPT, GPTConfig
from minilora.peft import PeftConfig, get_peft_model, registry

CFG = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIANTS = list(registry.variants())
SMALL = {"r": 2, "num_virtual_tokens": 2, "bottleneck": 3}


def small_config(name):
    method, variant = registry.get_variant(name)
    fields = {f.name for f in dataclasses.fields(method.config_cls)}
    return method.config(name, **{k: v for k, v in SMALL.items() if k in fields})


def tiny(device="cpu"):
    ml.manual_seed(0)
    return GPT(CFG).to(device)


def test_every_method_has_a_config_variants_a_rate_and_a_docs_page():
    assert len(registry.methods()) >= 6
    for method in registry.methods().values():
        assert issubclass(method.config_cls, PeftConfig) and method.variants
        for v in method.variants:
            assert v.lr > 0 and v.summary
            assert os.path.isfile(os.path.join(ROOT, v.docs or method.docs)), v.docs or method.docs


@pytest.mark.parametrize("name", VARIANTS)
def test_config_round_trips_through_its_dict(name):
    config = small_config(name)
    assert PeftConfig.from_dict(config.to_dict()) == config
    assert registry.method_of(config) is registry.get_variant(name)[0]


def test_unknown_names_list_the_registered_methods():
    with pytest.raises(ValueError, match=r"unknown fine-tuning method 'bogus'; registered methods: full, lora, .*"):
        registry.get_variant("bogus")
    with pytest.raises(ValueError, match=r"unknown peft_type 'NOPE'; registered methods: FULL, LORA"):
        registry.method_of("NOPE")
    with pytest.raises(ValueError, match="unknown peft_type 'NOPE'"):
        PeftConfig.from_dict({"peft_type": "NOPE"})


def test_finetune_offers_every_variant_and_reads_its_options():
    parser = build_parser()
    for name in VARIANTS:
        args = parser.parse_args(["finetune", "--method", name, "--base", "b", "--data", "d"])
        method, variant = registry.get_variant(name)
        config = build_config(args)
        assert config == method.config(name)  # no option given: the variant's defaults
    args = parser.parse_args(["finetune", "--method", "dora", "--base", "b", "--data", "d", "--rank", "4",
                              "--targets", "c_attn,mlp.c_fc"])
    config = build_config(args)
    assert (config.r, config.use_dora, config.target_modules) == (4, True, ("c_attn", "mlp.c_fc"))


@pytest.mark.parametrize("name", [n for n in VARIANTS if registry.get_variant(n)[0].can_disable])
def test_disable_adapter_gives_the_frozen_base_outputs(device, rng, name):
    x = backend.to_device(rng.integers(0, 11, (2, 5)), device)
    peft = get_peft_model(tiny(device), small_config(name))
    with peft.disable_adapter():  # the base as the method left it (NF4 for QLoRA, the residual for PiSSA)
        ref = peft(x)[0].numpy()
    for _, p in peft.named_parameters():
        if p.requires_grad:
            p.data = p.data + backend.to_device(0.3 * rng.standard_normal(p.shape), p.device, p.dtype)
    with peft.disable_adapter():
        np.testing.assert_allclose(peft(x)[0].numpy(), ref, rtol=1e-5, atol=1e-5)
    assert not np.allclose(peft(x)[0].numpy(), ref)


@pytest.mark.parametrize("name", VARIANTS)
def test_merge_and_unload_only_where_the_method_merges(rng, name):
    peft = get_peft_model(tiny(), small_config(name))
    x = rng.integers(0, 11, (2, 5))
    for _, p in peft.named_parameters():
        if p.requires_grad:
            p.data = p.data + 0.1 * rng.standard_normal(p.shape).astype(p.dtype)
    out = peft(x)[0].numpy()
    if not registry.get_variant(name)[0].mergeable:
        with pytest.raises(ValueError, match="cannot be merged"):
            peft.merge_and_unload()
        return
    plain = peft.merge_and_unload()
    assert isinstance(plain, GPT) and not any("lora" in n or "ia3" in n for n, _ in plain.named_parameters())
    np.testing.assert_allclose(plain(x)[0].numpy(), out, rtol=1e-4, atol=1e-4)
