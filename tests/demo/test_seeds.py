"""``minilora demo --seeds N``: N fine-tuning runs from one base, and their mean and spread."""

from __future__ import annotations

import json
import math
import os
import statistics

import pytest

from minilora.demo import DemoConfig
from minilora.demo.seeds import run_seeds, spread


def test_spread():
    assert spread([1.0, 3.0]) == {"mean": 2.0, "std": statistics.stdev([1.0, 3.0]), "min": 1.0, "max": 3.0}
    assert spread([5.0])["std"] == 0.0 and math.isnan(spread([math.nan])["mean"])


def test_two_seeds_share_the_base_and_are_summarised(tmp_path):
    cfg = DemoConfig.quick(out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), methods=("lora", "ia3"),
                           seed=3)
    res = run_seeds(cfg, 2, log=lambda *a: None)
    assert res.seeds == [3, 4] and [r.config.ft_seed for r in res.runs] == [3, 4]
    assert res.runs[0].pretrain_val_loss == res.runs[1].pretrain_val_loss  # one base, pre-trained once
    assert res.runs[1].pretrain_cached
    a, b = (run.results[0] for run in res.runs)
    assert a.val_loss_after != b.val_loss_after  # another adapter init and batch order
    saved = json.load(open(res.files["results.json"], encoding="utf-8"))
    lora = saved["methods"][0]
    assert lora["method"] == "lora"
    assert lora["val_loss_after"]["mean"] == pytest.approx((a.val_loss_after + b.val_loss_after) / 2)
    md = open(res.files["results.md"], encoding="utf-8").read()
    assert "| lora |" in md and "± " in md and "Fine-tuning seeds: 3, 4" in md
    assert os.path.isfile(os.path.join(cfg.out_dir, "seed-4", "results.md"))
    with pytest.raises(ValueError, match="--seeds must be a positive integer"):
        run_seeds(cfg, 0)


def test_finished_seeds_are_read_back_not_rerun(tmp_path):
    cfg = DemoConfig.quick(out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), methods=("ia3",))
    first = run_seeds(cfg, 2, log=lambda *a: None)
    lines: list[str] = []
    again = run_seeds(cfg, 2, log=lines.append)
    assert sum("finished earlier" in line for line in lines) == 2
    assert [r.results[0].val_loss_after for r in again.runs] == [r.results[0].val_loss_after for r in first.runs]
