"""``minilora finetune`` and ``generate --adapter``: every method end to end on a tiny checkpoint, and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import minilora
from minilora.cli import main

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--max-steps", "2", "--eval-interval", "0", "--eval-batches", "1", "--corpus-size", "100", "--no-progress"]
FT = ["--data", "arithmetic", "--corpus-size", "60", "--steps", "2", "--batch-size", "2", "--eval-interval", "0",
      "--no-progress"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    assert main(["pretrain", *TINY, "--out-dir", str(out)]) == 0
    return str(out / "ckpt.npz")


@pytest.mark.parametrize("method, extra", [
    ("full", []), ("lora", ["--rank", "2", "--targets", "c_attn,mlp.c_fc"]), ("qlora", ["--block-size-nf4", "16"]),
    ("dora", ["--targets", "all-linear"]), ("ia3", []), ("adapter", ["--bottleneck", "4", "--placement", "pfeiffer"]),
    ("prefix", ["--virtual-tokens", "2", "--prefix-projection"]), ("prompt", ["--virtual-tokens", "2",
                                                                             "--prompt-init-text", "1+1="]),
])  # fmt: skip
def test_every_method_then_generate_with_the_adapter(base, tmp_path, capsys, method, extra):
    out = tmp_path / method
    assert main(["finetune", "--method", method, "--base", base, *FT, *extra, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "trainable params: " in printed and "adapter " in printed and "val loss" in printed
    meta = json.loads((out / "adapter_config.json").read_text())
    assert meta["format"] == "minilora-adapter" and (out / "adapter_model.npz").is_file()
    assert main(["generate", "--checkpoint", base, "--adapter", str(out), "--prompt", "1+2=",
                 "--max-new-tokens", "5", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("1+2=")


def test_lora_options_reach_the_config(base, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["finetune", "--method", "lora", "--base", base, *FT, "--rank", "3", "--alpha", "6", "--rslora",
                 "--targets", r"re:.*\.c_proj", "--out", str(out)]) == 0
    config = json.loads((out / "adapter_config.json").read_text())["config"]
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (3, 6.0, True)
    assert config["target_modules"] == r".*\.c_proj"


def test_errors_are_one_line(base, tmp_path, cli_error):
    lora = ["finetune", "--method", "lora", "--base"]
    assert "nope.npz" in cli_error([*lora, str(tmp_path / "nope.npz"), *FT])
    assert "unknown corpus 'klingon'" in cli_error([*lora, base, *FT[2:], "--data", "klingon"])
    assert "['q_proj'] match no module" in cli_error([*lora, base, *FT, "--targets", "q_proj"])
    assert "LoraConfig.r must be a positive integer" in cli_error([*lora, base, *FT, "--rank", "0"])
    cli_error(["finetune", "--method", "bitfit", "--base", base, *FT])
    assert "--adapter: No such adapter file" in cli_error(["generate", "--checkpoint", base, "--adapter",
                                                           str(tmp_path / "none")])


def test_adapter_on_another_base_is_refused(base, tmp_path, capsys, cli_error):
    other = tmp_path / "other"
    assert main(["pretrain", *TINY, "--seed", "7", "--out-dir", str(other)]) == 0
    out = tmp_path / "a"
    assert main(["finetune", "--method", "lora", "--base", base, *FT, "--out", str(out)]) == 0
    capsys.readouterr()
    line = cli_error(["generate", "--checkpoint", str(other / "ckpt.npz"), "--adapter", str(out)])
    assert "trained on another base model" in line


def test_gradient_checkpointing_flag_trains_the_same(base, tmp_path, capsys):
    weights = []
    for flag in ([], ["--gradient-checkpointing"]):
        out = tmp_path / f"q{len(flag)}"
        minilora.manual_seed(0)  # LoRA's A is drawn before the trainer seeds
        assert main(["finetune", "--method", "qlora", "--base", base, *FT, "--dropout", "0.1", *flag,
                     "--out", str(out)]) == 0
        with np.load(out / "adapter_model.npz") as z:
            weights.append({k: z[k] for k in z.files})
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert np.array_equal(weights[0][k], weights[1][k]), k


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_precision_flag_trains(base, tmp_path, precision):
    assert main(["finetune", "--method", "lora", "--base", base, *FT, "--precision", precision,
                 "--gradient-checkpointing", "--out", str(tmp_path / precision)]) == 0
    assert (tmp_path / precision / "adapter_model.npz").is_file()


@pytest.mark.parametrize("fmt", ["minilora", "peft"])
def test_a_pissa_adapter_is_saved_for_the_original_base(base, tmp_path, capsys, cli_error, fmt):
    from minilora.cli.ckpt_helpers import load_model
    from minilora.peft import PeftConfig, get_peft_model, load_adapter

    out, raw = tmp_path / "pissa", tmp_path / "raw"
    run = ["finetune", "--method", "lora", "--init", "pissa", "--base", base, *FT, "--rank", "2"]
    assert main([*run, "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "converted to a rank-4 LoRA on the original base" in printed
    final = printed.split("val loss ")[1].split(";")[0].split(" -> ")[1]  # the trained model's
    assert main([*run, "--no-convert-to-lora", "--out", str(raw)]) == 0  # the same run, saved as trained
    assert "for the residual base" in capsys.readouterr().out
    assert main(["generate", "--checkpoint", base, "--adapter", str(out), "--prompt", "1+2=", "--max-new-tokens",
                 "3", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("1+2=")
    assert main(["eval", "--checkpoint", base, "--adapter", str(out), "--data", "arithmetic", "--corpus-size",
                 "60"]) == 0
    assert f"validation loss {final} per answer token" in capsys.readouterr().out  # the original base + adapter
    line = cli_error(["generate", "--checkpoint", base, "--adapter", str(raw)])
    assert "saved as trained, for the residual W0 - s B0 A0 of this base" in line
    # the converted adapter on the original base computes what the trained model (raw, on its residual) computed
    config = PeftConfig.from_dict(json.loads((raw / "adapter_config.json").read_text())["config"])
    residual = get_peft_model(load_model(base, "cpu")[1], config).unload()
    idx = np.array([[1, 2, 3, 4, 5, 6]])
    want = load_adapter(residual, str(raw))(idx)[0].numpy()
    np.testing.assert_allclose(load_adapter(load_model(base, "cpu")[1], str(out))(idx)[0].numpy(), want, atol=1e-5)


def test_convert_to_lora_without_a_residual_base_is_refused_before_training(base, cli_error):
    line = cli_error(["finetune", "--method", "lora", "--base", base, *FT, "--convert-to-lora"])
    assert "--convert-to-lora: the lora adapter leaves the base as it is" in line
