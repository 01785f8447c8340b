"""PEFT's names on PeftModel (from_pretrained, save_pretrained, merge_adapter, ...), task_type, eval mode on load."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.nn import GPT, GPTConfig
from minilora.peft import LoraConfig, PeftModel, TaskType, get_peft_model, load_adapter, quantize_model

CFG = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, n_embd=8)
IDX = np.array([[1, 2, 3, 4]])


def base(seed=0):
    ml.manual_seed(seed)
    return GPT(CFG)


def logits(model):
    with ml.no_grad():
        return model(IDX)[0].numpy()


def trained_lora(task_type=None):
    peft = get_peft_model(base(), LoraConfig(r=2, lora_dropout=0.5, task_type=task_type))
    for _, p in peft.named_parameters():
        if p.requires_grad:
            p.data = p.data + 0.3
    return peft


def test_save_pretrained_then_from_pretrained_round_trips_in_eval_mode(tmp_path):
    peft = trained_lora(task_type="CAUSAL_LM")
    peft.eval()
    want = logits(peft)
    peft.save_pretrained(str(tmp_path / "a"))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["adapter_config.json", "adapter_model.npz"]
    loaded = PeftModel.from_pretrained(base(), str(tmp_path / "a"))
    assert isinstance(loaded, PeftModel) and not loaded.training  # dropout 0.5 would move the logits
    assert loaded.peft_config["default"].task_type == "CAUSAL_LM"
    np.testing.assert_allclose(logits(loaded), want, atol=1e-6)
    assert not load_adapter(base(), str(tmp_path / "a")).training
    assert load_adapter(base(), str(tmp_path / "a"), is_trainable=True).training


def test_merge_unmerge_adapter_and_get_base_model():
    peft = trained_lora()
    peft.eval()
    want = logits(peft)
    w0 = peft.get_base_model().transformer.h[0].attn.c_attn.base_layer.weight.numpy()
    peft.merge_adapter()
    np.testing.assert_allclose(logits(peft), want, atol=1e-5)
    assert not np.allclose(peft.get_base_model().transformer.h[0].attn.c_attn.base_layer.weight.numpy(), w0)
    peft.unmerge_adapter()
    np.testing.assert_allclose(peft.get_base_model().transformer.h[0].attn.c_attn.base_layer.weight.numpy(), w0,
                               atol=1e-6)
    assert peft.get_base_model() is peft.base_model


def test_task_type_accepted_recorded_and_checked():
    assert LoraConfig(task_type=TaskType.CAUSAL_LM).to_dict()["task_type"] == "CAUSAL_LM"
    assert LoraConfig().task_type is None
    with pytest.raises(ValueError, match="task_type must be one of"):
        LoraConfig(task_type="SEQ_2_SEQ_LM")


def test_quantize_model_is_exported():
    m = quantize_model(base(), ("c_attn",))
    assert type(m.transformer.h[0].attn.c_attn).__name__ == "Linear4bit"
