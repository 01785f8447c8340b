"""``minilora pretrain``: train a small GPT (or ``--family llama`` / ``qwen2``) from scratch on a corpus or a file.

Options come from defaults, then ``--config file.json`` (keys as the flags, with
underscores), then the flags given on the command line. The defaults train a
2-layer GPT on the built-in ``english`` corpus in about a minute on 2 CPU cores and
save ``runs/pretrain/ckpt.npz`` (plus ``metrics.jsonl``, ``vocab.json`` and the
effective ``config.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

from minilora.cli.ckpt_helpers import check_device, check_out_dir

MODEL_DEFAULTS: dict[str, Any] = {"family": "gpt2", "n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 64,
                                  "dropout": 0.0, "bias": True, "n_kv_head": None, "intermediate_size": None}
SIZES = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "n_kv_head", "intermediate_size")
DATA_DEFAULTS: dict[str, Any] = {"corpus": "english", "text_file": None, "corpus_size": None, "corpus_seed": 0,
                                 "val_fraction": 0.1}
TRAIN_OVERRIDES: dict[str, Any] = {"out_dir": os.path.join("runs", "pretrain"), "max_steps": 600, "batch_size": 16,
                                   "lr": 6e-3, "warmup_steps": 30, "eval_interval": 100}

HELP = {
    "family": "model family: gpt2, llama or qwen2 (minilora.models.families())",
    "n_kv_head": "key/value heads, dividing n_head (Llama/Qwen2 grouped-query attention; unset: n_head)",
    "intermediate_size": "MLP width (unset: the family's, GPT-2 4 n_embd, Llama 8/3 n_embd)",
    "bias": "biases in the Linear layers and LayerNorms (GPT-2 only)",
    "n_layer": "transformer blocks", "n_head": "attention heads", "n_embd": "embedding width",
    "block_size": "context length in characters", "dropout": "dropout probability",
    "corpus": "built-in corpus (minilora.data.list_corpora())", "text_file": "train on your own UTF-8 text file",
    "corpus_size": "lines/examples to generate (corpus default when unset)", "corpus_seed": "corpus generator seed",
    "val_fraction": "held-out fraction of the text", "max_steps": "optimizer steps", "lr": "peak learning rate",
    "out_dir": "where ckpt.npz, metrics.jsonl, vocab.json, config.json go", "device": "cpu or cuda",
    "grad_clip": "clip the global gradient norm (0: off)", "grad_accum_steps": "micro-batches per step",
    "checkpoint_interval": "save every N steps (0: only at the end)", "eval_interval": "validate every N steps",
    "gradient_checkpointing": "rerun each block in backward instead of keeping its activations (less memory)",
    "precision": "fp32 (CPU default), bf16 or fp16 (16-bit GEMMs, float32 master weights; fp16 with loss scaling)",
    "batch_size": "examples per micro-batch on each rank (mpiexec -n N: N times as many per step)",
    "global_batch_size": "examples per micro-batch over all ranks, split evenly (0: batch size x ranks)",
}


def _train_defaults() -> dict[str, Any]:
    from minilora.train import TrainConfig  # noqa: PLC0415

    return {**TrainConfig().to_dict(), **TRAIN_OVERRIDES}


def _all_defaults() -> dict[str, Any]:
    return {**MODEL_DEFAULTS, **DATA_DEFAULTS, **_train_defaults()}


def _kind(key: str, default: Any) -> Any:
    """The type of an option, from its default (an int default admits floats where the field is a float)."""
    if default is None:
        return int if key in ("corpus_size", "n_kv_head", "intermediate_size") else str
    return type(default)


def _check_option(source: str, key: str, value: Any, default: Any) -> None:
    """A config-file value must have its option's type (a float option takes an int; no NaN/inf; no bool for int)."""
    from minilora.cli import CLIError  # noqa: PLC0415

    want = _kind(key, default)
    if value is None and default is None:
        return
    if want is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
    if not ok:
        names = {float: "a finite number", int: "an integer", bool: "true or false", str: "a string"}
        raise CLIError(f"{source}: option {key!r} must be {names.get(want, want.__name__)}, got {value!r}")


