"""LoRA's parameter arithmetic, exactly."""

from __future__ import annotations

import pytest

from minilora import nn
from minilora.analysis.params import describe, layer_table, lora_counts, table_lines


def test_the_seed_example():
    c = lora_counts(4096, 4096, 8)
    assert (c.full, c.lora, c.compression) == (16_777_216, 65_536, 256.0)
    text = describe(c)
    assert "16,777,216" in text and "65,536" in text and "256x" in text


def test_rectangular_layer():
    c = lora_counts(384, 128, 8)
    assert (c.full, c.lora) == (49_152, 4_096) and c.compression == 12.0


@pytest.mark.parametrize("d, k, r", [(0, 4, 1), (4, 4, 0), (4, 4, 5), (4.0, 4, 1)])
def test_bad_shapes_are_refused(d, k, r):
    with pytest.raises(ValueError, match="lora_counts"):
        lora_counts(d, k, r)


def test_layer_table_of_a_model():
    model = nn.GPT(nn.GPTConfig(11, 8, 2, 2, 8))
    rows = layer_table(model, "all-linear", 2)
    assert {(c.name, c.d, c.k, c.count) for c in rows} == {
        ("attn.c_attn", 24, 8, 2), ("attn.c_proj", 8, 8, 2), ("mlp.c_fc", 32, 8, 2), ("mlp.c_proj", 8, 32, 2)}
    lines = table_lines(rows, model.num_parameters())
    total = sum(c.lora * c.count for c in rows)
    assert f"{total:,}" in lines[-2] and "LoRA trains" in lines[-1]
