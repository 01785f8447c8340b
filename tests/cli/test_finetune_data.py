"""``minilora finetune --data``: JSONL shapes, built-in answers, --task classify, --format peft, the end-of-run
report; ``minilora eval --adapter``; ``generate --top-p/--stop/--eos-id``; ``--version``."""

from __future__ import annotations

import json

import pytest

from minilora.cli import main
from minilora.data import DEFAULT_CHARS

FT = ["--steps", "2", "--batch-size", "2", "--eval-interval", "0", "--no-progress"]


def jsonl(tmp_path, rows, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(p)


CHAT = [{"messages": [{"role": "user", "content": f"{i}+1?"}, {"role": "assistant", "content": str(i + 1)}]}
        for i in range(20)]


@pytest.mark.parametrize("rows, shows", [
    ([{"prompt": f"{i}+1=", "completion": str(i + 1)} for i in range(20)], "'18+1=' -> "),
    (CHAT, "'User: 18+1?\\nAssistant:' -> "),
    ([{"text": f"line {i}"} for i in range(80)], "(language modelling)"),
])  # fmt: skip
def test_jsonl_shapes_train_and_report(tiny_base, tmp_path, capsys, rows, shows):
    data = jsonl(tmp_path, rows)
    assert main(["finetune", "--method", "lora", "--base", tiny_base, "--data", data, *FT,
                 "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert shows in out
    if "completion" in rows[0] or "messages" in rows[0]:
        assert "(expected '19': " in out and "exact-match accuracy on 2 held-out examples: " in out


def test_builtin_corpus_with_answers_reports_accuracy_then_eval_adapter_agrees(tiny_base, tmp_path, capsys):
    out = str(tmp_path / "a")
    args = ["--data", "arithmetic", "--corpus-size", "40"]
    assert main(["finetune", "--method", "lora", "--base", tiny_base, *args, *FT, "--out", out]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("exact-match accuracy on 4 held-out examples: ")
    assert main(["eval", "--checkpoint", tiny_base, "--adapter", out, *args]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == last


def test_classify_saves_a_classifier_adapter_that_eval_reloads(tiny_base, tmp_path, capsys, cli_error):
    rows = [{"text": "good fun" if i % 2 else "bad dull", "label": "pos" if i % 2 else "neg"} for i in range(40)]
    data, out = jsonl(tmp_path, rows), str(tmp_path / "c")
    assert main(["finetune", "--method", "lora", "--task", "classify", "--base", tiny_base, "--data", data, *FT,
                 "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "2 labels (neg, pos)" in printed and "accuracy on 4 held-out examples: " in printed
    meta = json.loads((tmp_path / "c" / "adapter_config.json").read_text())
    assert meta["base_model"]["num_classes"] == 2 and "score" in meta["config"]["modules_to_save"]
    assert json.loads((tmp_path / "c" / "labels.json").read_text()) == {"labels": ["neg", "pos"]}
    assert main(["eval", "--checkpoint", tiny_base, "--adapter", out, "--data", data]) == 0
    assert printed.strip().splitlines()[-1] == capsys.readouterr().out.strip().splitlines()[-1]
    assert "add --task classify" in cli_error(["finetune", "--method", "lora", "--base", tiny_base, "--data", data,
                                               *FT])
    assert "needs --data" in cli_error(["eval", "--checkpoint", tiny_base, "--adapter", out])


def test_bad_jsonl_line_is_one_line_error_with_its_number(tiny_base, tmp_path, cli_error):
    data = jsonl(tmp_path, [{"text": "a"}, {"input": "b"}])
    assert "d.jsonl:2: keys ['input'] are not one of the accepted shapes" in cli_error(
        ["finetune", "--method", "lora", "--base", tiny_base, "--data", data, *FT])


def test_format_peft_writes_peft_files(tiny_base, tmp_path, capsys):
    pytest.importorskip("safetensors")
    out = tmp_path / "p"
    assert main(["finetune", "--method", "lora", "--base", tiny_base, "--data", "arithmetic", "--corpus-size", "40",
                 *FT, "--format", "peft", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert "(Hugging Face PEFT format)" in capsys.readouterr().out


def test_generate_top_p_stop_and_eos(tiny_base, capsys, cli_error):
    gen = ["generate", "--checkpoint", tiny_base, "--prompt", "ab", "--max-new-tokens", "30", "--seed", "3"]
    assert main([*gen, "--top-p", "0.9"]) == 0
    full = capsys.readouterr().out.rstrip("\n")
    assert full.startswith("ab") and len(full) == 32
    stop = full[5]
    assert main([*gen, "--top-p", "0.9", "--stop", stop]) == 0
    assert capsys.readouterr().out.rstrip("\n") == full[: full.index(stop, 2)]
    assert main([*gen, "--temperature", "0", "--top-k", "0"]) == 0
    greedy = capsys.readouterr().out.rstrip("\n")
    new = greedy[2:]
    eos = DEFAULT_CHARS.index(new[-1])
    assert main([*gen, "--temperature", "0", "--eos-id", str(eos)]) == 0
    assert capsys.readouterr().out.rstrip("\n") == "ab" + new[: new.index(new[-1])]
    assert "--top-p must be in (0, 1]" in cli_error([*gen, "--top-p", "0"])
    assert "outside the vocabulary" in cli_error([*gen, "--eos-id", "9999"])


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("minilora 0.")
