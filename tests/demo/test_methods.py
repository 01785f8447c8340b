"""The demo's methods (the registry's variants) and --methods parsing."""

from __future__ import annotations

import pytest

from minilora.demo import METHOD_NAMES, METHODS, parse_methods
from minilora.peft import PeftConfig, registry


def test_the_demo_compares_every_registered_method():
    assert METHOD_NAMES == tuple(registry.variants())
    assert {"full", "lora", "qlora", "adapter", "prefix", "prompt", "ia3", "dora"} <= set(METHOD_NAMES)
    for m in METHODS.values():
        assert m.lr == registry.get_variant(m.name)[1].lr  # one learning rate, shared with minilora finetune
        assert isinstance(m.make_config(), PeftConfig) and m.lr > 0


def test_parse_methods():
    assert parse_methods(None) == METHOD_NAMES
    assert parse_methods("all") == METHOD_NAMES
    assert parse_methods("LoRA, full,lora") == ("lora", "full")
    with pytest.raises(ValueError, match="unknown method.*bogus"):
        parse_methods("lora,bogus")
    with pytest.raises(ValueError, match="no method"):
        parse_methods(",")
