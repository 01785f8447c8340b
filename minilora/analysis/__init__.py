"""Analysis: LoRA's parameter arithmetic (params.py) and the low-rank structure of weight updates (lowrank.py)."""

from minilora.analysis.params import LayerCount, describe, layer_table, lora_counts, table_lines

__all__ = ["LayerCount", "describe", "layer_table", "lora_counts", "table_lines"]
