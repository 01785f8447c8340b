"""The training loop, shared by pre-training and every fine-tuning method.

One optimizer step (``Trainer.train_step``)::

    for each of grad_accum_steps micro-batches:      loss_k = task.loss(model, batch) / k;  loss_k.backward()
    several ranks (mpiexec): grads, loss = their mean over the ranks (one all-reduce per bucket)
    norm = global gradient norm of the trainable parameters
    loss, norm -> host                                # the one host sync per step
    stop with NonFiniteError if either is NaN/inf      (weights untouched)
    clip: grads *= min(1, grad_clip / (norm + 1e-6))
    group["lr"] = group["initial_lr"] * schedule(step) for every parameter group
    optimizer.step(); optimizer.zero_grad()

Around it: a tqdm bar (step, loss, lr, tokens/s), validation every ``eval_interval``
steps, a JSONL metrics log, checkpoints every ``checkpoint_interval`` steps (and at the
end) that hold everything needed to resume bit-exactly on the CPU, and a ``History``
of the losses for plotting. Frozen parameters (requires_grad False) get no gradient,
no optimizer state and no update: a PEFT-wrapped model trains only its adapter.
Under ``mpiexec -n N`` each rank takes its slice of the same global batch, and rank 0 alone
writes the log, the checkpoints and the bar (minilora.train.data_parallel, docs/distributed.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from minilora import backend
from minilora.io import atomic_folder, atomic_write_npz, atomic_write_text, resolve_folder
from minilora.nn import all_or_nothing
from minilora.optim import (
    SGD,
    Adam,
    AdamW,
    check_finite,
    check_updated,
    get_schedule,
    grad_norm,
    param_groups,
    scale_grads,
)
from minilora.optim.optimizer import Optimizer
from minilora.optim.schedules import Schedule
from minilora.train.checkpoint import (
    CheckpointError,
    _json_array,
    checkpoint_arrays,
    load_checkpoint,
    restore_model,
    restore_optimizer,
)
from minilora.train.config import TrainConfig
from minilora.train.data_parallel import DataParallel
from minilora.train.precision import MixedPrecision

CKPT, METRICS = "ckpt.npz", "metrics.jsonl"


def _metrics_upto(path: str, step: int) -> list[str]:
    """The lines of a metrics log up to ``step`` (what a run resumed there had logged); [] without a log."""
    if not os.path.isfile(path):
        return []
    lines = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-append
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
                lines.append(line if line.endswith("\n") else line + "\n")
    return lines


@dataclasses.dataclass
class History:
    """Per-step training losses and learning rates, and every validation report, for plotting curves."""

    steps: list[int] = dataclasses.field(default_factory=list)
    train_loss: list[float] = dataclasses.field(default_factory=list)
    lr: list[float] = dataclasses.field(default_factory=list)
    val_steps: list[int] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    val_metrics: list[dict[str, float]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(**{f.name: list(d.get(f.name, [])) for f in dataclasses.fields(cls)})


def make_optimizer(model: Any, config: TrainConfig) -> Optimizer:
    """The optimizer a TrainConfig names, over the model's trainable parameters (no decay on 1-D ones).

    A model with ``optimizer_groups(lr, weight_decay)`` (a PeftModel) chooses its own groups: LoRA+ puts
    its B matrices at a larger learning rate.
    """
    if hasattr(model, "optimizer_groups"):
        groups = model.optimizer_groups(config.lr, config.weight_decay)
    else:
        groups = param_groups(model, config.weight_decay)
    if config.optimizer == "sgd":
        return SGD(groups, lr=config.lr, momentum=config.momentum)
    cls = AdamW if config.optimizer == "adamw" else Adam
    return cls(groups, lr=config.lr, betas=(config.beta1, config.beta2))


class Trainer:
    """Trains ``model`` on ``task`` as ``config`` says. ``fit()`` returns the History.

    ``optimizer`` and ``schedule`` default to those the config names; ``loss_fn(model, batch)``
    overrides the task's loss; ``tokenizer`` is stored in checkpoints so ``minilora generate``
    can decode. The model is moved to ``config.device``, and ``minilora.manual_seed(config.seed)``
    is called so dropout draws repeat from run to run (build the model after seeding to make its
    initialisation reproducible too).
    """

    def __init__(
        self,
        model: Any,
        task: Any,
        config: TrainConfig | None = None,
        *,
        optimizer: Optimizer | None = None,
        schedule: Schedule | Callable[[int], float] | None = None,
        tokenizer: Any = None,
        loss_fn: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        self.config = config = config or TrainConfig()
        backend.module_for(config.device)  # a clear error when the device is unavailable
        if config.gradient_checkpointing and not hasattr(model, "gradient_checkpointing_enable"):
            raise TypeError(f"TrainConfig.gradient_checkpointing: {type(model).__name__} has no "
                            "gradient_checkpointing_enable()")
        self.dp = DataParallel(config)  # the world (one process without a launcher); before anything is on a GPU
        backend.manual_seed(config.seed + self.dp.rank)  # each rank its own dropout stream
        self.model = model.to(config.device)
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.task, self.tokenizer = task, tokenizer
        self.optimizer = optimizer or make_optimizer(model, config)
        self.schedule = schedule or get_schedule(
            config.schedule, config.max_steps, config.warmup_steps, config.min_lr_ratio
        )
        self.loss_fn = loss_fn or task.loss
        self.step = 0  # optimizer steps done
        self.precision = MixedPrecision(config.precision)  # fp32, or bf16/fp16 autocast (+ loss scaling)
        self._step_notes: dict[str, Any] = {}  # the last step's extra log fields (a skipped fp16 step)
        self.history = History()
        self._trainable = [(n, p) for n, p in self.optimizer.named_parameters() if p.requires_grad]
        self._tokens = 0
        # the run folder (out_dir) is saved as a unit: ckpt.npz, metrics.jsonl and these files (e.g. the CLI's
        # config.json and vocab.json), so a kill at any moment leaves a matching set (see minilora.io)
        self.run_files: dict[str, str] = {}
        self._metrics: list[str] = []  # metrics.jsonl lines of this run (cut back to the checkpoint on resume)
        # the live metrics.jsonl: "fresh" (decided at the first record), "resync" (rewrite it from _metrics, as
        # cut back by resume, then append), "live" (append), "held" (another run's log is there: keep the records
        # in memory until this run's first checkpoint replaces the folder)
        self._log_state = "fresh"
        self.dp.setup(self.model, task, config, self._trainable, tokenizer, self.optimizer)  # several ranks: compare,
        # split the task, broadcast (minilora.train.data_parallel)
        self.tokens_per_s = 0.0  # of the whole world, over the last fit()

    # ------------------------------------------------------------------ paths
    @property
    def checkpoint_path(self) -> str | None:
        return os.path.join(self.config.out_dir, "ckpt.npz") if self.config.out_dir else None

    def _log(self, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        self._metrics.append(line)
        if self.config.out_dir and self.dp.is_main:  # one writer
            path = os.path.join(self.config.out_dir, METRICS)
            if self._log_state == "fresh":
                self._log_state = "held" if os.path.exists(path) else "resync"
            if self._log_state == "resync":  # never append past a resumed checkpoint
                atomic_write_text(path, "".join(self._metrics))
                self._log_state = "live"
            elif self._log_state == "live":
                with open(path, "a", encoding="utf-8") as f:
                    f.write(line)

    # ------------------------------------------------------------------ one step
    def train_step(self) -> tuple[float, float]:
        """One optimizer update (``grad_accum_steps`` micro-batches). Returns (loss, grad norm) as host floats."""
        cfg, k = self.config, self.config.grad_accum_steps
        self.model.train()
        loss_sum = None
        for _ in range(k):
            batch = self.task.next_batch()
            self._tokens += self.task.num_tokens(batch)
            with self.precision.autocast():
                loss = self.loss_fn(self.model, batch)
            loss = self.dp.weigh(loss, self.task, batch)  # several ranks: a token-mean loss weighed by its share
            self.precision.backward(loss * (1.0 / k) if k > 1 else loss)  # fp16: times the loss scale
            loss_sum = loss.data if loss_sum is None else loss_sum + loss.data
        loss_sum = self.dp.sync_gradients(loss_sum)  # several ranks: the global mean gradient and loss
        params = [p for _, p in self._trainable]
        norm = grad_norm(params)
        xp = backend.get_array_module(loss_sum)
        pair = xp.stack([(loss_sum / k).astype(xp.float64), norm.data.astype(xp.float64)])
        loss_value, norm_value = (float(v) for v in backend.to_host(pair))  # host: the one sync per step
        self._step_notes = {}
        if self.precision.overflowed(params, norm_value):  # fp16 overflow: no update, the scale halved
            self._step_notes = {"skipped": True, "loss_scale": self.precision.scaler.get_scale()}
            self.step += 1
            return loss_value, norm_value
        norm, norm_value = self.precision.unscale(params, norm, norm_value)  # fp16: divided by the scale
        check_finite(self.step + 1, loss_value, norm_value, self._trainable)  # 1-based, as in the log; before clipping
        if cfg.grad_clip > 0:
            scale_grads(params, cfg.grad_clip, norm)
        lr_factor = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lr_factor
        self.optimizer.step()
        self.optimizer.zero_grad()
        check_updated(self.step + 1, self._trainable, self.optimizer.param_groups[0]["lr"])  # before any write
        self.step += 1
        return loss_value, norm_value

    # ------------------------------------------------------------------ validation and checkpoints
    def evaluate(self) -> dict[str, float]:
        """The task's validation report (model in eval mode, no graph), recorded in the history and the log."""
        self.model.eval()
        report = self.task.evaluate(self.model)
        self.model.train()
        self.history.val_steps.append(self.step)
        self.history.val_loss.append(report["val_loss"])
        self.history.val_metrics.append(report)
        self._log({"step": self.step, **report})
        return report

    def save(self, path: str | None = None) -> str:
        """Write a resumable checkpoint atomically; the default (``out_dir/ckpt.npz``) saves the run folder as a unit.

        Nothing is written when a value is NaN/Inf (NonFiniteCheckpointError): a good checkpoint is never replaced.
        With several ranks: call it on every rank (it gathers their random states); rank 0 alone writes.
        """
        target = path or self.checkpoint_path
        if target is None:
            raise ValueError("Trainer.save: no path given and config.out_dir is None")
        world = self.dp.checkpoint_meta()  # collective
        if not self.dp.is_main:
            return target
        arrays, meta = checkpoint_arrays(
            self.model,
            self.optimizer,
            step=self.step,
            tokenizer=self.tokenizer,
            schedule=self.schedule if isinstance(self.schedule, Schedule) else None,
            sampler_state=self.task.state_dict(),
            train_config=self.config.to_dict(),
            extra={"history": self.history.to_dict(), "grad_scaler": self.precision.scaler.state_dict(), **world},
        )
        arrays["meta"] = _json_array(meta)
        if target != self.checkpoint_path:
            atomic_write_npz(target, arrays)
            return target
        with atomic_folder(self.config.out_dir) as folder:
            folder.write_npz(CKPT, arrays)
            folder.write_text(METRICS, "".join(self._metrics))
            for name, text in self.run_files.items():
                folder.write_text(name, text)
        self._log_state = "live"
        return target

    def resume(self, path: str) -> None:
        """Restore weights, optimizer, step, RNG states and history from a checkpoint written by ``save``.

        All or nothing: the checkpoint is read and checked first, and if applying it fails half-way, the model,
        optimizer, sampler, RNG and step are put back as they were. The run's metrics are cut back to its step.
        """
        folder = resolve_folder(os.path.dirname(path) or ".")
        path = os.path.join(folder, os.path.basename(path))
        ckpt = load_checkpoint(path)
        self.dp.check_resume(ckpt)  # several ranks: the same file everywhere, written by a world this size
        metrics = _metrics_upto(os.path.join(folder, METRICS), ckpt.step)
        before = (self.optimizer.state_dict(), self.task.state_dict(), backend.rng_state(),
                  self.precision.scaler.state_dict())
        with all_or_nothing(self, self.model):
            try:
                restore_model(ckpt, self.model)
                restore_optimizer(ckpt, self.optimizer)
                if ckpt.meta.get("sampler") is not None:
                    self.task.load_state_dict(ckpt.meta["sampler"])
                backend.set_rng_state(ckpt.meta["rng"])
                self.dp.after_resume(ckpt)
                self.step = ckpt.step
                self.history = History.from_dict(ckpt.meta.get("extra", {}).get("history", {}))
                if "grad_scaler" in ckpt.meta.get("extra", {}):
                    self.precision.scaler.load_state_dict(ckpt.meta["extra"]["grad_scaler"])
            except BaseException as exc:
                self.optimizer.load_state_dict(before[0])
                self.task.load_state_dict(before[1])
                backend.set_rng_state(before[2])
                self.precision.scaler.load_state_dict(before[3])
                if isinstance(exc, (KeyError, TypeError, ValueError)) and not isinstance(exc, CheckpointError):
                    raise CheckpointError(f"{path}: cannot resume from it ({type(exc).__name__}: {exc})") from None
                raise
        self._metrics, self._log_state = metrics, "resync"

    # ------------------------------------------------------------------ the loop
    def fit(self, steps: int | None = None) -> History:
        """Train until ``config.max_steps`` (or for at most ``steps`` more steps). Returns the History."""
        cfg = self.config
        end = cfg.max_steps if steps is None else min(cfg.max_steps, self.step + steps)
        if cfg.eval_at_start and self.step == 0 and not self.history.val_steps:
            self.evaluate()
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not cfg.progress or not self.dp.is_main,
                   desc="train", unit="step", dynamic_ncols=True)
        t0, self._tokens, last_eval = time.perf_counter(), 0, None
        try:
            while self.step < end:
                loss, norm = self.train_step()
                lr = self.optimizer.param_groups[0]["lr"]
                tok_s = self._tokens * self.dp.size / max(time.perf_counter() - t0, 1e-9)  # the whole world's
                self.tokens_per_s = tok_s
                self.history.steps.append(self.step)
                self.history.train_loss.append(loss)
                self.history.lr.append(lr)
                finite_norm = norm if math.isfinite(norm) else None  # a skipped fp16 step's norm is inf
                self._log({"step": self.step, "loss": loss, "lr": lr, "grad_norm": finite_norm, "tokens_per_s": tok_s,
                           **self._step_notes})
                post = {"loss": f"{loss:.4f}", "lr": f"{lr:.2e}", "tok/s": f"{tok_s:,.0f}"}
                if cfg.eval_interval and self.step % cfg.eval_interval == 0 and self.step < cfg.max_steps:
                    last_eval = self.evaluate()
                if last_eval is not None:
                    post["val"] = f"{last_eval['val_loss']:.4f}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
                if cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0 and self.checkpoint_path:
                    self.save()
        finally:
            bar.close()
        if self.step >= cfg.max_steps:
            if not self.history.val_steps or self.history.val_steps[-1] != self.step:
                self.evaluate()
            if self.checkpoint_path:
                self.save()
        return self.history
