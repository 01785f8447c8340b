"""``mpiexec -n 2 python -m minilora.cli pretrain/finetune ...``: the unchanged commands run as two ranks."""

from __future__ import annotations

import os

import numpy as np

import minilora
from minilora.cli import main


def _done_line(stdout: str) -> str:
    done = [line for line in stdout.splitlines() if line.startswith("done:")]
    assert len(done) == 1, stdout  # rank 0 alone prints
    return done[0]


def test_pretrain_and_finetune_under_mpiexec_run_two_ranks_and_rank_0_alone_prints_and_saves(mpirun, tmp_path):
    base = tmp_path / "base"
    proc = mpirun(["-m", "minilora.cli", "pretrain", "--max-steps", "2", "--n-layer", "1", "--n-embd", "16",
                   "--block-size", "16", "--corpus-size", "200", "--batch-size", "3", "--eval-interval", "0",
                   "--no-progress", "--out-dir", str(base)], timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "world 2 ranks x batch 3 = global batch 6" in _done_line(proc.stdout)
    assert {"ckpt.npz", "metrics.jsonl", "config.json", "vocab.json"} <= set(os.listdir(base))
    finetune = ["finetune", "--method", "lora", "--base", str(base / "ckpt.npz"), "--data", "arithmetic",
                "--corpus-size", "200", "--steps", "3", "--eval-interval", "0", "--no-progress"]
    out = tmp_path / "lora"
    proc = mpirun(["-m", "minilora.cli", *finetune, "--batch-size", "2", "--out", str(out)], timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "world 2 ranks x batch 2 = global batch 4" in _done_line(proc.stdout)
    assert sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.npz"]
    # the same model as one process with the doubled batch (float32: to rounding; measured 3e-8), the loss on
    # the answers only (a completion task: each rank's token-mean weighed by its share of the answer tokens)
    minilora.manual_seed(0)  # as in a fresh process: finetune initialises the adapter from the current state
    assert main([*finetune, "--batch-size", "4", "--out", str(tmp_path / "one")]) == 0
    with np.load(out / "adapter_model.npz") as two, np.load(tmp_path / "one" / "adapter_model.npz") as one:
        assert sorted(two.files) == sorted(one.files)
        assert max(float(np.abs(two[k] - one[k]).max()) for k in one.files) < 1e-5
        assert max(float(np.abs(one[k]).max()) for k in one.files if "lora_B" in k) > 1e-3  # B moved from 0
