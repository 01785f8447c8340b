"""LoRA+: PEFT's four parameter groups, B at ratio x lr through the Trainer's schedule, bad ratios refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import minilora as ml
from minilora.nn import GPT, GPTConfig
from minilora.optim import AdamW
from minilora.peft import LoraConfig, create_loraplus_optimizer, get_peft_model
from minilora.peft.fingerprint import plain_name
from minilora.peft.loraplus import loraplus_param_groups
from minilora.train import TrainConfig, make_optimizer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def tiny():
    ml.manual_seed(0)
    return GPT(CFG)


@pytest.mark.parametrize("fixture", ["loraplus_groups.json", "loraplus_groups_dora_bias.json"])
def test_groups_are_peft_s(fixture):
    want = json.loads((FIXTURES / fixture).read_text())
    cfg = {**want["config"], "target_modules": tuple(want["config"]["target_modules"])}
    peft = get_peft_model(tiny(), LoraConfig(**cfg))
    got = [{"lr": g["lr"], "weight_decay": g["weight_decay"], "names": sorted(plain_name(n) for n in g["names"])}
           for g in loraplus_param_groups(peft, 1e-3, 16, 0.01)]
    assert got == want["groups"]
    opt = create_loraplus_optimizer(peft, AdamW, lr=1e-3, loraplus_lr_ratio=16, loraplus_weight_decay=0.01)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in want["groups"]]


def test_the_trainer_keeps_the_ratio_through_the_schedule():
    peft = get_peft_model(tiny(), LoraConfig(r=2, loraplus_lr_ratio=8.0))
    opt = make_optimizer(peft, TrainConfig(lr=1e-2, weight_decay=0.0))
    lrs = {n: g["lr"] for g in opt.param_groups for n in g["names"]}
    assert lrs["transformer.h.0.attn.c_attn.lora_A"] == 1e-2 and lrs["transformer.h.0.attn.c_attn.lora_B"] == 8e-2
    plain = make_optimizer(get_peft_model(tiny(), LoraConfig(r=2)), TrainConfig(lr=1e-2))
    assert {g["lr"] for g in plain.param_groups} == {1e-2}
    x = np.array([[1, 2, 3, 4]])
    _, loss = peft(x, x)
    loss.backward()
    b = peft.get_submodule("transformer.h.0.attn.c_attn").lora_B
    opt.step()
    assert np.abs(b.numpy()).max() == pytest.approx(8e-2, rel=1e-3)  # Adam's first step moves by lr: B's is 8x


@pytest.mark.parametrize("ratio", [0, -1.0, float("inf"), float("nan")])
def test_a_ratio_that_is_not_positive_and_finite_is_refused(ratio):
    with pytest.raises((TypeError, ValueError), match=r"LoraConfig.loraplus_lr_ratio must be a (positive )?finite"):
        LoraConfig(loraplus_lr_ratio=ratio)
    with pytest.raises(ValueError, match=r"loraplus_lr_ratio must be a positive finite number"):
        loraplus_param_groups(get_peft_model(tiny(), LoraConfig(r=2)), 1e-3, ratio)


def test_finetune_option(capsys):
    from minilora.cli import build_parser
    from minilora.cli.finetune_cmd import build_config

    args = build_parser().parse_args(["finetune", "--method", "lora", "--loraplus-ratio", "4", "--base", "b",
                                      "--data", "d"])
    assert build_config(args).loraplus_lr_ratio == 4.0
    args = build_parser().parse_args(["finetune", "--method", "loraplus", "--base", "b", "--data", "d"])
    assert build_config(args).loraplus_lr_ratio == 16.0
    from minilora.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["finetune", "--method", "lora", "--loraplus-ratio", "nan", "--base", "b", "--data", "d"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "--loraplus-ratio" in err and "finite" in err
