"""JSONL data: the four shapes, the chat template, and one-line errors naming the line."""

from __future__ import annotations

import json

import pytest

from minilora.data import CharTokenizer
from minilora.data.jsonl import load_jsonl, split_answer


def write(tmp_path, rows, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return p


def test_shapes_are_detected(tmp_path):
    assert load_jsonl(write(tmp_path, [{"text": "ab"}, "", {"text": "c"}])).text == "ab\nc\n"
    d = load_jsonl(write(tmp_path, [{"prompt": "1+1=", "completion": "2"}]))
    assert d.kind == "completion" and d.examples() == [[("\n1+1=", False), ("2\n", True)]]
    assert split_answer(d.examples()[0]) == ("\n1+1=", "2")
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    d = load_jsonl(write(tmp_path, [{"messages": chat}]))
    assert d.kind == "chat" and split_answer(d.examples()[0]) == ("\nSystem: s\nUser: u\nAssistant: ", "a")
    d = load_jsonl(write(tmp_path, [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]))
    assert d.kind == "classify" and d.labelled() == ([("good", 1), ("bad", 0)], ["neg", "pos"])


@pytest.mark.parametrize("rows, message", [
    ([{"text": "a"}, {"prompt": "p"}], r"d.jsonl:2: keys \['prompt'\] are not one of the accepted shapes"),
    ([{"text": "a"}, {"prompt": "p", "completion": "c"}], "d.jsonl:2: a 'completion' line in a file of 'text'"),
    ([{"text": "a"}, "{oops"], "d.jsonl:2: not valid JSON"),
    (["[1, 2]"], "d.jsonl:1: expected a JSON object, got list"),
    ([{"text": 3}], "d.jsonl:1: 'text' must be a string"),
    ([{"messages": [{"role": "user", "content": "u"}]}], "d.jsonl:1: the conversation must end with an assistant"),
    ([{"messages": [{"role": "bot", "content": "u"}]}], "d.jsonl:1: messages\\[0\\] has role 'bot'"),
    ([{"text": "t", "label": 1.5}], "d.jsonl:1: 'label' must be a string or an integer"),
    ([""], "no JSON lines"),
])  # fmt: skip
def test_bad_lines_are_one_line_errors_with_the_line_number(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message) as info:
        load_jsonl(write(tmp_path, rows))
    assert "\n" not in str(info.value)


def test_unknown_characters_name_the_line(tmp_path):
    d = load_jsonl(write(tmp_path, [{"text": "ok"}, {"text": "caf\u00e9"}]))
    with pytest.raises(ValueError, match=r"d.jsonl:2: CharTokenizer.encode: character 'é'"):
        d.check_tokens(CharTokenizer.default())
