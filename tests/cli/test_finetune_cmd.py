"""``minilora finetune`` and ``generate --adapter``: every method end to end on a tiny checkpoint, and the errors."""

from __future__ import annotations

import json

import pytest

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


def _run(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return exc.code


def _one_line_error(capsys, code):
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minilora"), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


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


def test_errors_are_one_line(base, tmp_path, capsys):
    code = _run(["finetune", "--method", "lora", "--base", str(tmp_path / "nope.npz"), *FT])
    assert "nope.npz" in _one_line_error(capsys, code)
    code = _run(["finetune", "--method", "lora", "--base", base, *FT[2:], "--data", "klingon"])
    assert "unknown corpus 'klingon'" in _one_line_error(capsys, code)
    code = _run(["finetune", "--method", "lora", "--base", base, *FT, "--targets", "q_proj"])
    assert "['q_proj'] match no module" in _one_line_error(capsys, code)
    code = _run(["finetune", "--method", "lora", "--base", base, *FT, "--rank", "0"])
    assert "LoraConfig.r must be a positive integer" in _one_line_error(capsys, code)
    code = _run(["finetune", "--method", "bitfit", "--base", base, *FT])
    _one_line_error(capsys, code)
    code = _run(["generate", "--checkpoint", base, "--adapter", str(tmp_path / "none")])
    assert "--adapter: No such adapter file" in _one_line_error(capsys, code)


def test_adapter_on_another_base_is_refused(base, tmp_path, capsys):
    other = tmp_path / "other"
    assert main(["pretrain", *TINY, "--seed", "7", "--out-dir", str(other)]) == 0
    out = tmp_path / "a"
    assert main(["finetune", "--method", "lora", "--base", base, *FT, "--out", str(out)]) == 0
    capsys.readouterr()
    code = _run(["generate", "--checkpoint", str(other / "ckpt.npz"), "--adapter", str(out)])
    assert "trained on another base model" in _one_line_error(capsys, code)
