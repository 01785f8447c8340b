"""``minilora generate``: sample text from a checkpoint, with a fine-tuned adapter applied (``--adapter DIR``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from minilora.cli.ckpt_helpers import apply_adapter, check_device, load_model


def add_parser(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help="sample text from a checkpoint")
    p.add_argument("--checkpoint", "--base", dest="checkpoint", required=True, metavar="PATH",
                   help="a checkpoint written by pretrain, or a Hugging Face GPT-2/Llama/Qwen2 folder")  # fmt: skip
    p.add_argument("--prompt", default="", help="text to continue (default: start of a line)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="characters to generate (default 200)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens only (0: off)")
    p.add_argument("--top-p", type=float, default=None,
                   help="nucleus sampling: the smallest set of tokens whose probabilities reach p (0 < p <= 1)")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="end the output before the first occurrence of TEXT (repeatable, e.g. --stop $'\\n')")
    p.add_argument("--eos-id", type=int, default=None, metavar="ID",
                   help="end-of-text token id: generation stops when it is produced (default: the model's own, "
                        "if its checkpoint names one)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--adapter", default=None, metavar="DIR", help="apply a fine-tuned adapter saved in DIR")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from minilora import backend  # noqa: PLC0415
    from minilora.cli import CLIError  # noqa: PLC0415

    check_device(args.device)
    if args.max_new_tokens < 0 or args.temperature < 0 or (args.top_k is not None and args.top_k < 0):
        raise CLIError("--max-new-tokens, --temperature and --top-k must be >= 0")
    if args.top_p is not None and not 0.0 < args.top_p <= 1.0:
        raise CLIError(f"--top-p must be in (0, 1], got {args.top_p}")
    if any(not s for s in args.stop):
        raise CLIError("--stop: the text must not be empty")
    _, model, tokenizer = load_model(args.checkpoint, args.device)
    if args.adapter is not None:
        model = apply_adapter(model, args.adapter)
    try:
        ids = tokenizer.encode(args.prompt or "\n")
    except ValueError as exc:
        raise CLIError(f"--prompt: {exc}") from None
    idx = backend.to_device(ids.reshape(1, -1), args.device)  # generate slides its window past block_size
    model.eval()
    eos = args.eos_id if args.eos_id is not None else getattr(model, "hf_config", {}).get("eos_token_id")
    if isinstance(eos, list):  # Llama 3 style config.json lists several end ids: the first ends the text
        eos = eos[0] if eos else None
    if eos is not None and not 0 <= eos < model.config.vocab_size:
        raise CLIError(f"--eos-id {eos} is outside the vocabulary [0, {model.config.vocab_size})")
    try:
        out = model.generate(idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k or None,
                             top_p=args.top_p, seed=args.seed, eos_token_id=eos)
    except (ValueError, TypeError) as exc:
        raise CLIError(str(exc)) from None
    new = out[0, len(ids):]  # a device array (generate returns the idx type it was given)
    if eos is not None:
        new = new[: _first(backend.to_host(new).tolist(), eos)]  # host: drop the end-of-text id and any padding
    text = _decode(tokenizer, new)
    for stop in args.stop:
        text = text.split(stop)[0]
    print((args.prompt + text) if args.prompt else text)
    return 0


def _first(ids: list[int], value: int) -> int:
    return ids.index(value) if value in ids else len(ids)


def _decode(tokenizer: Any, ids: Any) -> str:
    """The text of ``ids``; ids outside the tokenizer (a padded vocabulary) are shown as U+FFFD, and said so."""
    from minilora.data.tokenizer import decode_known  # noqa: PLC0415

    text, unknown = decode_known(tokenizer, ids)
    if unknown:
        print(f"minilora: note: ids {unknown[:10]} are outside the tokenizer's {tokenizer.vocab_size} tokens (a "
              "padded vocabulary?): shown as U+FFFD", file=sys.stderr)
    return text
