"""``minilora params``: LoRA's parameter arithmetic for one layer shape and rank, and for the demo's model.

    minilora params --d 4096 --k 4096 --r 8     full 16,777,216 against LoRA 65,536: 256x
    minilora params                             that example, then the demo's model layer by layer
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help="LoRA's parameter arithmetic: full d*k against r*(d+k), per layer and in total",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--d", type=int, default=None, help="output dimension of the weight (rows; default 4096)")
    p.add_argument("--k", type=int, default=None, help="input dimension of the weight (columns; default d)")
    p.add_argument("--r", type=int, default=8, help="LoRA rank (default 8)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from minilora.analysis.params import describe, layer_table, lora_counts, table_lines  # noqa: PLC0415
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.data import CharTokenizer  # noqa: PLC0415
    from minilora.demo import DemoConfig  # noqa: PLC0415
    from minilora.models import get_family  # noqa: PLC0415
    from minilora.nn import skip_init  # noqa: PLC0415

    d = 4096 if args.d is None else args.d
    k = d if args.k is None else args.k
    try:
        print(describe(lora_counts(d, k, args.r)))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.d is not None or args.k is not None:
        return 0
    cfg = DemoConfig(cache_dir=None)
    family = get_family(cfg.family)
    with skip_init():  # only the shapes are counted
        model = family.build(family.sized_config(CharTokenizer.default().vocab_size, cfg.n_layer, cfg.n_head,
                                                 cfg.n_embd, cfg.block_size))
    targets = family.lora_targets
    print(f"\nthe demo's model ({type(model).__name__} n_layer={cfg.n_layer}, n_embd={cfg.n_embd}, "
          f"{model.num_parameters():,} parameters), LoRA r={args.r} on {', '.join(targets)} as in 'minilora demo':")
    print("\n".join(table_lines(layer_table(model, targets, args.r), model.num_parameters())))
    print(f"\nthe same model with LoRA on every Linear (target_modules='all-linear'), r={args.r}:")
    print("\n".join(table_lines(layer_table(model, "all-linear", args.r), model.num_parameters())))
    return 0
