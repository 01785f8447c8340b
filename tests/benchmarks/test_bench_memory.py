"""benchmarks/bench_memory.py end to end on tiny shapes: every setting gets its two rows, checkpointing saves."""

from __future__ import annotations

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_one_table_with_every_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))  # it imports its sibling smollm2_base
    spec = importlib.util.spec_from_file_location("bench_memory_under_test",
                                                  os.path.join(ROOT, "benchmarks", "bench_memory.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "SHAPES", {
        "medium": {"family": "gpt2", "vocab_size": 11, "block_size": 16, "n_layer": 3, "n_head": 2, "n_embd": 16},
        "smollm2": {"family": "llama", "vocab_size": 300, "hidden_size": 16, "intermediate_size": 24,
                    "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "max_position_embeddings": 16, "tie_word_embeddings": True},
    })
    monkeypatch.setattr(bench, "BATCH", 2)
    monkeypatch.setattr(bench, "T", 16)
    js = tmp_path / "rows.json"
    rows = bench.main(["--rounds", "2", "--json", str(js), "--plot", str(tmp_path / "m.png")])
    assert len(rows) == 2 * 2 * len(bench.settings())
    assert json.loads(js.read_text()) == rows
    printed = capsys.readouterr().out
    for r in rows:
        assert r["ms_per_step"] > 0 and r["step_peak"] > 0 and r["peak"] > r["step_peak"]
        assert f"| {r['shape']} | {r['method']} | {r['base']} |" in printed
    by = {(r["shape"], r["method"], r["base"], r["checkpointing"]): r for r in rows}
    for shape in ("medium", "smollm2"):
        lora, ckpt = by[(shape, "lora", "float32", False)], by[(shape, "lora", "float32", True)]
        assert ckpt["step_peak"] < lora["step_peak"]
        bf16 = by[(shape, "lora", "bfloat16", False)]
        assert bf16["linear_weights"] * 2 == lora["linear_weights"]
        assert ckpt["time_ratio"] > 0 and ckpt["cpu_ratio"] > 0 and ckpt["rounds"] == 2 and lora["time_ratio"] is None
    assert "| medium | full | bfloat16 | | n/a:" in printed  # said, not invented
