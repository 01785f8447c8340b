"""TrainConfig: validation and the dict round trip."""

from __future__ import annotations

import pytest

from minilora.train import TrainConfig


def test_round_trip_and_unknown_keys():
    cfg = TrainConfig(max_steps=5, lr=0.1)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_bad_values_named():
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        TrainConfig(max_steps=0)
    with pytest.raises(ValueError, match="optimizer must be"):
        TrainConfig(optimizer="lion")
    assert TrainConfig(max_steps=5, warmup_steps=50).warmup_steps == 5
