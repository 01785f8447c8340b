"""Smoke test: examples/train_toy_gpt.py trains, lowers the validation loss, checkpoints and samples."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train_toy_gpt.py"


def test_train_toy_gpt_example_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_toy_gpt_example", SCRIPT)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--steps", "12", "--n-layer", "1", "--n-embd", "16", "--block-size", "16",
                           "--batch-size", "4", "--out-dir", str(tmp_path), "--quiet"])  # fmt: skip
    out = capsys.readouterr().out
    history = result["history"]
    assert "validation loss" in out and "sample: The " in out
    assert history.val_loss[-1] < history.val_loss[0]
    assert (tmp_path / "ckpt.npz").exists() and result["sample"].startswith("The ")
