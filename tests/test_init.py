"""The top-level package: subpackages load lazily on first use; importing minilora loads no optional extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

import minilora as ml


def test_subpackages_are_reachable_without_importing_them():
    assert ml.optim.AdamW.__name__ == "AdamW"
    assert ml.peft.LoraConfig and ml.data.CharTokenizer and ml.train.Trainer and ml.hf.GPT2Tokenizer
    assert "optim" in dir(ml)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = ml.nonsense


def test_import_is_lean():
    code = ("import sys, minilora; bad = [m for m in ('minilora.peft', 'minilora.train', 'minilora.hf', 'cupy', "
            "'matplotlib', 'safetensors', 'tokenizers') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]"
