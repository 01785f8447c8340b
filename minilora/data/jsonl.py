"""A user's own data as JSONL: one JSON object per line, in one of four shapes.

========================================  ==================================================  ================
line                                      trained as                                          loss on
========================================  ==================================================  ================
``{"text": ...}``                         language modelling (the texts, one per line)        every token
``{"prompt": ..., "completion": ...}``    ``"\\n" + prompt + completion + "\\n"``               the completion
``{"messages": [{"role", "content"}]}``   the chat template below                             assistant turns
``{"text": ..., "label": ...}``           sequence classification (``--task classify``)       the label
========================================  ==================================================  ================

The chat template is plain text (a character model has a small context: no special tokens)::

    System: You are terse.          <- optional, only as the first message
    User: What is 12+34?
    Assistant: 46                   <- trained: "46" and the newline that ends the turn

Each message becomes ``Role: content`` plus a newline, roles capitalised (``system``, ``user``,
``assistant``). The loss covers each assistant turn's content and its closing newline, so a model
learns to answer and to stop; generation ends at that newline. A conversation ends with an
assistant turn, and the answer held out for accuracy is its last one.

Every line must have the same shape; a line that is not a JSON object, has another shape, or
has a value of the wrong type is a one-line ``ValueError`` naming the file and the line number.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
SHAPES = {  # the keys of a line -> its kind
    frozenset({"text"}): "text",
    frozenset({"prompt", "completion"}): "completion",
    frozenset({"messages"}): "chat",
    frozenset({"text", "label"}): "classify",
}
Segments = list[tuple[str, bool]]  # (text, trained?) pieces of one example, in order


@dataclasses.dataclass
class JsonlData:
    """What a JSONL file holds: its ``kind`` and, per line, the fields that kind needs."""

    path: str
    kind: str  # "text" | "completion" | "chat" | "classify"
    records: list[dict[str, Any]]
    lines: list[int]  # the line number of each record (for errors)

    @property
    def text(self) -> str:
        """The texts joined by newlines ("text" files: what a language model trains on)."""
        return "".join(r["text"] + "\n" for r in self.records)

    def check_tokens(self, tokenizer: Any) -> None:
        """Every line's text encodes with ``tokenizer``: else a ValueError naming the line (an unknown character)."""
        for n, r in zip(self.lines, self.records):
            parts = [r.get("text"), r.get("prompt"), r.get("completion")]
            parts += [m["content"] for m in r.get("messages", ())]
            try:
                for part in parts:
                    if part is not None:
                        tokenizer.encode(part)
            except ValueError as exc:
                raise ValueError(f"{self.path}:{n}: {exc}") from None

    def examples(self) -> list[Segments]:
        """"completion" and "chat" files: each line's (text, trained?) segments."""
        if self.kind == "completion":
            return [completion_segments(r["prompt"], r["completion"]) for r in self.records]
        if self.kind == "chat":
            return [chat_segments(r["messages"]) for r in self.records]
        raise ValueError(f"{self.path}: a {self.kind!r} file has no prompt/answer examples")

    def labelled(self) -> tuple[list[tuple[str, int]], list[str]]:
        """"classify" files: ((text, label id) per line, label names in id order: sorted, as given)."""
        names = sorted({r["label"] for r in self.records}, key=lambda v: (isinstance(v, str), v))
        ids = {v: i for i, v in enumerate(names)}
        return [(r["text"], ids[r["label"]]) for r in self.records], [str(v) for v in names]


def completion_segments(prompt: str, completion: str) -> Segments:
    """``"\\n" + prompt`` (context) then ``completion + "\\n"`` (trained): the demo's completion format."""
    return [("\n" + prompt, False), (completion + "\n", True)]


def chat_segments(messages: list[dict[str, str]]) -> Segments:
    """The chat template (module docstring) as segments: each assistant turn's content + newline is trained."""
    segments: Segments = [("\n", False)]
    for m in messages:
        role = ROLES[m["role"]]
        if m["role"] == "assistant":
            segments += [(f"{role}: ", False), (m["content"] + "\n", True)]
        else:
            segments.append((f"{role}: {m['content']}\n", False))
    return segments


def split_answer(segments: Segments) -> tuple[str, str]:
    """(everything before the last trained segment, that segment without its closing newline): prompt and answer."""
    last = max(i for i, (_, trained) in enumerate(segments) if trained)
    return "".join(t for t, _ in segments[:last]), segments[last][0].removesuffix("\n")


def _check_line(obj: Any, kind: str | None, where: str) -> str:
    """The line's kind; ValueError naming ``where`` for anything else."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    shape = SHAPES.get(frozenset(obj))
    if shape is None:
        raise ValueError(f"{where}: keys {sorted(obj)} are not one of the accepted shapes "
                         '{"text"}, {"prompt", "completion"}, {"messages"}, {"text", "label"}')
    if kind is not None and shape != kind:
        raise ValueError(f"{where}: a {shape!r} line in a file of {kind!r} lines (every line must have one shape)")
    for key in ("text", "prompt", "completion"):
        if key in obj and not isinstance(obj[key], str):
            raise ValueError(f"{where}: {key!r} must be a string, got {type(obj[key]).__name__}")
    if shape == "classify" and (isinstance(obj["label"], bool) or not isinstance(obj["label"], (str, int))):
        raise ValueError(f"{where}: 'label' must be a string or an integer, got {obj['label']!r}")
    if shape == "chat":
        _check_messages(obj["messages"], where)
    return shape


def _check_messages(messages: Any, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list of {{\"role\", \"content\"}} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) != {"role", "content"} or not isinstance(m["content"], str):
            raise ValueError(f"{where}: messages[{i}] must be {{\"role\": ..., \"content\": \"...\"}}, got {m!r}")
        if m["role"] not in ROLES:
            raise ValueError(f"{where}: messages[{i}] has role {m['role']!r}; expected one of {sorted(ROLES)}")
        if m["role"] == "system" and i:
            raise ValueError(f"{where}: messages[{i}]: a system message may only come first")
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"{where}: the conversation must end with an assistant message (the trained answer)")


def is_jsonl(path: str | os.PathLike[str]) -> bool:
    """A .jsonl file, or any file whose first non-blank character is ``{``."""
    if str(path).endswith(".jsonl"):
        return True
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.read(4096).lstrip()
    return head.startswith("{")


def load_jsonl(path: str | os.PathLike[str]) -> JsonlData:
    """Read and check every line of a JSONL file (blank lines are skipped); see the module docstring."""
    records, lines, kind = [], [], None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            kind = _check_line(obj, kind, where)
            records.append(obj)
            lines.append(n)
    if kind is None:
        raise ValueError(f"{path}: no JSON lines")
    return JsonlData(str(path), kind, records, lines)

