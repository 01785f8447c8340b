"""Kill saves with SIGKILL, 20 trials per kind, and count the trials that left a complete set (k/20).

Each kind (trainer checkpoint file, adapter folder, PEFT-format folder, Hugging Face folder, run folder) gets
half its trials at minilora.io's crash points (cycled: between the files of a folder, before the swap, between
the two renames, before a file's rename) and half at random moments (uniform in 0-30 ms after the child starts
saving, again and again). A trial counts when the target then loads, value for value, as the previous or the
new save, and no temporary file remains after the next save (minilora.testing.crash). POSIX only.

    PYTHONPATH=$PWD python benchmarks/crash_trials.py            # 20 per kind
    PYTHONPATH=$PWD python benchmarks/crash_trials.py --trials 5
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from minilora.testing.crash import POINTS, run_trial


def main(argv: list[str] | None = None) -> dict[str, list]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per kind (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random moments (default 0)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    results: dict[str, list] = {}
    digests: dict = {}
    print("| kind | complete set after the kill | old | new | failures |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, points in POINTS.items():
            trials = []
            for i in range(args.trials):
                work = Path(tmp) / f"{kind}-{i}"
                work.mkdir()
                if i % 2 == 0:
                    trials.append(run_trial(kind, work, point=points[(i // 2) % len(points)], digests=digests))
                else:
                    trials.append(run_trial(kind, work, delay=rng.uniform(0.0, 0.03), digests=digests))
            results[kind] = trials
            ok = sum(t.ok for t in trials)
            old = sum(t.outcome == "old" for t in trials)
            new = sum(t.outcome == "new" for t in trials)
            bad = "; ".join(f"{t.moment}: {t.outcome} {t.leftovers or ''}" for t in trials if not t.ok) or "none"
            print(f"| {kind} | {ok}/{len(trials)} | {old} | {new} | {bad} |")
    return results


if __name__ == "__main__":
    main()
