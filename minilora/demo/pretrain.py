"""The demo's pre-trained base: trained once on the built-in "english" corpus, then reused from a cache.

The cache entry is ``<cache_dir>/demo-base-<key>.npz``, a normal minilora checkpoint. The key
hashes the model and pre-training settings and the source of everything pre-training runs
through (engine, ops, models, optimizers, trainer, data), so editing that code, or asking for
another model, trains a fresh base instead of reusing a stale one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from typing import Any

import minilora
from minilora import backend
from minilora.demo.config import DemoConfig

_CODE = ("autograd.py", "tensor.py", "backend.py", "functional.py", "ops", "nn", "optim", "train", "data")


@dataclasses.dataclass
class Pretrained:
    """The base model (on the demo's device), its tokenizer, and how it was obtained."""

    model: Any
    tokenizer: Any
    val_loss: float
    seconds: float  # pre-training wall time (when it was trained, possibly in an earlier run)
    cached: bool  # True when loaded from the cache in this run
    path: str | None  # the checkpoint file (None when caching is off)


def code_version() -> str:
    """A short hash of minilora's version and the source files pre-training depends on."""
    root = os.path.dirname(os.path.abspath(minilora.__file__))
    h = hashlib.sha256(minilora.__version__.encode())
    for entry in _CODE:
        path = os.path.join(root, entry)
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".py")
        )
        for f in files:
            h.update(os.path.relpath(f, root).encode())
            with open(f, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()[:12]


def cache_key(cfg: DemoConfig) -> str:
    blob = json.dumps({"pretrain": cfg.pretrain_dict(), "code": code_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(cfg: DemoConfig) -> str | None:
    return os.path.join(cfg.cache_dir, f"demo-base-{cache_key(cfg)}.npz") if cfg.cache_dir else None


def pretrained_base(cfg: DemoConfig, log: Any = print) -> Pretrained:
    """Load the cached base for ``cfg`` or pre-train one (and cache it). The model is on ``cfg.device``."""
    from minilora.train import CheckpointError, build_model, load_checkpoint  # noqa: PLC0415

    path = cache_path(cfg)
    if path and os.path.exists(path):
        try:
            ckpt = load_checkpoint(path)
            model = build_model(ckpt, cfg.device)
            extra = ckpt.meta.get("extra", {})
            val_loss, seconds = extra.get("val_loss", math.nan), extra.get("seconds", math.nan)
            log(f"pre-trained base: reusing {path} (val loss {val_loss:.4f}, trained in {seconds:.0f} s)")
            return Pretrained(model, ckpt.tokenizer(), val_loss, seconds, True, path)
        except CheckpointError as exc:  # a damaged cache entry is re-made, not fatal
            log(f"pre-trained base: ignoring unreadable cache entry ({exc})")
    return _pretrain(cfg, path, log)


def _pretrain(cfg: DemoConfig, path: str | None, log: Any) -> Pretrained:
    from minilora.data import PRETRAIN_CORPUS, CharTokenizer, get_corpus, train_val_split  # noqa: PLC0415
    from minilora.models import get_family  # noqa: PLC0415
    from minilora.train import LMTask, TrainConfig, Trainer, save_checkpoint  # noqa: PLC0415

    tokenizer = CharTokenizer.default()
    corpus = get_corpus(PRETRAIN_CORPUS, n=cfg.pretrain_corpus_size, seed=0)
    train_tokens, val_tokens = train_val_split(tokenizer.encode(corpus.text), 0.1)
    backend.manual_seed(cfg.seed)
    family = get_family(cfg.family)
    model = family.build(family.sized_config(tokenizer.vocab_size, cfg.n_layer, cfg.n_head, cfg.n_embd,
                                             cfg.block_size))
    log(f"pre-training a {type(model).__name__} ({model.num_parameters():,} parameters: n_layer={cfg.n_layer}, "
        f"n_head={cfg.n_head}, "
        f"n_embd={cfg.n_embd}, block_size={cfg.block_size}) on '{PRETRAIN_CORPUS}' "
        f"({len(train_tokens):,} characters) for {cfg.pretrain_steps} steps"
        + (f"; it will be cached in {path}" if path else ""))
    train_cfg = TrainConfig(
        max_steps=cfg.pretrain_steps, batch_size=cfg.pretrain_batch_size, lr=cfg.pretrain_lr,
        warmup_steps=min(30, cfg.pretrain_steps // 10), eval_interval=0, eval_at_start=False,
        eval_batches=cfg.eval_batches, seed=cfg.seed, device=cfg.device, progress=cfg.progress,
    )
    task = LMTask(train_tokens, val_tokens, cfg.block_size, cfg.pretrain_batch_size, seed=cfg.seed,
                  device=cfg.device, eval_batches=cfg.eval_batches)
    t0 = time.perf_counter()
    history = Trainer(model, task, train_cfg, tokenizer=tokenizer).fit()
    seconds = time.perf_counter() - t0
    val_loss = history.val_loss[-1]
    log(f"pre-trained in {seconds:.1f} s: validation loss {val_loss:.4f}")
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_checkpoint(path, model, tokenizer=tokenizer, step=cfg.pretrain_steps,
                        extra={"val_loss": val_loss, "seconds": seconds, "demo": cfg.pretrain_dict()})
    return Pretrained(model, tokenizer, val_loss, seconds, False, path)
