"""One rank of the data-parallel tests: ``mpiexec -n 2 python dp_worker.py SCENARIO OUT_DIR``.

Also imported by tests/train/test_data_parallel.py, which builds the one-process reference with
the same ``build`` (a world of one, batch 2b). Scenarios:

- ``train``: full fine-tuning and LoRA, float64, gradient accumulation and clipping on, each
  uninterrupted (OUT/<method>) and stopped after 2 steps then resumed by a fresh Trainer
  (OUT/<method>-resumed); then lists every file this rank opened for writing in
  OUT/writes-rank<r>.json (a file per rank: the ranks' stdout lines may interleave).
- ``raise`` / ``kill``: rank 1 raises / is killed (SIGKILL) in its third step.
- ``fingerprint`` / ``config``: rank 1 builds another base / uses another learning rate.
- ``errors``: the collective bad-input errors, each caught and printed by rank 0.
- ``comm``: the communicator's collectives; each rank that passed writes OUT/comm-rank<r>.txt.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import sys
from typing import Any

import numpy as np

import minilora
from minilora import distributed, nn, peft
from minilora.train import LMTask, TrainConfig, Trainer

B, STEPS, ACCUM = 3, 4, 2  # per-rank batch, optimizer steps, micro-batches per step


def build(method: str, batch_size: int, out_dir: str | None, base_seed: int = 0, lr: float = 1e-2,
          **overrides: Any) -> Trainer:
    """The run both sides train: a tiny float64 GPT on fixed random tokens."""
    tokens = np.random.default_rng(123).integers(0, 17, size=2000)
    minilora.manual_seed(base_seed)
    model = nn.GPT(nn.GPTConfig(vocab_size=17, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0)).double()
    if method == "full":  # trainable but never used: no gradient, so one process leaves it alone (no decay either)
        model.unused = nn.Parameter(np.ones((2, 2)))
    if method == "lora":
        minilora.manual_seed(distributed.rank() + 7)  # LoRA's A differs per rank until rank 0's is broadcast
        model = peft.get_peft_model(model, peft.LoraConfig(r=2, lora_alpha=4, target_modules=("c_attn",)))
    config = dict(max_steps=STEPS, batch_size=batch_size, grad_accum_steps=ACCUM, grad_clip=0.01, lr=lr,
                  warmup_steps=1, eval_interval=0, eval_at_start=False, progress=False, out_dir=out_dir, seed=5)
    task = LMTask(tokens[:1800], tokens[1800:], 8, batch_size, seed=5)
    return Trainer(model, task, TrainConfig(**{**config, **overrides}))


def params(trainer: Trainer) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in trainer.model.state_dict().items()}


def _record_writes() -> tuple[list[str], Any]:
    """Spy on open/os.replace; returns (the paths written so far, a function that stops spying)."""
    written: list[str] = []
    real_open, real_replace = builtins.open, os.replace

    def spy_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+"):
            written.append(os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    def spy_replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        written.append(os.fspath(dst))
        real_replace(src, dst, *args, **kwargs)

    def stop() -> None:
        builtins.open, os.replace = real_open, real_replace

    builtins.open, os.replace = spy_open, spy_replace
    return written, stop


def train(out: str) -> None:
    written, stop = _record_writes()
    for method in ("full", "lora"):
        build(method, B, os.path.join(out, method)).fit()
        first = build(method, B, os.path.join(out, method + "-resumed"))
        first.fit(steps=2)
        first.save()
        again = build(method, B, os.path.join(out, method + "-resumed"), base_seed=0)
        again.resume(again.checkpoint_path)
        again.fit()
    stop()  # the report itself is the test's file, not the library's
    with open(os.path.join(out, f"writes-rank{distributed.rank()}.json"), "w", encoding="utf-8") as f:
        json.dump(sorted(set(written)), f)


def fault(kind: str) -> None:
    trainer = build("full", B, None)
    task_loss = trainer.loss_fn

    def loss_fn(model: Any, batch: Any) -> Any:
        if distributed.rank() == 1 and trainer.step == 2:
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected fault")
        return task_loss(model, batch)

    trainer.loss_fn = loss_fn
    trainer.fit()


def errors() -> None:
    def expect(fn: Any) -> None:
        try:
            fn()
        except distributed.DistributedError as exc:
            distributed.report(exc, "error")
        else:
            raise AssertionError("no error")

    expect(lambda: distributed.get_communicator("cuda" if distributed.rank() == 1 else "cpu"))
    expect(lambda: build("full", B, None, global_batch_size=5))
    expect(lambda: build("full", B, None, global_batch_size=1))


def comm(out: str) -> None:
    c, r = distributed.get_communicator("cpu"), distributed.rank()
    a = np.full(3, r + 1.0)
    assert c.all_reduce(a) is a and a.tolist() == [3.0, 3.0, 3.0]
    a = np.full((2, 2), r + 1.0, dtype=np.float32)
    assert c.all_reduce(a, op="mean").tolist() == [[1.5, 1.5], [1.5, 1.5]]
    h = np.full(2, r + 1.0, dtype=np.float16)
    assert c.all_reduce(h, op="sum").tolist() == [3.0, 3.0]
    b = np.arange(4, dtype=np.int64) * (r + 1)
    assert c.broadcast(b, root=1).tolist() == [0, 2, 4, 6]
    assert c.allgather_bytes(b"x" * (r + 1)) == [b"x", b"xx"]
    distributed.barrier()
    with open(os.path.join(out, f"comm-rank{r}.txt"), "w", encoding="utf-8") as f:
        f.write(f"rank {r} of {distributed.world_size()} comm ok")


if __name__ == "__main__":
    scenario, out = sys.argv[1], sys.argv[2]
    if scenario == "train":
        train(out)
    elif scenario in ("raise", "kill"):
        fault(scenario)
    elif scenario == "fingerprint":
        build("full", B, None, base_seed=distributed.rank())
    elif scenario == "config":
        build("full", B, None, lr=1e-2 * (1 + distributed.rank()))
    elif scenario == "errors":
        errors()
    elif scenario == "comm":
        comm(out)
