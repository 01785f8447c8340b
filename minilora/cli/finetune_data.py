"""What ``minilora finetune --data`` trains on, and what it shows at the end.

``--data`` is a built-in corpus name or a file:

- a built-in corpus with answers (arithmetic, reverse, sort, sentiment) or a JSONL file of
  ``{"prompt", "completion"}`` or ``{"messages"}`` lines: completions (loss on the answers only,
  minilora.train.completion), then greedy samples of held-out examples and exact-match accuracy;
- a built-in text corpus (english, alien), a JSONL file of ``{"text"}`` lines, or any other UTF-8
  text file: language modelling;
- with ``--task classify``: a JSONL file of ``{"text", "label"}`` lines, or the built-in
  sentiment corpus: sequence classification (a new zero-initialised ``score`` head trained in
  full beside the adapter), with accuracy.

The last 10% of the examples (or tokens) are held out.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

VAL_FRACTION = 0.1
MAX_VAL_EXAMPLES = 256  # exact-match accuracy is measured on at most this many held-out examples
LABELS_FILE = "labels.json"  # beside a classification adapter: the label names in id order


@dataclasses.dataclass
class FinetuneData:
    """The task to train, and what describes it."""

    name: str
    kind: str  # "text" | "completion" | "classify"
    task: Any
    summary: str  # one line: what was loaded
    val: list[Any]  # held-out examples (completion, classify); empty for text
    labels: list[str] | None = None  # classify: label names in id order


def _source(data: str, corpus_size: int | None) -> Any:
    """A JsonlData, or a Corpus (built-in, or a plain text file)."""
    from minilora.data import get_corpus, load_text_corpus  # noqa: PLC0415
    from minilora.data.jsonl import is_jsonl, load_jsonl  # noqa: PLC0415

    if os.path.isfile(data):
        return load_jsonl(data) if is_jsonl(data) else load_text_corpus(data)
    if os.path.sep in data or data.endswith((".jsonl", ".txt", ".json")):
        raise FileNotFoundError(2, "no such data file", data)
    return get_corpus(data, n=corpus_size, seed=0)


def _split(items: list[Any]) -> tuple[list[Any], list[Any]]:
    from minilora.data import train_val_split  # noqa: PLC0415

    train, val = train_val_split(items, VAL_FRACTION)
    return list(train), list(val[:MAX_VAL_EXAMPLES])


def load_data(args: Any, tokenizer: Any, window: int, cfg: Any) -> FinetuneData:
    """The task ``--data`` (and ``--task``) describe; ValueError for data that cannot be used."""
    from minilora.data.jsonl import JsonlData  # noqa: PLC0415
    from minilora.train import ClassificationTask, CompletionTask, LMTask  # noqa: PLC0415

    src = _source(args.data, args.corpus_size)
    name = os.path.basename(src.path) if isinstance(src, JsonlData) else src.name
    if isinstance(src, JsonlData):
        src.check_tokens(tokenizer)
    kw = dict(seed=cfg.seed, device=cfg.device)
    if args.task == "classify":
        if isinstance(src, JsonlData) and src.kind == "classify":
            examples, labels = src.labelled()
        elif getattr(src, "examples", None) is not None and getattr(src, "label_names", None):
            examples, labels = list(src.examples), list(src.label_names)
        else:
            raise ValueError(f"--task classify: {args.data} has no labels; give a JSONL file of "
                             '{"text": ..., "label": ...} lines (or the built-in sentiment corpus)')
        if len(labels) < 2:
            raise ValueError(f"--task classify: {args.data} has only one label ({labels[0]!r}); need two or more")
        train, val = _split(examples)
        task = ClassificationTask(train, val, tokenizer, window, cfg.batch_size, eval_batches=cfg.eval_batches, **kw)
        return FinetuneData(name, "classify", task, f"{len(train):,} training and {len(val):,} validation examples, "
                            f"{len(labels)} labels ({', '.join(labels)})", val, labels)
    if isinstance(src, JsonlData) and src.kind == "classify":
        raise ValueError(f"{args.data}: {{\"text\", \"label\"}} lines are a classification task: add --task classify")
    examples = (src.examples() if src.kind in ("completion", "chat") else None) if isinstance(src, JsonlData) \
        else src.pairs
    if examples:
        train, val = _split(examples)
        task = CompletionTask(train, val, tokenizer, window, cfg.batch_size, **kw)
        return FinetuneData(name, "completion", task, f"{len(train):,} training and {len(val):,} validation "
                            "examples (loss on the answers only)", val)
    tokens = np.asarray(tokenizer.encode(src.text))
    train_tokens, val_tokens = _split_tokens(tokens)
    task = LMTask(train_tokens, val_tokens, window, cfg.batch_size, eval_batches=cfg.eval_batches, **kw)
    return FinetuneData(name, "text", task, f"{len(train_tokens):,} training and {len(val_tokens):,} validation "
                        "tokens (language modelling)", [])


def _split_tokens(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from minilora.data import train_val_split  # noqa: PLC0415

    return train_val_split(tokens, VAL_FRACTION)


def report(
    data: FinetuneData, model: Any, tokenizer: Any, window: int, device: str, metrics: dict[str, float], n: int = 4
) -> list[str]:
    """Lines for the end of a run: a few held-out examples, what the model answers, and the accuracy.

    ``metrics`` is the final validation report (``val_accuracy`` over every held-out example).
    """
    if data.kind == "text":
        return []
    lines = [f"held-out examples (greedy), first {min(n, len(data.val))} of {len(data.val):,}:"]
    if data.kind == "classify":
        from minilora import backend  # noqa: PLC0415
        from minilora.autograd import no_grad  # noqa: PLC0415
        from minilora.data import pad_examples  # noqa: PLC0415

        shown = data.val[:n]
        idx, mask, _ = pad_examples(shown, tokenizer, window, device)
        with no_grad():
            logits, _ = model(idx, attention_mask=mask)
        preds = backend.to_host(logits.data.argmax(axis=-1)).tolist()  # host: a few predictions to print
        for (text, label), pred in zip(shown, preds):
            mark = "ok" if pred == label else "WRONG"
            lines.append(f"  {text!r} -> {data.labels[pred]}  (expected {data.labels[label]}: {mark})")
        lines.append(f"accuracy on {len(data.val):,} held-out examples: {100 * metrics['val_accuracy']:.1f}%")
        return lines
    from minilora.train import greedy_samples  # noqa: PLC0415

    for prompt, expected, got in greedy_samples(model, tokenizer, data.val[:n], window, device):
        mark = "ok" if got == expected else "WRONG"
        lines.append(f"  {prompt.strip()!r} -> {got!r}  (expected {expected!r}: {mark})")
    lines.append(f"exact-match accuracy on {len(data.val):,} held-out examples: "
                 f"{100 * metrics['val_accuracy']:.1f}%")
    return lines
