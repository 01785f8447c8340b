"""``minilora analyze``: is the full fine-tuning update low-rank, and does LoRA find its top directions?

Reads the demo's outputs (runs/demo by default: base.npz, adapters/full, adapters/lora); when
they are missing it runs the demo's full and lora fine-tunes first. Writes analysis.md,
analysis.json and spectra.png there. See docs/analysis.md.
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_parser(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help="SVD of the full fine-tuning update: energy in the top directions, LoRA's overlap",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="run_dir", default=os.path.join("runs", "demo"),
                   help="the demo's output folder (default runs/demo)")
    p.add_argument("--out", default=None, help="where to write the analysis (default: the run folder)")
    p.add_argument("--ks", default="1,2,4,8,16", help="top-k sizes to report (default 1,2,4,8,16)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="device for the fine-tunes when they must be run first")
    p.add_argument("--quick", action="store_true", help="when fine-tunes must be run first: the demo's tiny mode")
    p.set_defaults(run=run)


def _ks(spec: str) -> tuple[int, ...]:
    from minilora.cli import CLIError  # noqa: PLC0415

    try:
        ks = tuple(sorted({int(s) for s in spec.split(",") if s.strip()}))
    except ValueError:
        raise CLIError(f"--ks: expected comma-separated positive integers, got {spec!r}") from None
    if not ks or ks[0] < 1:
        raise CLIError(f"--ks: expected comma-separated positive integers, got {spec!r}")
    return ks


def run(args: argparse.Namespace) -> int:
    from minilora.analysis.run import has_demo_outputs, run_analysis  # noqa: PLC0415
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.cli.ckpt_helpers import check_device  # noqa: PLC0415
    from minilora.demo import DemoConfig, default_cache_dir, run_demo  # noqa: PLC0415
    from minilora.peft.io import AdapterError  # noqa: PLC0415
    from minilora.train import CheckpointError  # noqa: PLC0415

    ks = _ks(args.ks)
    if not has_demo_outputs(args.run_dir):
        check_device(args.device)
        print(f"no demo outputs in {args.run_dir}: running the demo's full and lora fine-tunes first")
        make = DemoConfig.quick if args.quick else DemoConfig
        cfg = make(methods=("full", "lora"), out_dir=args.run_dir, device=args.device, cache_dir=default_cache_dir())
        run_demo(cfg)
        print()
    try:
        run_analysis(args.run_dir, args.out, ks)
    except (AdapterError, CheckpointError) as exc:
        raise CLIError(str(exc)) from None
    return 0
