"""``minilora demo``: the quick mode end to end, and its error paths (one line, exit 2)."""

from __future__ import annotations

import os

import pytest

from minilora import backend
from minilora.cli import main


def test_quick_demo_writes_the_table(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--quick", "--methods", "lora,prompt", "--out", str(out), "--cache-dir",
                 str(tmp_path / "cache"), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "256x" in printed and "trainable params" in printed
    md = (out / "results.md").read_text()
    assert "| lora |" in md and "| prompt |" in md and "| full |" not in md
    assert (out / "results.csv").read_text().count("\n") == 3
    assert os.path.isdir(out / "adapters" / "prompt")


def test_quick_demo_on_llama_runs_every_method(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--family", "llama", "--steps", "1", "--out", str(out), "--no-cache",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "pre-training a LlamaForCausalLM" in printed and "LoRA r=8 on q_proj, v_proj" in printed
    md = (out / "results.md").read_text()
    assert "Base: LlamaForCausalLM n_layer=1" in md
    for method in ("full", "lora", "qlora", "dora", "ia3", "adapter", "prefix", "prompt"):
        assert f"| {method} |" in md


@pytest.mark.skipif(backend.cuda_available(), reason="a GPU is present: --device cuda is valid here")
def test_device_cuda_without_gpu_is_one_line(tmp_path, cli_error):
    msg = cli_error(["demo", "--quick", "--device", "cuda", "--out", str(tmp_path)])
    assert "--device cuda" in msg


@pytest.mark.parametrize("argv, words", [
    (["--methods", "lora,bogus"], "unknown method"),
    (["--steps", "0"], "steps must be a positive integer"),
    (["--domain", "klingon"], "invalid choice"),
    (["--family", "bert"], "unknown model family 'bert'"),
])
def test_bad_options_are_one_line(tmp_path, cli_error, argv, words):
    msg = cli_error(["demo", "--quick", "--out", str(tmp_path), *argv])
    assert words in msg
