"""Tiny models and data shared by the training tests (kept small: the whole file set runs in seconds)."""

from __future__ import annotations

import numpy as np
import pytest

import minilora
from minilora import nn
from minilora.data import CharTokenizer, get_corpus, train_val_split
from minilora.train import LMTask, TrainConfig


def _tiny_config(**kw) -> nn.GPTConfig:
    base = {"vocab_size": 96, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.0}
    return nn.GPTConfig(**{**base, **kw})


def _tiny_gpt(seed: int = 0, **kw) -> nn.GPT:
    minilora.manual_seed(seed)
    return nn.GPT(_tiny_config(**kw))


@pytest.fixture(scope="session")
def english_tokens() -> tuple[np.ndarray, np.ndarray]:
    tok = CharTokenizer.default()
    return train_val_split(tok.encode(get_corpus("english", n=300, seed=0).text), 0.1)


def _lm_task(tokens, device="cpu", seed=0, batch_size=4, block_size=16) -> LMTask:
    train, val = tokens
    return LMTask(train, val, block_size, batch_size, seed=seed, device=device, eval_batches=2)


def _quick_config(**kw) -> TrainConfig:
    base = {"max_steps": 10, "batch_size": 4, "lr": 1e-2, "warmup_steps": 2, "eval_interval": 5, "eval_batches": 2,
            "progress": False, "seed": 0}
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def tiny_config():
    """GPTConfig factory: 1 layer, 2 heads, n_embd 16, block 16, the shared 96-character vocabulary."""
    return _tiny_config


@pytest.fixture
def tiny_gpt():
    """GPT factory seeded with ``seed``."""
    return _tiny_gpt


@pytest.fixture
def lm_task():
    """LMTask factory over ``english_tokens`` (batch 4, block 16, 2 evaluation batches)."""
    return _lm_task


@pytest.fixture
def quick_config():
    """TrainConfig factory: 10 steps, no progress bar."""
    return _quick_config
