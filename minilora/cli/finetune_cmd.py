"""``minilora finetune``: fine-tune a pre-trained checkpoint with one method and save only the adapter.

    minilora finetune --method lora --base runs/pretrain/ckpt.npz --data arithmetic --rank 8 --out runs/lora

Methods: every one in the registry (``minilora finetune --help`` lists them: full, lora, qlora, dora,
pissa, loraplus, vera, ia3, adapter, prefix, prompt), each with its own options and learning rate.
The base stays untouched on disk; ``--out DIR`` receives the adapter (adapter_config.json +
adapter_model.npz; for ``full`` the whole fine-tuned weights). Use it with
``minilora generate --checkpoint BASE --adapter DIR``. A PiSSA / OLoRA adapter (``--init pissa``), trained
against the residual W0 - s B0 A0, is saved converted to an ordinary rank-2r LoRA on BASE
(``--no-convert-to-lora`` to keep it as trained; docs/methods/pissa.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any

from minilora.cli import one_line
from minilora.cli.ckpt_helpers import check_device, load_model
from minilora.peft import registry


def add_parser(sub: Any, name: str) -> None:
    table = registry.variants()
    p = sub.add_parser(name, help="fine-tune a checkpoint with one of the registered methods (" + ", ".join(table)
                       + "); saves the adapter", description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--method", required=True, choices=list(table), help="fine-tuning method")
    p.add_argument("--base", "--checkpoint", dest="base", required=True, metavar="PATH",
                   help="the pre-trained checkpoint (from minilora pretrain) or a Hugging Face GPT-2/Llama/Qwen2 "
                        "folder")
    p.add_argument("--data", required=True, metavar="CORPUS_OR_FILE",
                   help="a built-in corpus name (e.g. arithmetic, reverse, sentiment), a JSONL file of {\"text\"}, "
                        "{\"prompt\", \"completion\"}, {\"messages\"} or (--task classify) {\"text\", \"label\"} "
                        "lines, or a UTF-8 text file (see docs/data.md)")
    p.add_argument("--task", choices=("lm", "classify"), default="lm",
                   help="lm: language modelling / completions (default); classify: sequence classification")
    p.add_argument("--out", default=None, metavar="DIR", help="where the adapter goes (default runs/finetune-METHOD)")
    p.add_argument("--format", choices=("minilora", "peft"), default="minilora",
                   help="adapter files: minilora's (default) or Hugging Face PEFT's (LoRA/DoRA; needs minilora[hf])")
    p.add_argument("--convert-to-lora", default=None, action=argparse.BooleanOptionalAction,
                   help="save a PiSSA / OLoRA adapter (--init pissa|pissa_niter_N|olora) as an ordinary rank-2r LoRA "
                        "on the ORIGINAL base, so generate/eval --adapter work on --base (default: on for those "
                        "inits; --no-convert-to-lora saves it for the residual base, which is not saved)")
    seen: set[str] = set()
    for method in registry.methods().values():  # each method's own options; one it shares with another is added once
        options = [o for o in method.options if o.dest not in seen]
        if options:
            g = p.add_argument_group(", ".join(v.name for v in method.variants), f"see {method.docs}")
            for opt in options:
                opt.add_to(g)
                seen.add(opt.dest)
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    g.add_argument("--batch-size", type=int, default=16,
                   help="examples per step on each rank (mpiexec -n N: N times as many per step; default 16)")
    g.add_argument("--global-batch-size", type=int, default=0,
                   help="examples per step over all ranks, split evenly (default 0: batch size x ranks)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the method's)")
    g.add_argument("--eval-interval", type=int, default=50)
    g.add_argument("--corpus-size", type=int, default=None, help="lines/examples to generate for a built-in corpus")
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    g.add_argument("--progress", default=True, action=argparse.BooleanOptionalAction, help="progress bar")
    g.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="fp32 (CPU default), or 16-bit GEMMs with float32 master weights (fp16: loss scaling)")
    g.add_argument("--gradient-checkpointing", action="store_true",
                   help="rerun each block in backward instead of keeping its activations (less memory, ~1/3 slower)")
    p.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> Any:
    """The PeftConfig the command-line options describe (ValueError for bad values)."""
    method, variant = registry.get_variant(args.method)
    return registry.config_from_args(method, variant, args)


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
        method, variant = registry.get_variant(args.method)
        config = registry.config_from_args(method, variant, args)
        cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, global_batch_size=args.global_batch_size,
                          lr=args.lr or variant.lr, warmup_steps=min(20, args.steps // 10),
                          eval_interval=args.eval_interval, weight_decay=variant.weight_decay, seed=args.seed,
                          device=args.device, progress=args.progress,
                          gradient_checkpointing=args.gradient_checkpointing, precision=args.precision)  # fmt: skip
        virtual = getattr(config, "num_virtual_tokens", 0)
        # positions the soft prompt takes (prompt tuning), or the prefix under a family that places it (Llama)
        taken = virtual if method.prepends_tokens else model.position_offset(virtual)
        if taken >= model.max_positions:
            raise ValueError(f"--virtual-tokens {taken} must be smaller than the base model's "
                             f"{model.max_positions_field} {model.max_positions} (the virtual tokens take that many "
                             "positions)")
        window = model.max_positions - taken
        data = load_data(args, tokenizer, window, cfg)
        if data.kind == "classify":
            model, config = classifier(model, config, len(data.labels), args.seed)
        if args.format == "peft":  # before training, not after it
            from minilora.peft.registry import method_of  # noqa: PLC0415

            if method_of(config).exchange is None:
                raise ValueError(f"--format peft: minilora writes PEFT's format for LoRA-family adapters only, not "
                                 f"{args.method}; use --format minilora")
        peft = get_peft_model(model, config, tokenizer=tokenizer)
        convert = peft.base_changed if args.convert_to_lora is None else args.convert_to_lora
        if convert and not peft.base_changed:  # before training, not after it
            raise ValueError(f"--convert-to-lora: the {args.method} adapter leaves the base as it is (only --init "
                             "pissa, pissa_niter_N or olora replace it by a residual); nothing to convert")
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
    extra = None if data.labels is None else labels_file(data.labels)
    try:
        # labels.json in the same unit; PiSSA / OLoRA: a LoRA on the original base (minilora.peft.lora_convert)
        size = peft.save_adapter(out, format=args.format, extra_files=extra, convert_to_lora=convert)
    except (ValueError, NotImplementedError, ImportError) as exc:
        raise CLIError(f"--format {args.format}: {exc}") from None
    before, after = history.val_loss[0], history.val_loss[-1]
    note = [*(["Hugging Face PEFT format"] if args.format == "peft" else []),
            *([f"converted to a rank-{2 * config.r} LoRA on the original base"] if convert else []),
            *(["for the residual base, not --base: see docs/methods/pissa.md"] if peft.base_changed and not convert
              else [])]  # fmt: skip
    print(f"done: {trainer.step} steps in {seconds:.1f} s, val loss {before:.4f} -> {after:.4f}; "
          f"{trainer.dp.summary()}, {trainer.tokens_per_s:,.0f} tokens/s; adapter {size:,} bytes in {out}"
          + (f" ({'; '.join(note)})" if note else ""))
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


def labels_file(labels: list[str]) -> dict[str, str]:
    """{labels.json: text} beside a classification adapter: the label names in id order (read by eval and
    generate), saved in one unit with the adapter."""
    from minilora.cli.finetune_data import LABELS_FILE  # noqa: PLC0415

    return {LABELS_FILE: json.dumps({"labels": labels}) + "\n"}

