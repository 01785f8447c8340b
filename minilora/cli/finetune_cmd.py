"""``minilora finetune``: fine-tune a pre-trained checkpoint with one method and save only the adapter.

    minilora finetune --method lora --base runs/pretrain/ckpt.npz --data arithmetic --rank 8 --out runs/lora

Methods: full, lora, qlora (LoRA on an NF4-quantised base), dora, ia3, adapter, prefix, prompt.
The base stays untouched on disk; ``--out DIR`` receives the adapter (adapter_config.json +
adapter_model.npz; for ``full`` the whole fine-tuned weights). Use it with
``minilora generate --checkpoint BASE --adapter DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any

from minilora.cli import generate_cmd, one_line
from minilora.cli.ckpt_helpers import check_device, load_model

METHODS = ("full", "lora", "qlora", "dora", "ia3", "adapter", "prefix", "prompt")
# toy-scale learning rates that work: the fewer and smaller the trained tensors, the larger the step
DEFAULT_LR = {"full": 1e-3, "lora": 3e-3, "qlora": 3e-3, "dora": 3e-3, "ia3": 1e-2, "adapter": 3e-3,
              "prefix": 1e-2, "prompt": 3e-2}


def add_parser(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help="fine-tune a checkpoint with full, LoRA, QLoRA, DoRA, IA3, adapters, prefix or "
                                  "prompt tuning; saves the adapter", description=__doc__.split("\n\n")[0])
    p.add_argument("--method", required=True, choices=METHODS, help="fine-tuning method")
    p.add_argument("--base", "--checkpoint", dest="base", required=True, metavar="PATH",
                   help="the pre-trained checkpoint (from minilora pretrain) or a Hugging Face GPT-2 folder")
    p.add_argument("--data", required=True, metavar="CORPUS_OR_FILE",
                   help="a built-in corpus name (e.g. arithmetic, reverse, sentiment), a JSONL file of {\"text\"}, "
                        "{\"prompt\", \"completion\"}, {\"messages\"} or (--task classify) {\"text\", \"label\"} "
                        "lines, or a UTF-8 text file (see docs/data.md)")
    p.add_argument("--task", choices=("lm", "classify"), default="lm",
                   help="lm: language modelling / completions (default); classify: sequence classification")
    p.add_argument("--out", default=None, metavar="DIR", help="where the adapter goes (default runs/finetune-METHOD)")
    p.add_argument("--format", choices=("minilora", "peft"), default="minilora",
                   help="adapter files: minilora's (default) or Hugging Face PEFT's (LoRA/DoRA; needs minilora[hf])")
    g = p.add_argument_group("LoRA / QLoRA / DoRA / IA3")
    g.add_argument("--rank", type=int, default=8, help="LoRA rank r (default 8)")
    g.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha; scaling alpha/r (default 16)")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout on the LoRA branch's input (default 0)")
    g.add_argument("--rslora", action="store_true", help="rank-stabilised scaling alpha/sqrt(r)")
    g.add_argument("--targets", default=None,
                   help="comma-separated module names or suffixes (default c_attn; IA3: c_attn,mlp.c_proj), "
                        "'all-linear', or 're:REGEX' (full match against module paths)")
    g.add_argument("--block-size-nf4", dest="nf4_block", type=int, default=64, help="QLoRA NF4 block size (64)")
    g = p.add_argument_group("bottleneck adapters")
    g.add_argument("--bottleneck", type=int, default=16, help="adapter bottleneck width (default 16)")
    g.add_argument("--placement", choices=("houlsby", "pfeiffer"), default="houlsby")
    g.add_argument("--activation", choices=("gelu", "relu", "silu", "tanh"), default="gelu")
    g.add_argument("--train-layernorms", action="store_true", help="also train the LayerNorms")
    g = p.add_argument_group("prefix / prompt tuning")
    g.add_argument("--virtual-tokens", type=int, default=10, help="number of virtual tokens P (default 10)")
    g.add_argument("--prefix-projection", action="store_true", help="prefix tuning through a reparameterisation MLP")
    g.add_argument("--prompt-init-text", default=None, help="initialise the soft prompt from this text's embeddings")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    g.add_argument("--batch-size", type=int, default=16,
                   help="examples per step on each rank (mpiexec -n N: N times as many per step; default 16)")
    g.add_argument("--global-batch-size", type=int, default=0,
                   help="examples per step over all ranks, split evenly (default 0: batch size x ranks)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default: per method)")
    g.add_argument("--eval-interval", type=int, default=50)
    g.add_argument("--corpus-size", type=int, default=None, help="lines/examples to generate for a built-in corpus")
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    g.add_argument("--progress", default=True, action=argparse.BooleanOptionalAction, help="progress bar")
    g.add_argument("--gradient-checkpointing", action="store_true",
                   help="rerun each block in backward instead of keeping its activations (less memory, ~1/3 slower)")
    p.set_defaults(run=run)


def _targets(text: str | None, default: tuple[str, ...]) -> str | tuple[str, ...]:
    if text is None:
        return default
    if text == "all-linear":
        return text
    if text.startswith("re:"):
        return text[3:]
    return tuple(t.strip() for t in text.split(",") if t.strip())


def build_config(args: argparse.Namespace) -> Any:
    """The PeftConfig the command-line options describe (ValueError for bad values)."""
    from minilora import peft  # noqa: PLC0415

    m = args.method
    if m == "full":
        return peft.FullFineTuneConfig()
    if m in ("lora", "qlora", "dora"):
        return peft.LoraConfig(
            r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout,
            target_modules=_targets(args.targets, ("c_attn",)), use_rslora=args.rslora, use_dora=m == "dora",
            quantize=m == "qlora", quant_block_size=args.nf4_block,
        )  # fmt: skip
    if m == "ia3":
        return peft.IA3Config(target_modules=_targets(args.targets, ("c_attn", "mlp.c_proj")))
    if m == "adapter":
        return peft.AdapterConfig(bottleneck=args.bottleneck, placement=args.placement, activation=args.activation,
                                  train_layernorms=args.train_layernorms)
    if m == "prefix":
        return peft.PrefixTuningConfig(num_virtual_tokens=args.virtual_tokens, prefix_projection=args.prefix_projection)
    init = "text" if args.prompt_init_text else "random"
    return peft.PromptTuningConfig(num_virtual_tokens=args.virtual_tokens, init=init, init_text=args.prompt_init_text)


def apply_adapter(model: Any, directory: str) -> Any:
    """``minilora generate --adapter DIR``: the base model with the saved adapter loaded (frozen)."""
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.peft import load_adapter  # noqa: PLC0415

    try:
        return load_adapter(model, directory)
    except FileNotFoundError as exc:
        raise CLIError(f"--adapter: {exc.strerror}: {exc.filename}") from None
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise CLIError(f"--adapter: {exc}") from None


generate_cmd.ADAPTER_HOOK = apply_adapter  # the hook the generate command leaves for adapters


def run(args: argparse.Namespace) -> int:
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.cli.finetune_data import load_data, report  # noqa: PLC0415
    from minilora.peft import get_peft_model  # noqa: PLC0415
    from minilora.train import TrainConfig, Trainer  # noqa: PLC0415

    check_device(args.device)
    out = args.out or os.path.join("runs", f"finetune-{args.method}")
    if os.path.exists(out) and not os.path.isdir(out):  # before training, not after it
        raise CLIError(f"--out {out} is a file; the adapter is saved as a folder (give a folder path)")
    _, model, tokenizer = load_model(args.base, args.device)
    try:
        config = build_config(args)
        cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, global_batch_size=args.global_batch_size,
                          lr=args.lr or DEFAULT_LR[args.method],
                          warmup_steps=min(20, args.steps // 10), eval_interval=args.eval_interval,
                          weight_decay=0.1 if args.method == "full" else 0.0, seed=args.seed, device=args.device,
                          progress=args.progress, gradient_checkpointing=args.gradient_checkpointing)  # fmt: skip
        if args.method == "prompt" and args.virtual_tokens >= model.config.block_size:
            raise ValueError(f"--virtual-tokens {args.virtual_tokens} must be smaller than the base model's block "
                             f"size {model.config.block_size} (the soft prompt takes that many positions)")
        window = model.config.block_size - (args.virtual_tokens if args.method == "prompt" else 0)
        data = load_data(args, tokenizer, window, cfg)
        if data.kind == "classify":
            model, config = classifier(model, config, len(data.labels), args.seed)
        peft = get_peft_model(model, config, tokenizer=tokenizer)
    except (ValueError, TypeError) as exc:
        raise CLIError(one_line(str(exc))) from None
    print(f"method {args.method}: ", end="")
    peft.print_trainable_parameters()
    print(f"data: {data.name}, {data.summary}")
    trainer = Trainer(peft, data.task, cfg, tokenizer=tokenizer)
    t0 = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - t0
    if not trainer.dp.is_main:
        return 0
    try:
        size = peft.save_adapter(out, format=args.format)
    except (ValueError, NotImplementedError, ImportError) as exc:
        raise CLIError(f"--format {args.format}: {exc}") from None
    if data.labels is not None:
        save_labels(out, data.labels)
    before, after = history.val_loss[0], history.val_loss[-1]
    print(f"done: {trainer.step} steps in {seconds:.1f} s, val loss {before:.4f} -> {after:.4f}; "
          f"{trainer.dp.summary()}, {trainer.tokens_per_s:,.0f} tokens/s; adapter {size:,} bytes in {out}"
          + (" (Hugging Face PEFT format)" if args.format == "peft" else ""))
    for line in report(data, peft, tokenizer, window, args.device, history.val_metrics[-1]):
        print(line)
    return 0


def classifier(model: Any, config: Any, num_labels: int, seed: int) -> tuple[Any, Any]:
    """``--task classify``: the LM's backbone under a new ``score`` head (zeros, so the base is reproducible
    for the adapter's fingerprint), trained in full beside the adapter (modules_to_save)."""
    from minilora.models import family_of  # noqa: PLC0415

    clf = family_of(model).classifier_cls.from_gpt(model, num_labels)
    clf.score.weight.data = clf.score.weight.xp.zeros_like(clf.score.weight.data)
    if config is not None and hasattr(config, "modules_to_save"):
        config = dataclasses.replace(config, modules_to_save=(*config.modules_to_save, "score"))
    return clf, config


def save_labels(directory: str, labels: list[str]) -> None:
    """labels.json beside a classification adapter: the label names in id order (read by eval and generate)."""
    from minilora.cli.finetune_data import LABELS_FILE  # noqa: PLC0415
    from minilora.io import atomic_write_text  # noqa: PLC0415

    atomic_write_text(os.path.join(directory, LABELS_FILE), json.dumps({"labels": labels}) + "\n")
