"""GradScaler: PyTorch's documented rule (x0.5 and skip on inf/NaN, x2 after growth_interval clean steps)."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora.optim import GradScaler, LossScaleError


def test_scale_sequence_on_a_scripted_pattern():
    s = GradScaler(init_scale=2.0**16, growth_interval=3)
    pattern = "ccc" "i" "cc" "i" "ccc" "ccc" "ii" "c"  # c: clean step, i: inf/NaN found
    seen = []
    for step in pattern:
        s.update(found_inf=step == "i")
        seen.append(s.get_scale())
    # by hand: 3 clean -> x2; an overflow halves and restarts the count; 2 clean are not enough to grow
    expected = [2**16, 2**16, 2**17, 2**16, 2**16, 2**16, 2**15, 2**15, 2**15, 2**16, 2**16, 2**16, 2**17,
                2**16, 2**15, 2**15]
    assert seen == [float(e) for e in expected]


def test_pytorch_defaults_grow_after_2000_clean_steps():
    s = GradScaler()
    assert s.get_scale() == 65536.0
    for _ in range(1999):
        s.update(False)
    assert s.get_scale() == 65536.0
    s.update(False)
    assert s.get_scale() == 131072.0


def test_scale_and_unscale_are_exact_and_disabled_is_a_no_op():
    s = GradScaler(init_scale=1024.0)
    loss = ml.tensor(3.0, requires_grad=True)
    assert s.scale(loss).item() == 3072.0
    p = ml.nn.Parameter(np.zeros(2, np.float32))
    p.grad = np.array([1024.0, 3.0 * 1024], np.float32)
    s.unscale_([p])
    assert p.grad.tolist() == [1.0, 3.0] and p.grad.dtype == np.float32
    off = GradScaler(enabled=False)
    assert off.get_scale() == 1.0 and off.scale(loss) is loss
    off.update(True)
    assert off.get_scale() == 1.0


def test_found_inf_from_the_host_norm():
    assert GradScaler.found_inf(float("inf")) and GradScaler.found_inf(float("nan"))
    assert not GradScaler.found_inf(3.0)


def test_collapse_below_one_is_a_one_line_error():
    s = GradScaler(init_scale=2.0)
    s.update(True)
    assert s.get_scale() == 1.0
    with pytest.raises(LossScaleError, match=r"^fp16 loss scale fell to 0.5 \(< 1\).*--precision bf16") as e:
        s.update(True)
    assert "\n" not in str(e.value)


def test_state_dict_round_trip_and_validation():
    s = GradScaler(init_scale=8.0, growth_interval=5)
    s.update(False)
    s.update(False)
    t = GradScaler()
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict() == {"scale": 8.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                                "growth_interval": 5, "_growth_tracker": 2}
    with pytest.raises(ValueError, match="scale must be positive"):
        t.load_state_dict({**s.state_dict(), "scale": float("inf")})
    assert t.get_scale() == 8.0  # unchanged by the refused load
    with pytest.raises(ValueError, match="growth_factor > 1"):
        GradScaler(growth_factor=1.0)
