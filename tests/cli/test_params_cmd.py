"""``minilora params``: the arithmetic, exactly, with thousands separators."""

from __future__ import annotations

from minilora.cli import main


def test_seed_example(capsys):
    assert main(["params", "--d", "4096", "--k", "4096", "--r", "8"]) == 0
    out = capsys.readouterr().out
    assert "16,777,216" in out and "65,536" in out and "256x" in out
    assert "demo's model" not in out  # an explicit shape prints that shape only


def test_default_prints_the_demo_model(capsys):
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "256x" in out and "demo's model" in out
    assert "attn.c_attn" in out and "mlp.c_fc" in out and "16,384" in out  # 4 x 8 * (384 + 128)


def test_rank_too_large_is_one_line(capsys):
    assert main(["params", "--d", "4", "--k", "4", "--r", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rank r=8 exceeds" in err[0]
