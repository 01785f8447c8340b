"""analysis/run.py: which weights count as the blocks' matrices, asked of the model (every family)."""

from __future__ import annotations

import pytest

from minilora.analysis.run import block_linear_weights
from minilora.models import families


@pytest.mark.parametrize("family", list(families()))
def test_block_linear_weights_are_the_blocks_linears_of_every_family(family):
    fam = families()[family]
    model = fam.build(fam.sized_config(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=8))
    names = block_linear_weights(model)
    linears = {n for n, p in model.named_parameters() if n.endswith(".weight") and p.ndim == 2}
    embed = f"{fam.embed_path}.weight"
    assert names and names < linears and embed not in names and "lm_head.weight" not in names
    assert all(any(t in n for n in names) for t in fam.lora_targets)  # LoRA's defaults are block matrices
    assert len(names) % 2 == 0  # two layers, the same kinds in each


def test_the_picture_groups_matrices_by_kind_and_layer_in_every_family():
    from minilora.analysis.run import _kind_and_layer

    assert _kind_and_layer("transformer.h.2.attn.c_attn.weight") == ("attn.c_attn", 2)
    assert _kind_and_layer("model.layers.11.self_attn.q_proj.weight") == ("self_attn.q_proj", 11)
    assert _kind_and_layer("model.embed_tokens.weight") == ("model.embed_tokens", None)
