"""``minilora demo``: pre-train a small GPT (or reuse it from the cache), fine-tune it with every method, compare.

With no arguments it takes 2-3 minutes on 2 idle CPU cores (less when the pre-trained
base is already cached) and writes runs/demo/results.md, results.csv, results.json
and loss_curves.png. See docs/demo.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from minilora.demo.config import DemoConfig
from minilora.demo.methods import METHOD_NAMES

_DEFAULTS = DemoConfig(cache_dir=None)


def add_parser(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help="fine-tune a pre-trained GPT with every method and print one comparison table",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="all", help=f"comma-separated subset of {','.join(METHOD_NAMES)} "
                   "(default all)")
    p.add_argument("--steps", type=int, default=_DEFAULTS.steps, help="fine-tuning steps per method "
                   f"(default {_DEFAULTS.steps})")
    p.add_argument("--pretrain-steps", type=int, default=_DEFAULTS.pretrain_steps,
                   help=f"pre-training steps of the base (default {_DEFAULTS.pretrain_steps})")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="fine-tuning batch size "
                   f"(default {_DEFAULTS.batch_size})")
    domains = ("sentiment", "arithmetic", "reverse", "sort", "alien")
    p.add_argument("--domain", default=_DEFAULTS.domain, choices=domains,
                   help=f"the fine-tuning corpus (default {_DEFAULTS.domain})")
    p.add_argument("--out", default=_DEFAULTS.out_dir, help=f"output folder (default {_DEFAULTS.out_dir})")
    p.add_argument("--family", default=_DEFAULTS.family, help="the base model's family: gpt2 (default), llama or "
                   "qwen2 (the same sizes; see minilora.models)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cpu (NumPy) or cuda (CuPy)")
    p.add_argument("--cache-dir", default=None, help="where the pre-trained base is cached "
                   "(default $MINILORA_CACHE or ~/.cache/minilora)")
    p.add_argument("--no-cache", action="store_true", help="always pre-train, and cache nothing")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed, help=f"seed (default {_DEFAULTS.seed})")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="fine-tune every method N times (seeds SEED .. SEED+N-1, same base) and report mean and "
                        "spread (default 1)")
    p.add_argument("--quick", action="store_true", help="a tiny model and 2 steps per method: checks the "
                   "pipeline in seconds (the numbers mean nothing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.demo import default_cache_dir, parse_methods  # noqa: PLC0415

    explicit = {
        "out_dir": args.out, "device": args.device, "family": args.family, "seed": args.seed, "domain": args.domain,
        "progress": not args.no_progress,
        "cache_dir": None if args.no_cache else (args.cache_dir or default_cache_dir()),
    }
    import os  # noqa: PLC0415

    cache = explicit["cache_dir"]
    if cache is not None and os.path.exists(cache) and not os.path.isdir(cache):
        raise CLIError(f"--cache-dir {cache} is a file, not a folder")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CLIError(f"--out {args.out} is a file, not a folder")
    try:
        explicit["methods"] = parse_methods(args.methods)
        if args.quick:  # quick sizes, unless a flag asks otherwise
            for key, flag in (("steps", "steps"), ("pretrain_steps", "pretrain_steps"), ("batch_size", "batch_size")):
                if getattr(args, flag) != getattr(_DEFAULTS, key):
                    explicit[key] = getattr(args, flag)
            return DemoConfig.quick(**explicit)
        return DemoConfig(steps=args.steps, pretrain_steps=args.pretrain_steps, batch_size=args.batch_size,
                          **explicit)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from minilora.cli.ckpt_helpers import check_device  # noqa: PLC0415
    from minilora.demo import run_demo  # noqa: PLC0415

    check_device(args.device)
    if args.seeds != 1:
        from minilora.cli import CLIError  # noqa: PLC0415
        from minilora.demo.seeds import run_seeds  # noqa: PLC0415

        try:
            run_seeds(config_from_args(args), args.seeds)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        return 0
    run_demo(config_from_args(args))
    return 0