def add_parser(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help="pre-train a small GPT-2/Llama/Qwen2 on a built-in corpus or your own text file",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--config", metavar="FILE.json", help="JSON file of options (flags given here win)")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/ckpt.npz if it exists")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a non-empty OUT_DIR (replaced at the "
                   "first checkpoint)")
    for key, default in _all_defaults().items():
        flag = "--" + key.replace("_", "-")
        kind = _kind(key, default)
        if kind is bool:
            p.add_argument(flag, dest=key, default=None, action=argparse.BooleanOptionalAction,
                           help=f"{HELP.get(key, key)} (default {default})")
        else:
            p.add_argument(flag, dest=key, default=None, type=kind, help=f"{HELP.get(key, key)} (default {default})")
    p.set_defaults(run=run)


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    """defaults < config file < command-line flags; unknown config keys are an error naming them."""
    from minilora.cli import CLIError  # noqa: PLC0415

    opts = _all_defaults()
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            try:
                file_opts = json.load(f)
            except json.JSONDecodeError as exc:
                raise CLIError(f"{args.config}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
            except UnicodeDecodeError as exc:
                raise CLIError(f"{args.config}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        if not isinstance(file_opts, dict):
            raise CLIError(f"{args.config}: expected a JSON object of options")
        unknown = sorted(set(file_opts) - set(opts))
        if unknown:
            raise CLIError(f"{args.config}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(opts))}")
        for key, value in file_opts.items():
            _check_option(args.config, key, value, opts[key])
        opts.update(file_opts)
    opts.update({k: v for k, v in vars(args).items() if k in opts and v is not None})
    return opts


def run(args: argparse.Namespace) -> int:
    from minilora import backend  # noqa: PLC0415
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.data import CharTokenizer, get_corpus, load_text_corpus, train_val_split  # noqa: PLC0415
    from minilora.models import get_family  # noqa: PLC0415
    from minilora.train import CheckpointError, LMTask, TrainConfig, Trainer  # noqa: PLC0415

    opts = resolve_options(args)
    check_device(opts["device"])
    try:
        train_cfg = TrainConfig.from_dict({k: opts[k] for k in _train_defaults()})
        corpus = (load_text_corpus(opts["text_file"]) if opts["text_file"]
                  else get_corpus(opts["corpus"], n=opts["corpus_size"], seed=opts["corpus_seed"]))
        tokenizer = CharTokenizer.from_text(corpus.text)
        family = get_family(opts["family"])
        model_cfg = family.sized_config(tokenizer.vocab_size, **{k: opts[k] for k in SIZES},
                                        bias=opts["bias"] if family.name == "gpt2" else None)
        train_tokens, val_tokens = train_val_split(tokenizer.encode(corpus.text), opts["val_fraction"])
    except (ValueError, TypeError) as exc:
        raise CLIError(str(exc)) from None

    backend.manual_seed(train_cfg.seed)
    model = family.build(model_cfg)
    try:
        task = LMTask(train_tokens, val_tokens, model.max_positions, train_cfg.batch_size, seed=train_cfg.seed,
                      device=train_cfg.device, eval_batches=train_cfg.eval_batches)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    trainer = Trainer(model, task, train_cfg, tokenizer=tokenizer)
    ckpt_path = trainer.checkpoint_path
    if ckpt_path and check_out_dir(train_cfg.out_dir, args.resume, args.overwrite):
        try:
            trainer.resume(ckpt_path)
        except CheckpointError as exc:
            raise CLIError(f"--resume: {exc}") from None
        print(f"resuming from {ckpt_path} at step {trainer.step}")
    # written with every checkpoint, in one unit with it (never before the run is known to be valid)
    trainer.run_files = {"vocab.json": json.dumps(tokenizer.to_dict(), ensure_ascii=True),
                         "config.json": json.dumps({**opts, "vocab_size": tokenizer.vocab_size}, indent=2)}

    n_params = model.num_parameters()
    print(f"model: {type(model).__name__} n_layer={model_cfg.n_layer} n_head={model_cfg.n_head} "
          f"n_embd={model_cfg.n_embd} block_size={model.max_positions}, {n_params:,} parameters, "
          f"device {train_cfg.device}")
    print(f"data: {corpus.name}, {len(train_tokens):,} training and {len(val_tokens):,} validation characters "
          f"(vocabulary {tokenizer.vocab_size})")
    t0 = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - t0
    report = history.val_metrics[-1] if history.val_metrics else {}
    print(f"done: step {trainer.step}, train loss {history.train_loss[-1]:.4f}, "
          f"val loss {report.get('val_loss', float('nan')):.4f} (perplexity {report.get('val_ppl', float('nan')):.2f}) "
          f"in {seconds:.1f} s; {trainer.dp.summary()}, {trainer.tokens_per_s:,.0f} tokens/s"
          + (f"; checkpoint {ckpt_path}" if ckpt_path else ""))
    return 0
