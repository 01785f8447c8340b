"""Learning rate, initialisation and length of prefix and prompt tuning on the demo's task (docs/methods/prompt.md,
prefix.md).

    python benchmarks/demo_sweep.py                        # every variant below, one line of JSON each
    python benchmarks/demo_sweep.py prompt_labels          # only the variants whose name contains an argument
    python benchmarks/demo_sweep.py --seeds 1,2,3 prompt18_lr0.3     # fine-tuning seeds (default: the demo's)
    python benchmarks/demo_sweep.py --steps 1000 prompt18_lr0.3      # a longer budget (evaluated every 50 steps)

Each variant is the demo (same cached base, task, budget) with one method configured as listed; it prints the
accuracy and validation loss at every evaluation. A variant with P virtual tokens fine-tunes on a window of
block_size - P tokens. About 1-3 minutes per variant and seed on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from minilora.demo import methods as demo_methods
from minilora.demo.config import DemoConfig
from minilora.demo.pretrain import pretrained_base
from minilora.demo.run import domain_data, finetune
from minilora.peft import PrefixTuningConfig, PromptTuningConfig

TEXT, LABELS = "the answer follows", "positive negative"  # a task description; the class labels


def _prompt(p: int, **kw: object):
    return lambda: PromptTuningConfig(p, **kw)


VARIANTS = [
    *[(f"prompt_text_lr{lr:g}", _prompt(10, init="text", init_text=TEXT), lr) for lr in (3e-3, 1e-2, 3e-2, 1e-1, 3e-1)],
    *[(f"prompt_labels_lr{lr:g}", _prompt(10, init="text", init_text=LABELS), lr) for lr in (3e-2, 3e-1)],
    # 18 positions hold both labels whole (10 held "positive n"): the demo's prompt-tuning row
    *[(f"prompt18_lr{lr:g}", _prompt(18, init="text", init_text=LABELS + " "), lr) for lr in (1e-1, 3e-1, 1.0)],
    ("prompt_random18_lr0.3", _prompt(18), 3e-1),
    ("prompt_newlines18_lr0.1", _prompt(18, init="text", init_text="positive\nnegative\n"), 1e-1),
    *[(f"prefix_lr{lr:g}", lambda: PrefixTuningConfig(10), lr) for lr in (1e-2, 3e-2, 1e-1, 3e-1)],
    *[(f"prefix_projection_lr{lr:g}", lambda: PrefixTuningConfig(10, prefix_projection=True), lr)
      for lr in (1e-3, 3e-3, 1e-2)],
]


class _Window(DemoConfig):
    """The demo's config with the window a variant's own virtual tokens leave."""

    virtual = 0

    @property
    def window(self) -> int:
        return self.block_size - self.virtual


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="run only the variants whose name contains one of these")
    p.add_argument("--seeds", default=None, help="comma-separated fine-tuning seeds (default: the demo's)")
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args(argv)
    base_cfg = DemoConfig(progress=False, steps=args.steps, eval_interval=50)
    base = pretrained_base(base_cfg, log=lambda *a: None)
    state = base.model.state_dict()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [base_cfg.ft_seed]
    for name, make, lr in VARIANTS:
        if args.names and not any(a in name for a in args.names):
            continue
        demo_methods.METHODS[name] = demo_methods.Method(name, make, lr, name)
        for seed in seeds:
            cfg = _Window(**{**dataclasses.asdict(base_cfg), "methods": (name,), "finetune_seed": seed,
                             "out_dir": f"runs/demo_sweep/{name}_{seed}"})
            cfg.virtual = getattr(make(), "num_virtual_tokens", 0)
            t0 = time.perf_counter()
            r = finetune(name, cfg, base, state, domain_data(cfg, base.tokenizer))
            print(json.dumps({"name": name, "seed": seed, "lr": lr, "steps": r.val_steps, "accuracy": r.val_accuracy,
                              "val_loss": r.val_loss, "seconds": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main()
