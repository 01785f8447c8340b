"""The demo pipeline in its tiny mode: every stage runs, every method gets a row, the files appear."""

from __future__ import annotations

import csv
import json
import math
import os

import pytest

from minilora.demo import METHOD_NAMES, DemoConfig, parameter_arithmetic, run_demo
from minilora.demo.pretrain import cache_key, cache_path


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    cfg = DemoConfig.quick(out_dir=str(root / "out"), cache_dir=str(root / "cache"))
    lines: list[str] = []
    return cfg, run_demo(cfg, log=lines.append), lines


def test_every_method_has_a_row_and_files_are_written(demo):
    cfg, res, _ = demo
    assert [r.method for r in res.results] == list(METHOD_NAMES)
    for name in ("results.md", "results.csv", "results.json"):
        assert os.path.getsize(os.path.join(cfg.out_dir, name)) > 0
    with open(os.path.join(cfg.out_dir, "results.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == list(METHOD_NAMES)
    md = open(os.path.join(cfg.out_dir, "results.md"), encoding="utf-8").read()
    assert all(f"| {m} |" in md for m in METHOD_NAMES)
    saved = json.load(open(os.path.join(cfg.out_dir, "results.json"), encoding="utf-8"))
    assert len(saved["results"]) == len(METHOD_NAMES)
    for m in METHOD_NAMES:
        assert os.path.isfile(os.path.join(cfg.out_dir, "adapters", m, "adapter_config.json"))
    assert os.path.isfile(os.path.join(cfg.out_dir, "base.npz"))


def test_figures_are_consistent(demo):
    _, res, _ = demo
    rows = {r.method: r for r in res.results}
    full = rows["full"]
    assert full.trainable_params == full.total_params
    for r in res.results:
        assert 0 < r.trainable_params <= r.total_params
        assert r.adapter_bytes > 0 and r.weight_bytes > 0 and r.peak_bytes >= r.weight_bytes
        assert math.isfinite(r.val_loss_before) and math.isfinite(r.val_loss_after)
        assert 0.0 <= r.accuracy_after <= 1.0
        assert len(r.train_loss) == 2
    assert rows["lora"].trainable_params < full.trainable_params
    assert rows["qlora"].weight_bytes < rows["lora"].weight_bytes  # NF4 base
    assert rows["lora"].adapter_bytes < full.adapter_bytes
    assert res.base_val_loss == pytest.approx(rows["lora"].val_loss_before)  # LoRA starts as the base


def test_the_base_is_cached_and_reused(demo, tmp_path):
    cfg, res, _ = demo
    assert not res.pretrain_cached and os.path.isfile(cache_path(cfg))
    lines: list[str] = []
    again = DemoConfig.quick(out_dir=str(tmp_path), cache_dir=cfg.cache_dir, methods=("lora",))
    res2 = run_demo(again, log=lines.append)
    assert res2.pretrain_cached and any("reusing" in line for line in lines)
    assert res2.results[0].val_loss_before == pytest.approx(res.results[1].val_loss_before)
    assert cache_key(DemoConfig.quick(n_embd=8)) != cache_key(cfg)


def test_parameter_arithmetic_lines(demo):
    _, _, lines = demo
    text = "\n".join(lines)
    assert "16,777,216" in text and "65,536" in text and "256x" in text
    assert "attn.c_attn" in text


def test_arithmetic_for_the_default_model():
    from minilora import nn

    model = nn.GPT(nn.GPTConfig(96, 64, 4, 4, 128))
    text = "\n".join(parameter_arithmetic(model))
    # c_attn is (384, 128): full 49,152, LoRA 8 * (384 + 128) = 4,096 per layer, 4 layers
    assert "196,608" in text and "16,384" in text and "12x" in text


def test_every_method_runs_on_each_device(device, tmp_path):
    """On the strict CuPy stand-in too: no hidden host transfer anywhere in the pipeline."""
    cfg = DemoConfig.quick(out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), device=device)
    res = run_demo(cfg, log=lambda *args: None)
    assert [r.method for r in res.results] == list(METHOD_NAMES)
    assert all(math.isfinite(r.val_loss_after) and r.weight_bytes > 0 for r in res.results)
