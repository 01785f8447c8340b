"""The model-family registry: lookups by model, config, dict and Hugging Face model_type; one-line errors."""

from __future__ import annotations

import pytest

import minilora
from minilora import nn
from minilora.models import build_model, families, family_for_model_type, family_of, get_family

CFG = {"vocab_size": 11, "block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 8}


def test_gpt2_is_registered_with_its_peft_facts():
    fam = get_family("gpt2")
    assert "gpt2" in families()
    assert (fam.config_cls, fam.lm_cls, fam.classifier_cls) == (nn.GPTConfig, nn.GPT, nn.GPTForSequenceClassification)
    assert fam.lora_targets == ("c_attn",) and fam.ia3_feedforward == ("mlp.c_proj",)
    assert fam.embed_path == "transformer.wte"
    config = nn.GPTConfig(**CFG)
    assert fam.num_kv_heads(config) == 2 and fam.head_dim(config) == 4


def test_family_of_model_config_dict_and_peft_model():
    from minilora.peft import LoraConfig, get_peft_model

    model = nn.GPT(nn.GPTConfig(**CFG))
    assert family_of(model) is family_of(model.config) is family_of(CFG) is family_of("gpt2")
    assert family_of(get_peft_model(model, LoraConfig(r=2))).name == "gpt2"
    assert family_for_model_type("gpt2").name == "gpt2"


def test_build_model_from_a_dict():
    lm = minilora.build_model({"family": "gpt2", **CFG})
    assert type(lm) is nn.GPT and lm.config.n_embd == 8
    clf = build_model(CFG, num_classes=3)
    assert type(clf) is nn.GPTForSequenceClassification and clf.num_classes == 3


def test_unknown_names_are_one_line_errors():
    with pytest.raises(ValueError, match=r"unknown model family 'bert'; registered families: gpt2") as e:
        get_family("bert")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"model_type 'bert' is not supported \(supported: gpt2"):
        family_for_model_type("bert")
    with pytest.raises(ValueError, match="belongs to no registered model family"):
        family_of(object())
