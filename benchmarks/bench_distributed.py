"""Data parallel on this machine: 1 rank x 1 BLAS thread against 2 ranks x 1 thread, and the bytes a step moves.

    python benchmarks/bench_distributed.py [--shape medium] [--methods full,lora,qlora] [--steps 4] [--rounds 3]

Each configuration is its own ``mpiexec -n N`` run with one BLAS thread per rank, the configurations
alternating, ``--rounds`` times; the table shows medians. Weak scaling: each rank keeps the shape's
batch (medium: 8 x 240 tokens), so 2 ranks train twice the examples per step, and the scaling is the
whole world's tokens/s over one rank's (ideal 2.0x). On a shared machine the other processes take
cores too: the load average before and after is printed with the table, and belongs beside any figure.
"idle estimate" reads CPU time instead (which the other processes do not inflate): 2 x one rank's CPU
time per step over a rank's CPU time per step outside the gradient sync plus the all-reduce by itself.

Bytes per step: what one all-reduce of the trainable gradients moves per rank each optimizer step
(``GradBuckets.nbytes``; a ring all-reduce sends and receives about this much per rank, whatever N).
It is the lesson of the page: LoRA and QLoRA train, and so move, a hundredth of full fine-tuning's bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the sibling benchmark modules (SHAPES, VOCAB)
from bench_gpt import SHAPES  # noqa: E402
from bench_ops import VOCAB  # noqa: E402

T = {"medium": 240}  # tokens per row (bench_peft's medium T); other shapes use their block size


def worker(method: str, shape_name: str, steps: int) -> None:
    """One rank: train ``steps`` timed steps after one warm-up step; rank 0 prints one JSON line."""
    import minilora as ml  # noqa: PLC0415
    from minilora import distributed, nn, peft  # noqa: PLC0415
    from minilora.train import LMTask, TrainConfig, Trainer  # noqa: PLC0415

    distributed.init()
    shape = SHAPES[shape_name]
    t = T.get(shape_name, shape["block_size"])
    ml.manual_seed(0)
    model = nn.GPT(nn.GPTConfig(VOCAB, shape["block_size"], shape["n_layer"], shape["n_head"], shape["n_embd"],
                                dropout=0.0))
    if method != "full":
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=("c_attn",),
                                                           quantize=method == "qlora"))
    tokens = np.random.default_rng(0).integers(0, VOCAB, size=200_000)
    task = LMTask(tokens[:180_000], tokens[180_000:], t, shape["batch"], seed=0)
    cfg = TrainConfig(max_steps=10**6, batch_size=shape["batch"], warmup_steps=0, eval_interval=0,
                      eval_at_start=False, progress=False, lr=1e-3)
    trainer = Trainer(model, task, cfg)
    sync, spent, spent_cpu = trainer.dp.sync_gradients, [0.0], [0.0]

    def timed_sync(loss_sum):  # the all-reduce's share of the step, waiting for the slower rank included
        t0, c0 = time.perf_counter(), time.process_time()
        out = sync(loss_sum)
        spent[0] += time.perf_counter() - t0
        spent_cpu[0] += time.process_time() - c0  # MPI waits by spinning: CPU time too
        return out

    trainer.dp.sync_gradients = timed_sync
    trainer.fit(steps=1)  # warm-up: first-touch of every buffer, MPI's first connection
    spent[0] = spent_cpu[0] = 0.0
    distributed.barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.fit(steps=steps)
    compute_cpu = time.process_time() - c0 - spent_cpu[0]  # this rank's own work, whatever else ran meanwhile
    distributed.barrier()
    seconds = time.perf_counter() - t0
    alone = 0.0  # the all-reduce of one step's buffer by itself: every rank enters together (no waiting)
    if trainer.dp.buckets is not None:
        buf = np.zeros(trainer.dp.bytes_per_step // 4, dtype=np.float32)  # host
        for _ in range(3):
            distributed.barrier()
            t1 = time.perf_counter()
            trainer.dp.comm.all_reduce(buf, "mean")
            alone += (time.perf_counter() - t1) / 3
    if distributed.is_main():
        world = distributed.world_size()
        tokens = steps * world * shape["batch"] * t
        print(json.dumps({"method": method, "ranks": world, "tokens_per_s": tokens / seconds,
                          "ms_per_step": 1e3 * seconds / steps, "allreduce_ms": 1e3 * spent[0] / steps,
                          "allreduce_alone_ms": 1e3 * alone, "compute_cpu_ms": 1e3 * compute_cpu / steps,
                          "bytes_per_step": trainer.dp.bytes_per_step,
                          "trainable": sum(int(p.data.size) for _, p in trainer._trainable)}), flush=True)


def run(mpiexec: str, n: int, method: str, shape: str, steps: int) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [mpiexec, "-n", str(n), sys.executable, os.path.abspath(__file__), "--worker", method, "--shape", shape,
           "--steps", str(steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="medium", choices=sorted(SHAPES))
    ap.add_argument("--methods", default="full,lora,qlora")
    ap.add_argument("--steps", type=int, default=4, help="timed optimizer steps per run (after one warm-up step)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of each configuration (medians)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.shape, args.steps)
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("bench_distributed: mpiexec not found: pip install -e '.[mpi]'")
    methods = args.methods.split(",")
    load_before = os.getloadavg()
    runs: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.rounds):
        for method in methods:
            for n in (1, 2):
                runs.setdefault((method, n), []).append(run(mpiexec, n, method, args.shape, args.steps))
    load_after = os.getloadavg()

    def med(method: str, n: int, key: str) -> float:
        return statistics.median(r[key] for r in runs[(method, n)])

    def estimate(method: str) -> float:
        """2 x one rank's CPU time per step / (a rank's CPU time per step outside the sync + the all-reduce alone):
        the scaling an idle machine would give if each rank had a core of its own (CPU time does not count the
        time the other processes held the core)."""
        one = med(method, 1, "compute_cpu_ms")
        return 2 * one / (med(method, 2, "compute_cpu_ms") + med(method, 2, "allreduce_alone_ms"))

    shape = SHAPES[args.shape]
    print(f"shape {args.shape}: n_layer {shape['n_layer']}, n_embd {shape['n_embd']}, batch {shape['batch']} x "
          f"{T.get(args.shape, shape['block_size'])} tokens per rank; {os.cpu_count()} CPUs; 1 BLAS thread per rank; "
          f"medians of {args.rounds} alternating runs of {args.steps} steps; load average (1 min) "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print("| method | trainable | all-reduced per step | 1 rank tokens/s | 2 ranks tokens/s | scaling | "
          "wait + all-reduce ms/step | all-reduce alone ms | idle estimate |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    full_bytes = med("full", 2, "bytes_per_step") if "full" in methods else None
    results = []
    for method in methods:
        one, two = med(method, 1, "tokens_per_s"), med(method, 2, "tokens_per_s")
        nbytes = med(method, 2, "bytes_per_step")
        ratio = f" ({full_bytes / nbytes:,.0f}x less)" if full_bytes and method != "full" else ""
        print(f"| {method} | {int(med(method, 2, 'trainable')):,} | {nbytes / 2**20:,.2f} MiB{ratio} | {one:,.0f} | "
              f"{two:,.0f} | {two / one:.2f}x | {med(method, 2, 'allreduce_ms'):.1f} | "
              f"{med(method, 2, 'allreduce_alone_ms'):.1f} | {estimate(method):.2f}x |")
        results.append({"method": method, "scaling": two / one, "idle_estimate": estimate(method),
                        "tokens_per_s": {"1": one, "2": two},
                        "bytes_per_step": nbytes, "runs": {str(n): runs[(method, n)] for n in (1, 2)}})
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"shape": args.shape, "load": [load_before, load_after], "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
