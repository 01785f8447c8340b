"""``mpiexec -n 2 python -m minilora.cli pretrain/finetune ...``: the unchanged commands run as two ranks."""

from __future__ import annotations

import os


def _done_line(stdout: str) -> str:
    done = [line for line in stdout.splitlines() if line.startswith("done:")]
    assert len(done) == 1, stdout  # rank 0 alone prints
    return done[0]


def test_pretrain_and_finetune_under_mpiexec_run_two_ranks_and_rank_0_alone_prints_and_saves(mpirun, tmp_path):
    base = tmp_path / "base"
    proc = mpirun(["-m", "minilora.cli", "pretrain", "--max-steps", "2", "--n-layer", "1", "--n-embd", "16",
                   "--block-size", "16", "--corpus-size", "200", "--batch-size", "3", "--eval-interval", "0",
                   "--no-progress", "--out-dir", str(base)], timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "world 2 ranks x batch 3 = global batch 6" in _done_line(proc.stdout)
    assert {"ckpt.npz", "metrics.jsonl", "config.json", "vocab.json"} <= set(os.listdir(base))
    out = tmp_path / "lora"
    proc = mpirun(["-m", "minilora.cli", "finetune", "--method", "lora", "--base", str(base / "ckpt.npz"),
                   "--data", "arithmetic", "--corpus-size", "200", "--steps", "3", "--batch-size", "2",
                   "--eval-interval", "0", "--no-progress", "--out", str(out)], timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "world 2 ranks x batch 2 = global batch 4" in _done_line(proc.stdout)
    assert sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.npz"]
