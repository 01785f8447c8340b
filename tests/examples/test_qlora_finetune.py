"""Smoke test: examples/qlora_finetune.py pre-trains, quantises, fine-tunes LoRA on the 4-bit base, and reports."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "qlora_finetune.py"


def test_qlora_example_runs(capsys):
    spec = importlib.util.spec_from_file_location("qlora_finetune_example", SCRIPT)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    args = ["--pretrain-steps", "4", "--steps", "6", "--n-embd", "32", "--block-size", "16", "--batch-size", "4",
            "--quiet"]  # fmt: skip
    result = example.main(args)
    out = capsys.readouterr().out
    assert "trainable params:" in out and "NF4 layers" in out and "greedy sample:" in out
    assert result["unchanged"]  # the 4-bit base is bit-identical after training
    assert result["storage"].quantized_layers == 8 and result["storage"].ratio <= 0.14
    assert all(math.isfinite(result[k]) for k in ("before", "quantised", "after"))
    assert result["after"] < result["quantised"]  # a few LoRA steps already help on the new domain
