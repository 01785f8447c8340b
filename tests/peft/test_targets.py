"""Target matching: exact names, dotted suffixes, regular expressions, "all-linear", and clear errors."""

from __future__ import annotations

import pytest

import minilora as ml
from minilora.nn import GPT, GPTConfig, GPTForSequenceClassification
from minilora.peft import LoraConfig, get_peft_model, match_targets

CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def tiny(cls=GPT, **kw):
    ml.manual_seed(0)
    return cls(CFG, **kw)


def test_exact_and_suffix():
    m = tiny()
    assert match_targets(m, ["transformer.h.1.mlp.c_fc"]) == ["transformer.h.1.mlp.c_fc"]
    assert match_targets(m, ("c_proj",)) == [
        "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_proj",
        "transformer.h.1.attn.c_proj", "transformer.h.1.mlp.c_proj",
    ]  # fmt: skip
    assert match_targets(m, ("attn.c_proj",)) == ["transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_proj"]


def test_suffix_matches_whole_components_only():
    with pytest.raises(ValueError, match=r"\['proj'\] match no module") as err:
        match_targets(tiny(), ("proj",))
    assert "transformer.h.0.attn.c_attn" in str(err.value)  # the message lists the model's modules


def test_regex_is_a_full_match():
    m = tiny()
    want = ["transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_proj"]
    assert match_targets(m, r".*\.0\.(attn|mlp)\.c_proj") == want
    with pytest.raises(ValueError, match="regular expression 'c_attn' .* matches no module; the model's modules are"):
        match_targets(m, "c_attn")  # a str is a regex matched against the whole path
    with pytest.raises(ValueError, match="not a valid regular expression"):
        match_targets(m, "c_attn(")


def test_all_linear_excludes_the_heads():
    names = match_targets(tiny(), "all-linear")
    assert len(names) == 8 and "lm_head" not in names
    cls_names = match_targets(tiny(GPTForSequenceClassification, num_classes=2), "all-linear")
    assert len(cls_names) == 8 and "score" not in cls_names


def test_only_linear_layers_for_lora():
    with pytest.raises(TypeError, match=r"LoRA can only wrap Linear .* transformer.h.0.attn \(CausalSelfAttention\)"):
        get_peft_model(tiny(), LoraConfig(target_modules=("attn",)))


def test_no_match_error_from_get_peft_model_lists_modules():
    with pytest.raises(ValueError, match=r"\['q_proj'\] match no module.*transformer.h.1.mlp.c_fc"):
        get_peft_model(tiny(), LoraConfig(target_modules=("q_proj",)))


def test_wrapped_layers_are_targets_but_their_insides_are_not():
    peft = get_peft_model(tiny(), LoraConfig(target_modules=("c_attn",)))
    assert match_targets(peft.base_model, ("c_attn",)) == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    assert not any("base_layer" in n for n in match_targets(peft.base_model, "all-linear"))
