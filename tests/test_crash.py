"""Saves killed with SIGKILL (minilora.testing.crash): the previous or the new save loads, value for value, never a
mixture and never nothing, and no temporary file outlives the next save. A few trials per kind here;
benchmarks/crash_trials.py runs 20 per kind."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("safetensors")
if not hasattr(os, "fork"):
    pytest.skip("the crash trials fork (POSIX only)", allow_module_level=True)

from minilora.testing.crash import POINTS, run_trial  # noqa: E402

DIGESTS: dict = {}
TRIALS = [(kind, point) for kind, points in POINTS.items() for point in (points[0], points[-1])]
TRIALS = list(dict.fromkeys(TRIALS)) + [(kind, None) for kind in POINTS]


@pytest.mark.parametrize("kind, point", TRIALS, ids=[f"{k}-{p or 'random'}" for k, p in TRIALS])
def test_a_killed_save_leaves_a_complete_set(kind, point, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"crash-{kind}")
    delay = (0.002 + 0.004 * (len(kind) % 5)) if point is None else 0.0  # varied, repeatable moments
    trial = run_trial(kind, work, point=point, delay=delay, digests=DIGESTS)
    assert trial.ok, trial
    if point == "folder-between-renames":
        assert trial.outcome == "new"  # the complete new set is found beside the missing target
    elif point is not None:
        assert trial.outcome == "old"
