"""``minilora demo``: pre-train a small GPT, fine-tune it on a shifted domain with every method, compare.

    1. the base: a GPT pre-trained on the built-in "english" corpus (cached, see pretrain.py);
    2. the domain: templated reviews with a verdict, "the plot was not dull => positive" (sentiment),
       trained as completions (loss on the verdict only) and scored by greedy exact match (task.py);
    3. every method (methods.py) starts from the same base weights and trains with the same steps,
       batch, window, optimizer and schedule; its adapter is saved with save_adapter and measured;
    4. one table (console, results.md, results.csv), results.json with every curve, and
       loss_curves.png (matplotlib optional).

Outputs in ``out_dir``: the files above, ``base.npz`` (the base weights, for ``minilora analyze``)
and ``adapters/<method>/`` (each method's saved adapter; "full" holds the whole model).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

from minilora import backend
from minilora.analysis.params import describe, layer_table, lora_counts, table_lines
from minilora.demo.config import DemoConfig
from minilora.demo.measure import ProbedTask, weight_bytes
from minilora.demo.methods import METHODS
from minilora.demo.pretrain import Pretrained, pretrained_base
from minilora.demo.report import (
    PLOT_HINT,
    MethodResult,
    console_table,
    ensure_dir,
    markdown_table,
    plot_curves,
    result_dicts,
    write_csv,
)
from minilora.models import family_of, get_family
from minilora.train.completion import CompletionTask


@dataclasses.dataclass
class DomainData:
    """Either (prompt, answer) pairs (a completion task with accuracy) or plain text (language modelling)."""

    name: str
    train: Any  # pairs, or a token array
    val: Any
    has_answers: bool

    def task(self, cfg: DemoConfig, tokenizer: Any) -> Any:
        """A fresh task (its own seeded sampler) over this data."""
        from minilora.train import LMTask  # noqa: PLC0415

        if self.has_answers:
            return CompletionTask(self.train, self.val, tokenizer, cfg.window, cfg.batch_size, seed=cfg.ft_seed,
                                  device=cfg.device)
        return LMTask(self.train, self.val, cfg.window, cfg.batch_size, seed=cfg.ft_seed, device=cfg.device,
                      eval_batches=cfg.eval_batches)


@dataclasses.dataclass
class DemoResult:
    config: DemoConfig
    results: list[MethodResult]
    base_val_loss: float  # the pre-trained base on the domain's validation text
    base_accuracy: float
    pretrain_val_loss: float
    pretrain_seconds: float
    pretrain_cached: bool
    seconds: float
    files: dict[str, str]


def domain_data(cfg: DemoConfig, tokenizer: Any) -> DomainData:
    """The fine-tuning domain: the last 10% of its examples are held out (at most accuracy_examples of them)."""
    from minilora.data import get_corpus, train_val_split  # noqa: PLC0415

    corpus = get_corpus(cfg.domain, n=cfg.domain_size, seed=1)
    if corpus.pairs:
        train_pairs, val_pairs = train_val_split(corpus.pairs, 0.1)
        return DomainData(corpus.name, list(train_pairs), list(val_pairs[: cfg.accuracy_examples]), True)
    train_tokens, val_tokens = train_val_split(tokenizer.encode(corpus.text), 0.1)
    return DomainData(corpus.name, train_tokens, val_tokens, False)


def parameter_arithmetic(model: Any, r: int = 8) -> list[str]:
    """The seed's arithmetic (d = k = 4096, r = 8) and the same figures for ``model``'s LoRA targets."""
    lines = describe(lora_counts(4096, 4096, r)).splitlines()
    targets = family_of(model).lora_targets
    lines += ["", f"the demo's model, LoRA r={r} on {', '.join(targets)} (what the lora, qlora and dora rows train):"]
    lines += table_lines(layer_table(model, targets, r), model.num_parameters())
    lines += ["", f"and if LoRA targeted every Linear (target_modules='all-linear'), r={r}:"]
    lines += table_lines(layer_table(model, "all-linear", r), model.num_parameters())
    return lines


def run_demo(cfg: DemoConfig, log: Any = print) -> DemoResult:
    """Run the whole demo as ``cfg`` says; prints progress through ``log`` and returns every figure."""
    from minilora.train import save_checkpoint  # noqa: PLC0415

    backend.module_for(cfg.device)  # a clear error when cuda is asked for and missing
    t_start = time.perf_counter()
    out = ensure_dir(cfg.out_dir)
    base = pretrained_base(cfg, log)
    log("")
    for line in parameter_arithmetic(base.model):
        log(line)
    save_checkpoint(os.path.join(out, "base.npz"), base.model, tokenizer=base.tokenizer,
                    extra={"val_loss": base.val_loss, "demo": cfg.pretrain_dict()})
    data = domain_data(cfg, base.tokenizer)
    report = data.task(cfg, base.tokenizer).evaluate(base.model)
    base_val, base_acc = report["val_loss"], report.get("val_accuracy", math.nan)
    what = "examples (loss on the answers only)" if data.has_answers else "characters"
    log(f"\nfine-tuning domain '{data.name}': {len(data.train):,} training and {len(data.val):,} validation {what}; "
        f"the base model's validation loss there is {base_val:.4f}"
        + (f", its exact-match accuracy {100 * base_acc:.1f}%" if data.has_answers else ""))
    log(f"same budget for every method: {cfg.steps} steps of {cfg.batch_size} examples of at most {cfg.window} "
        "tokens, AdamW, warmup then cosine decay, no weight decay; per-method learning rates "
        "(minilora/demo/methods.py)")
    base_state = base.model.state_dict()  # copies: every method starts from these exact weights
    results = []
    for i, name in enumerate(cfg.methods):
        m = METHODS[name]
        log(f"\n[{i + 1}/{len(cfg.methods)}] {name}: {m.summary}; lr {m.lr:g}")
        results.append(finetune(name, cfg, base, base_state, data))
        r = results[-1]
        log(f"    val loss {r.val_loss_before:.4f} -> {r.val_loss_after:.4f}"
            + (f", accuracy {100 * r.accuracy_before:.1f}% -> {100 * r.accuracy_after:.1f}%"
               if data.has_answers else "")
            + f", {r.ms_per_step:.1f} ms/step")
    seconds = time.perf_counter() - t_start
    result = DemoResult(cfg, results, base_val, base_acc, base.val_loss, base.seconds, base.cached, seconds, {})
    result.files = write_outputs(result, data, log)
    return result


def finetune(
    name: str, cfg: DemoConfig, base: Pretrained, base_state: dict[str, Any], data: DomainData
) -> MethodResult:
    """Fine-tune a fresh copy of the base with method ``name``; save its adapter; measure everything."""
    from minilora.peft import get_peft_model  # noqa: PLC0415
    from minilora.train import TrainConfig, Trainer  # noqa: PLC0415

    method = METHODS[name]
    backend.manual_seed(cfg.ft_seed)  # the same adapter initialisation and batches on every run
    model = family_of(base.model).build(base.model.config).to(cfg.device)
    model.load_state_dict(base_state)
    peft = get_peft_model(model, method.make_config(), tokenizer=base.tokenizer)  # prompt tuning's text init
    trainable, total = peft.get_nb_trainable_parameters()
    w_bytes = weight_bytes(peft)
    task = ProbedTask(data.task(cfg, base.tokenizer), cfg.device, trace_step=1 if cfg.steps > 1 else 0)
    train_cfg = TrainConfig(
        max_steps=cfg.steps, batch_size=cfg.batch_size, lr=method.lr, warmup_steps=max(1, cfg.steps // 10),
        weight_decay=0.0, eval_interval=cfg.eval_interval, eval_batches=cfg.eval_batches, seed=cfg.ft_seed,
        device=cfg.device, progress=cfg.progress,
    )
    trainer = Trainer(peft, task, train_cfg, tokenizer=base.tokenizer)
    history = trainer.fit()
    task.close()
    accuracy = [m.get("val_accuracy", math.nan) for m in history.val_metrics]
    adapter_bytes = peft.save_adapter(os.path.join(cfg.out_dir, "adapters", name))
    peak = w_bytes + trainer.optimizer.state_nbytes() + (task.traced_peak or 0)
    return MethodResult(
        method=name, trainable_params=trainable, total_params=total, adapter_bytes=adapter_bytes,
        weight_bytes=w_bytes, peak_bytes=peak, ms_per_step=task.ms_per_step(),
        val_loss_before=history.val_loss[0], val_loss_after=history.val_loss[-1],
        accuracy_before=accuracy[0], accuracy_after=accuracy[-1], lr=method.lr,
        train_steps=list(history.steps), train_loss=list(history.train_loss),
        val_steps=list(history.val_steps), val_loss=list(history.val_loss), val_accuracy=accuracy,
    )


def _model_name(cfg: DemoConfig) -> str:
    return get_family(cfg.family).lm_cls.__name__


def header_lines(res: DemoResult) -> list[str]:
    cfg = res.config
    acc = f"; exact-match accuracy {100 * res.base_accuracy:.1f}%" if not math.isnan(res.base_accuracy) else ""
    return [
        f"Base: {_model_name(cfg)} n_layer={cfg.n_layer}, n_head={cfg.n_head}, n_embd={cfg.n_embd}, "
        f"block_size={cfg.block_size}, "
        f"pre-trained {cfg.pretrain_steps} steps on 'english' (val loss {res.pretrain_val_loss:.4f}). "
        f"Fine-tuned on '{cfg.domain}' for {cfg.steps} steps of {cfg.batch_size} examples "
        f"(device {cfg.device}); the base there: val loss {res.base_val_loss:.4f}{acc}.",
    ]


def write_outputs(res: DemoResult, data: DomainData, log: Any) -> dict[str, str]:
    """results.md, results.csv, results.json and loss_curves.png in the output folder; prints the table."""
    out = res.config.out_dir
    files = {name: os.path.join(out, name) for name in ("results.md", "results.csv", "results.json",
                                                         "loss_curves.png")}
    notes = [
        "",
        "trainable % counts NF4 weights as weights; adapter on disk is what save_adapter writes (config JSON + "
        "npz; for full, the whole model); weight memory is every parameter and buffer as stored; peak memory is "
        "weight memory + optimizer state + the tracemalloc peak of one training step; ms/step is the median step "
        "time; val loss is the cross entropy of the held-out answers (before: each method's model at step 0; "
        "prefix/prompt tuning already differ from the base there); accuracy is greedy exact match of the answer on "
        f"{len(data.val):,} held-out examples, before -> after.",
    ]
    with open(files["results.md"], "w", encoding="utf-8") as f:
        f.write("\n".join(header_lines(res)) + "\n\n" + markdown_table(res.results) + "\n".join(notes) + "\n")
    write_csv(files["results.csv"], res.results)
    with open(files["results.json"], "w", encoding="utf-8") as f:
        json.dump({
            "config": res.config.to_dict(), "base_val_loss": res.base_val_loss,
            "base_accuracy": None if math.isnan(res.base_accuracy) else res.base_accuracy,
            "pretrain_val_loss": res.pretrain_val_loss, "pretrain_seconds": res.pretrain_seconds,
            "pretrain_cached": res.pretrain_cached, "seconds": res.seconds, "results": result_dicts(res.results),
        }, f, indent=1, allow_nan=True)
    title = (f"minilora demo: fine-tuning a {res.config.n_layer}-layer {_model_name(res.config)} on "
             f"'{res.config.domain}' "
             f"({res.config.steps} steps, same budget per method)")
    plotted = plot_curves(files["loss_curves.png"], res.results, title)
    if not plotted:
        files.pop("loss_curves.png")
    log("\n" + "\n".join(header_lines(res)) + "\n")
    log(console_table(res.results))
    log("\n".join(notes))
    log(f"\nwrote {', '.join(files.values())} (adapters in {os.path.join(out, 'adapters')}) "
        f"in {res.seconds:.0f} s")
    if not plotted:
        log(f"no loss-curve picture: matplotlib is not installed; {PLOT_HINT} to get "
            f"{os.path.join(out, 'loss_curves.png')}")
    return files
