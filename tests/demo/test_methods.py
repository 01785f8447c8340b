"""The method registry and --methods parsing."""

from __future__ import annotations

import pytest

from minilora.demo import METHOD_NAMES, METHODS, parse_methods
from minilora.peft import PeftConfig


def test_every_method_of_the_issue_is_there():
    assert set(METHOD_NAMES) == {"full", "lora", "qlora", "adapter", "prefix", "prompt", "ia3", "dora"}
    for m in METHODS.values():
        assert isinstance(m.make_config(), PeftConfig) and m.lr > 0


def test_parse_methods():
    assert parse_methods(None) == METHOD_NAMES
    assert parse_methods("all") == METHOD_NAMES
    assert parse_methods("LoRA, full,lora") == ("lora", "full")
    with pytest.raises(ValueError, match="unknown method.*bogus"):
        parse_methods("lora,bogus")
    with pytest.raises(ValueError, match="no method"):
        parse_methods(",")
