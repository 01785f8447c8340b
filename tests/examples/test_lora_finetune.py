"""Smoke test: examples/lora_finetune.py pre-trains, fine-tunes LoRA on completions, saves, reloads and merges."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "lora_finetune.py"


def test_lora_example_runs(capsys):
    spec = importlib.util.spec_from_file_location("lora_finetune_example", SCRIPT)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--pretrain-steps", "3", "--steps", "6", "--n-embd", "16", "--block-size", "32",
                           "--batch-size", "4", "--rank", "2", "--examples", "60", "--quiet"])
    out = capsys.readouterr().out
    assert "trainable params:" in out and "adapter on disk:" in out and "merged greedy sample:" in out
    assert "exact-match accuracy" in out and "(expected 'negative')" in out
    assert result["unchanged"] and result["same"] and result["size"] > 0
    before, after = result["before"]["val_loss"], result["after"]["val_loss"]
    assert math.isfinite(before) and after < before
