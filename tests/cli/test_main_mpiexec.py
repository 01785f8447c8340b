"""``mpiexec -n 2 python -m minilora.cli finetune ...``: the unchanged command runs as two ranks."""

from __future__ import annotations

import os

from minilora.cli import main


def test_finetune_under_mpiexec_runs_two_ranks_and_rank_0_alone_prints_and_saves(mpirun, tmp_path):
    base = tmp_path / "base"
    assert main(["pretrain", "--max-steps", "2", "--n-layer", "1", "--n-embd", "16", "--block-size", "16",
                 "--corpus-size", "200", "--eval-interval", "0", "--no-progress", "--out-dir", str(base)]) == 0
    out = tmp_path / "lora"
    proc = mpirun(["-m", "minilora.cli", "finetune", "--method", "lora", "--base", str(base / "ckpt.npz"),
                   "--data", "arithmetic", "--corpus-size", "200", "--steps", "3", "--batch-size", "2",
                   "--eval-interval", "0", "--no-progress", "--out", str(out)], timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = [line for line in proc.stdout.splitlines() if line.startswith("done:")]
    assert len(done) == 1 and "world 2 ranks x batch 2 = global batch 4" in done[0], proc.stdout
    assert sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.npz"]
