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


@pytest.mark.skipif(backend.cuda_available(), reason="a GPU is present: --device cuda is valid here")
def test_device_cuda_without_gpu_is_one_line(tmp_path, cli_error):
    msg = cli_error(["demo", "--quick", "--device", "cuda", "--out", str(tmp_path)])
    assert "--device cuda" in msg


@pytest.mark.parametrize("argv, words", [
    (["--methods", "lora,bogus"], "unknown method"),
    (["--steps", "0"], "steps must be a positive integer"),
    (["--domain", "klingon"], "invalid choice"),
])
def test_bad_options_are_one_line(tmp_path, cli_error, argv, words):
    msg = cli_error(["demo", "--quick", "--out", str(tmp_path), *argv])
    assert words in msg
