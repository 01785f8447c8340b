"""``minilora eval``: validation loss and perplexity of a checkpoint on a corpus."""

from __future__ import annotations

import argparse
from typing import Any

from minilora.cli.ckpt_helpers import check_device, load_model


def add_parser(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help="validation loss / perplexity of a checkpoint on a corpus")
    p.add_argument("--checkpoint", required=True, metavar="PATH")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--corpus", default="english", help="built-in corpus (default english)")
    src.add_argument("--text-file", default=None, help="evaluate on your own text file instead")
    p.add_argument("--corpus-size", type=int, default=None, help="lines/examples to generate")
    p.add_argument("--corpus-seed", type=int, default=0, help="corpus generator seed (default 0, as pretrain)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out tail that is evaluated (default 0.1)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-batches", type=int, default=50, help="cap on evaluated batches (default 50)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.data import get_corpus, load_text_corpus, train_val_split  # noqa: PLC0415
    from minilora.train.tasks import evaluate_lm  # noqa: PLC0415

    check_device(args.device)
    _, model, tokenizer = load_model(args.checkpoint, args.device)
    try:
        corpus = (load_text_corpus(args.text_file) if args.text_file
                  else get_corpus(args.corpus, n=args.corpus_size, seed=args.corpus_seed))
        _, val = train_val_split(tokenizer.encode(corpus.text), args.val_fraction)
        block = model.config.block_size
        model.eval()
        report = evaluate_lm(model, val, block, args.batch_size, args.max_batches, args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    print(f"{corpus.name}: validation loss {report['val_loss']:.4f}, perplexity {report['val_ppl']:.3f} "
          f"({report['windows']} windows of {block} characters)")
    return 0
