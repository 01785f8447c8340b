"""DemoConfig: every knob of ``minilora demo``, with defaults that take 2-3 minutes on 2 idle CPU cores."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from minilora.demo.methods import METHOD_NAMES, VIRTUAL_TOKENS
from minilora.validate import check_fields


def default_cache_dir() -> str:
    """$MINILORA_CACHE, else $XDG_CACHE_HOME/minilora, else ~/.cache/minilora."""
    if os.environ.get("MINILORA_CACHE"):
        return os.environ["MINILORA_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "minilora")


@dataclasses.dataclass
class DemoConfig:
    """Model, pre-training, fine-tuning and output settings of the demo.

    The fine-tuning window is ``block_size - VIRTUAL_TOKENS`` tokens for every method, so
    prefix and prompt tuning's virtual tokens fit in the context like everyone else's data.
    """

    # the model (a 4-layer GPT, nanoGPT's "baby" width; family "llama" or "qwen2": the same sizes, MLP 8/3 wide)
    family: str = "gpt2"
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    # pre-training on the built-in "english" corpus (cached)
    pretrain_steps: int = 500
    pretrain_batch_size: int = 16
    pretrain_lr: float = 3e-3
    pretrain_corpus_size: int = 4000
    # fine-tuning on the shifted domain, the same budget for every method
    domain: str = "sentiment"
    domain_size: int = 4000
    steps: int = 200
    batch_size: int = 16
    methods: tuple[str, ...] = METHOD_NAMES
    eval_interval: int = 25
    eval_batches: int = 8
    accuracy_examples: int = 256
    # where and how
    seed: int = 1337  # pre-training's seed, and fine-tuning's unless finetune_seed is set
    finetune_seed: int | None = None  # fine-tuning only (adapter init, batches): what --seeds varies
    device: str = "cpu"
    out_dir: str = os.path.join("runs", "demo")
    cache_dir: str | None = dataclasses.field(default_factory=default_cache_dir)  # None: never cache
    progress: bool = True

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        check_fields(self)
        for name in ("n_layer", "n_head", "n_embd", "block_size", "pretrain_steps", "pretrain_batch_size",
                     "domain_size", "steps", "batch_size", "eval_batches", "accuracy_examples"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"DemoConfig: {name} must be a positive integer, got {v!r}")
        if self.block_size <= VIRTUAL_TOKENS + 1:
            raise ValueError(f"DemoConfig: block_size must exceed {VIRTUAL_TOKENS + 1} "
                             f"(prefix/prompt tuning use {VIRTUAL_TOKENS} positions), got {self.block_size}")
        from minilora.models import get_family  # noqa: PLC0415

        get_family(self.family)  # an unknown family: one line listing the registered ones
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"DemoConfig: device must be 'cpu' or 'cuda', got {self.device!r}")

    @property
    def ft_seed(self) -> int:
        """The seed of every fine-tuning run (adapter initialisation, batch order)."""
        return self.seed if self.finetune_seed is None else self.finetune_seed

    @property
    def window(self) -> int:
        """Tokens per fine-tuning example (the context left after the virtual tokens)."""
        return self.block_size - VIRTUAL_TOKENS

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """A seconds-long run on a tiny model (tests, smoke checks): every stage, no meaningful numbers."""
        settings: dict[str, Any] = dict(
            n_layer=1, n_head=2, n_embd=16, block_size=32, pretrain_steps=3, pretrain_batch_size=4,
            pretrain_corpus_size=200, domain_size=200, steps=2, batch_size=4, eval_interval=0, eval_batches=1,
            accuracy_examples=8, progress=False,
        )
        settings.update(overrides)
        return cls(**settings)

    def model_dict(self) -> dict[str, Any]:
        sizes: dict[str, Any] = {k: getattr(self, k) for k in ("n_layer", "n_head", "n_embd", "block_size")}
        return sizes if self.family == "gpt2" else {"family": self.family, **sizes}  # GPT-2's cache keys unchanged

    def pretrain_dict(self) -> dict[str, Any]:
        """What the pre-trained model depends on (with the code version, the key of its cache entry)."""
        keys = ("pretrain_steps", "pretrain_batch_size", "pretrain_lr", "pretrain_corpus_size", "seed")
        return {**self.model_dict(), **{k: getattr(self, k) for k in keys}}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["methods"] = list(self.methods)
        return d
