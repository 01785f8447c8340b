"""Data: a character tokenizer, built-in synthetic corpora, batches and the train/validation split."""

from minilora.data.batches import BatchSampler, ExampleSampler, eval_windows, pad_examples, train_val_split
from minilora.data.corpora import (
    CORPORA,
    PRETRAIN_CORPUS,
    SENTIMENT_LABELS,
    Corpus,
    corpus_shift,
    get_corpus,
    list_corpora,
    load_text_corpus,
)
from minilora.data.tokenizer import DEFAULT_CHARS, CharTokenizer

__all__ = [
    "CORPORA",
    "DEFAULT_CHARS",
    "PRETRAIN_CORPUS",
    "SENTIMENT_LABELS",
    "BatchSampler",
    "CharTokenizer",
    "Corpus",
    "ExampleSampler",
    "corpus_shift",
    "eval_windows",
    "get_corpus",
    "list_corpora",
    "load_text_corpus",
    "pad_examples",
    "train_val_split",
]
