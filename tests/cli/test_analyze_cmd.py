"""``minilora analyze`` on the quick demo's outputs, and its error paths."""

from __future__ import annotations

import json

import pytest

from minilora.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    out = root / "demo"
    assert main(["demo", "--quick", "--methods", "full,lora", "--out", str(out), "--cache-dir", str(root / "c"),
                 "--no-progress"]) == 0
    return out


def test_analyze_reports_every_matrix(run_dir, capsys):
    assert main(["analyze", "--from", str(run_dir), "--ks", "1,2,4"]) == 0
    out = capsys.readouterr().out
    assert "In plain words:" in out and "top 4 directions hold" in out and "LoRA" in out
    saved = json.loads((run_dir / "analysis.json").read_text())
    names = {m["name"] for m in saved["matrices"]}
    assert "transformer.h.0.attn.c_attn.weight" in names and "transformer.wte.weight" in names
    c_attn = next(m for m in saved["matrices"] if m["name"] == "transformer.h.0.attn.c_attn.weight")
    assert c_attn["overlap"] is not None and all(0 <= v <= 1 + 1e-9 for v in c_attn["overlap"].values())
    assert (run_dir / "analysis.md").read_text().count("| transformer.") == len(saved["matrices"])


def test_missing_run_runs_the_quick_fine_tunes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINILORA_CACHE", str(tmp_path / "cache"))
    assert main(["analyze", "--from", str(tmp_path / "fresh"), "--quick"]) == 0
    out = capsys.readouterr().out
    assert "running the demo's full and lora fine-tunes first" in out and "In plain words:" in out


def test_bad_ks_is_one_line(tmp_path, capsys):
    try:
        code = main(["analyze", "--from", str(tmp_path), "--ks", "2,x"])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--ks" in err[0]


def test_corrupt_adapter_is_one_line(run_dir, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    (bad / "adapters" / "full" / "adapter_config.json").write_text("{not json")
    assert main(["analyze", "--from", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "adapter_config.json" in err[0]


def test_adapters_of_another_base_are_refused(run_dir, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    assert main(["demo", "--quick", "--methods", "full", "--pretrain-steps", "1", "--out", str(other),
                 "--cache-dir", str(tmp_path / "c"), "--no-progress"]) == 0
    mixed = tmp_path / "mixed"
    shutil.copytree(run_dir, mixed)
    shutil.copy(other / "base.npz", mixed / "base.npz")
    capsys.readouterr()
    assert main(["analyze", "--from", str(mixed)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another base" in err[0]
