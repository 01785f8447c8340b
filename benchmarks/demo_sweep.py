"""Learning rate and initialisation of prefix and prompt tuning on the demo's task (docs/methods/prompt.md, prefix.md).

    python benchmarks/demo_sweep.py                 # every variant below, one line of JSON each
    python benchmarks/demo_sweep.py prompt_labels   # only the variants whose name contains the argument

Each variant is the demo (same cached base, task, budget, seed) with one method configured as listed;
it prints the accuracy and validation loss at every evaluation. About 1-3 minutes per variant on 2 cores.
"""

from __future__ import annotations

import json
import sys
import time

from minilora.demo import methods as demo_methods
from minilora.demo.config import DemoConfig
from minilora.demo.run import run_demo
from minilora.peft import PrefixTuningConfig, PromptTuningConfig

TEXT, LABELS = "the answer follows", "positive negative"  # a task description; the class labels
VARIANTS = [
    *[(f"prompt_text_lr{lr:g}", lambda: PromptTuningConfig(10, init="text", init_text=TEXT), lr)
      for lr in (3e-3, 1e-2, 3e-2, 1e-1, 3e-1)],
    *[(f"prompt_labels_lr{lr:g}", lambda: PromptTuningConfig(10, init="text", init_text=LABELS), lr)
      for lr in (3e-2, 3e-1)],
    *[(f"prefix_lr{lr:g}", lambda: PrefixTuningConfig(10), lr) for lr in (1e-2, 3e-2, 1e-1, 3e-1)],
    *[(f"prefix_projection_lr{lr:g}", lambda: PrefixTuningConfig(10, prefix_projection=True), lr)
      for lr in (1e-3, 3e-3, 1e-2)],
]


def main(argv: list[str]) -> None:
    for name, make, lr in VARIANTS:
        if argv and not any(a in name for a in argv):
            continue
        demo_methods.METHODS[name] = demo_methods.Method(name, make, lr, name)
        cfg = DemoConfig(methods=(name,), out_dir=f"runs/demo_sweep/{name}", progress=False)
        t0 = time.perf_counter()
        r = run_demo(cfg, log=lambda *a: None).results[0]
        print(json.dumps({"name": name, "lr": lr, "steps": r.val_steps, "accuracy": r.val_accuracy,
                          "val_loss": r.val_loss, "seconds": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
