"""Learning-rate schedules: warmup, cosine to a floor, linear decay, round trip through a dict."""

from __future__ import annotations

import math

import pytest

from minilora.optim import ConstantSchedule, LinearSchedule, WarmupCosineSchedule, get_schedule, schedule_from_dict


def test_constant_with_warmup():
    s = ConstantSchedule(warmup_steps=4)
    assert [s(i) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert ConstantSchedule()(0) == 1.0


def test_warmup_cosine():
    s = WarmupCosineSchedule(max_steps=110, warmup_steps=10, min_ratio=0.1)
    assert s(0) == pytest.approx(0.1)
    assert s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s(110) == pytest.approx(0.1)
    assert s(500) == pytest.approx(0.1)
    values = [s(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_linear_decay():
    s = LinearSchedule(max_steps=10, min_ratio=0.0)
    assert s(0) == 1.0 and s(5) == pytest.approx(0.5) and s(10) == 0.0 and s(20) == 0.0


def test_get_schedule_and_round_trip():
    for name in ("constant", "cosine", "linear"):
        s = get_schedule(name, max_steps=50, warmup_steps=5)
        t = schedule_from_dict(s.to_dict())
        assert type(t) is type(s) and [t(i) for i in range(60)] == [s(i) for i in range(60)]
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        get_schedule("step", 10)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosineSchedule(max_steps=5, warmup_steps=10)
