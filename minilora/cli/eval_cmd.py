"""``minilora eval``: validation loss and perplexity of a checkpoint on a corpus, or of a fine-tuned adapter.

    minilora eval --checkpoint BASE --corpus english
    minilora eval --checkpoint BASE --adapter runs/lora --data arithmetic   # loss, samples, exact-match accuracy

With ``--data`` the held-out tail is the one ``minilora finetune --data`` held out (same split), and
the report is finetune's: loss, a few greedy samples and exact-match accuracy where the data has answers,
accuracy for a classification adapter (one saved by ``finetune --task classify``).
"""

from __future__ import annotations

import argparse
import json
import os
from types import SimpleNamespace
from typing import Any

from minilora.cli.ckpt_helpers import check_device, load_model


def add_parser(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help="validation loss / perplexity of a checkpoint (or an adapter) on a corpus",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", "--base", dest="checkpoint", required=True, metavar="PATH")
    p.add_argument("--adapter", default=None, metavar="DIR", help="evaluate the base with this fine-tuned adapter")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--corpus", default=None, help="built-in corpus (default english)")
    src.add_argument("--text-file", default=None, help="evaluate on your own text file instead")
    src.add_argument("--data", default=None, metavar="CORPUS_OR_FILE",
                     help="what finetune --data takes (corpus, JSONL or text file): its held-out examples")
    p.add_argument("--corpus-size", type=int, default=None, help="lines/examples to generate")
    p.add_argument("--corpus-seed", type=int, default=0, help="corpus generator seed (default 0, as pretrain)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out tail that is evaluated (default 0.1)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-batches", type=int, default=50, help="cap on evaluated batches (default 50)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.set_defaults(run=run)


def _adapter_model(model: Any, directory: str, args: argparse.Namespace) -> tuple[Any, list[str] | None]:
    """The base with the adapter (as a classifier when the adapter is one); the label names, if any."""
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.cli.ckpt_helpers import apply_adapter  # noqa: PLC0415
    from minilora.cli.finetune_cmd import classifier  # noqa: PLC0415
    from minilora.cli.finetune_data import LABELS_FILE  # noqa: PLC0415

    labels_path = os.path.join(directory, LABELS_FILE)
    if not os.path.isfile(labels_path):
        return apply_adapter(model, directory), None
    try:
        with open(labels_path, encoding="utf-8") as f:
            labels = [str(v) for v in json.load(f)["labels"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CLIError(f"{labels_path}: not a label file ({exc})") from None
    clf, _ = classifier(model, None, len(labels), 0)
    return apply_adapter(clf, directory), labels


def run(args: argparse.Namespace) -> int:
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.data import get_corpus, load_text_corpus, train_val_split  # noqa: PLC0415
    from minilora.train.tasks import evaluate_lm  # noqa: PLC0415

    check_device(args.device)
    for flag in ("batch_size", "max_batches"):
        if getattr(args, flag) < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if not 0.0 < args.val_fraction < 1.0:
        raise CLIError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    _, model, tokenizer = load_model(args.checkpoint, args.device)
    labels = None
    if args.adapter is not None:
        model, labels = _adapter_model(model, args.adapter, args)
    model.eval()
    block = model.max_positions - _taken_positions(model)
    if args.data is not None or labels is not None:
        if args.data is None:
            raise CLIError("--adapter: a classification adapter needs --data (a JSONL file of {text, label} lines)")
        return _report(args, model, tokenizer, block, labels)
    try:
        corpus = (load_text_corpus(args.text_file) if args.text_file
                  else get_corpus(args.corpus or "english", n=args.corpus_size, seed=args.corpus_seed))
        _, val = train_val_split(tokenizer.encode(corpus.text), args.val_fraction)
        report = evaluate_lm(model, val, block, args.batch_size, args.max_batches, args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    print(f"{corpus.name}: validation loss {report['val_loss']:.4f}, perplexity {report['val_ppl']:.3f} "
          f"({report['windows']} windows of {block} characters)")
    return 0


def _taken_positions(model: Any) -> int:
    """Positions the active adapter's virtual tokens take from the window, as finetune leaves room for them:
    prompt tuning's soft prompt, or a prefix under a family that places it (Llama: position_offset)."""
    from minilora.peft.registry import method_of  # noqa: PLC0415

    configs = getattr(model, "peft_config", None)
    if not configs:
        return 0
    config = configs[model.active_adapter]
    virtual = getattr(config, "num_virtual_tokens", 0)
    return virtual if method_of(config).prepends_tokens else model.position_offset(virtual)


def _report(args: argparse.Namespace, model: Any, tokenizer: Any, block: int, labels: list[str] | None) -> int:
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.cli.finetune_data import load_data, report  # noqa: PLC0415

    want = SimpleNamespace(data=args.data, corpus_size=args.corpus_size, task="classify" if labels else "lm")
    cfg = SimpleNamespace(seed=0, device=args.device, batch_size=args.batch_size, eval_batches=args.max_batches)
    try:
        data = load_data(want, tokenizer, block, cfg)
        if labels is not None and data.labels != labels:
            raise ValueError(f"--data: its labels {data.labels} are not the adapter's {labels}")
        metrics = data.task.evaluate(model)
    except ValueError as exc:
        raise CLIError(str(exc).splitlines()[0][:400]) from None
    what = "per answer token" if data.kind == "completion" else ""
    print(f"{data.name}: {data.summary}; validation loss {metrics['val_loss']:.4f} {what}".rstrip())
    for line in report(data, model, tokenizer, block, args.device, metrics):
        print(line)
    return 0
