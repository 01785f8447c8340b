"""Data-parallel training (minilora/train/data_parallel.py): 2 ranks under mpiexec against one process.

The workers are tests/train/dp_worker.py; each mpiexec run has a timeout (conftest's ``mpirun``), generous
(CI is 2 loaded cores) since its point is that a hang fails the test, not how fast the ranks run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time

import numpy as np
import pytest

from minilora.train import load_checkpoint

WORKER = os.path.join(os.path.dirname(__file__), "dp_worker.py")
_spec = importlib.util.spec_from_file_location("dp_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert sorted(a) == sorted(b)
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, mpirun):
    """One mpiexec run of the 'train' scenario (full and LoRA, uninterrupted and resumed), shared by the tests."""
    out = str(tmp_path_factory.mktemp("dp"))
    proc = mpirun([WORKER, "train", out], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    writes = {}
    for r in (0, 1):  # each rank's list of the files it wrote (files, not stdout, whose lines may interleave)
        with open(os.path.join(out, f"writes-rank{r}.json"), encoding="utf-8") as f:
            writes[r] = json.load(f)
    return out, writes


@pytest.mark.parametrize("method", ["full", "lora"])
def test_two_ranks_train_the_model_one_process_trains_with_the_doubled_batch(two_ranks, method):
    out, _ = two_ranks
    reference = worker.build(method, 2 * worker.B, None)  # a world of one, batch 2b
    initial = worker.params(reference)
    reference.fit()
    ranks = load_checkpoint(os.path.join(out, method, "ckpt.npz")).weights
    assert _max_diff(worker.params(reference), ranks) < 1e-6
    assert _max_diff(initial, ranks) > 1e-3  # it trained: the comparison could fail
    with open(os.path.join(out, method, "metrics.jsonl"), encoding="utf-8") as f:
        records = [r for r in map(json.loads, f) if "loss" in r]  # the training records (not the final validation)
    assert [r["step"] for r in records] == list(range(1, worker.STEPS + 1))  # one writer, no doubled lines
    assert all(r["grad_norm"] > 0.01 for r in records)  # clipping (grad_clip 0.01) acted at every step
    assert [r["loss"] for r in records] == pytest.approx(reference.history.train_loss, abs=1e-9)  # the global loss


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_resumed_two_rank_run_equals_an_uninterrupted_one(two_ranks, method):
    out, _ = two_ranks
    uninterrupted = load_checkpoint(os.path.join(out, method, "ckpt.npz"))
    resumed = load_checkpoint(os.path.join(out, method + "-resumed", "ckpt.npz"))
    assert resumed.step == uninterrupted.step == worker.STEPS
    assert _max_diff(uninterrupted.weights, resumed.weights) == 0.0
    assert resumed.meta["extra"]["data_parallel"]["world_size"] == 2
    assert resumed.meta["sampler"] == uninterrupted.meta["sampler"]  # the data position


def test_only_rank_0_writes_files(two_ranks):
    out, writes = two_ranks
    assert writes[1] == []
    assert any(p.endswith("ckpt.npz") for p in writes[0])  # (the spy saw rank 0's writes: it could fail)
    for run in ("full", "lora", "full-resumed", "lora-resumed"):
        assert os.path.join(out, run, "metrics.jsonl") in writes[0]


def test_a_rank_that_raises_aborts_the_world_with_one_line(mpirun, tmp_path):
    t0 = time.monotonic()
    proc = mpirun([WORKER, "raise", str(tmp_path)], timeout=120)
    assert proc.returncode != 0 and time.monotonic() - t0 < 120  # bounded: no hang (generous: CI may be slow)
    assert "minilora.distributed: rank 1 of 2 raised RuntimeError: injected fault; aborting all 2 ranks" in proc.stderr


def test_a_killed_rank_ends_the_others(mpirun, tmp_path):
    t0 = time.monotonic()
    proc = mpirun([WORKER, "kill", str(tmp_path)], timeout=120)
    assert proc.returncode != 0 and time.monotonic() - t0 < 120  # bounded: no hang (generous: CI may be slow)


@pytest.mark.parametrize(("scenario", "part"), [("fingerprint", "base weights"), ("config", "train config")])
def test_a_rank_with_another_model_or_config_is_refused_before_any_broadcast(mpirun, tmp_path, scenario, part):
    proc = mpirun([WORKER, scenario, str(tmp_path)], timeout=120)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("minilora")]  # (Open MPI adds its own)
    assert "Traceback" not in proc.stderr
    assert ours == [f"minilora.distributed: error: data parallel: rank 1 differs from rank 0 in its {part}: start "
                     "every rank with the same checkpoint, data and options (refused before any broadcast)"]


def test_bad_input_is_one_line_each(mpirun, tmp_path):
    proc = mpirun([WORKER, "errors", str(tmp_path)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: the ranks use different devices (rank 0 cpu, rank 1 cuda): give every rank the same --device",
        "error: data parallel: the global batch of 5 does not split into 2 equal slices: use a multiple of 2 "
        "(or --batch-size, which is per rank)",
        "error: data parallel: 2 ranks but 1 example per step (global batch 1): start at most 1 ranks or use a "
        "larger batch",
    ]


def test_resume_refuses_a_checkpoint_of_another_world(two_ranks):
    out, _ = two_ranks
    trainer = worker.build("full", 2 * worker.B, None)
    before = worker.params(trainer)
    with pytest.raises(ValueError, match=r"written by a world of 2 rank\(s\).*resume with mpiexec -n 2"):
        trainer.resume(os.path.join(out, "full", "ckpt.npz"))
    assert _max_diff(before, worker.params(trainer)) == 0.0  # refused before anything was restored
