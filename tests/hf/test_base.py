"""A Hugging Face GPT-2 folder as a base: load_base, `minilora generate --base`, `minilora finetune --base`."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="needs the hf extra: pip install 'minilora[hf]'")
pytest.importorskip("tokenizers", reason="needs the hf extra: pip install 'minilora[hf]'")

import minilora as ml  # noqa: E402
from minilora.cli import COMMANDS, main  # noqa: E402
from minilora.hf import GPT2Tokenizer, load_base, save_pretrained  # noqa: E402
from minilora.nn import GPT, GPTConfig  # noqa: E402
from minilora.peft import load_adapter  # noqa: E402


@pytest.fixture
def gpt2_folder(tmp_path, bpe_folder):
    """A complete tiny GPT-2 folder: config.json, model.safetensors, vocab.json, merges.txt."""
    ml.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=262, block_size=32, n_layer=2, n_head=2, n_embd=16))
    folder = tmp_path / "tiny-gpt2"
    save_pretrained(model, folder)
    for f in ("vocab.json", "merges.txt"):
        (folder / f).write_bytes((bpe_folder / f).read_bytes())
    return folder


def test_load_base_reads_a_gpt2_folder_with_its_tokenizer(gpt2_folder):
    model, tok = load_base(gpt2_folder)
    assert isinstance(model, GPT) and isinstance(tok, GPT2Tokenizer)
    assert model.config.vocab_size == tok.vocab_size == 262 and model.name_or_path == str(gpt2_folder)


def test_generate_from_a_gpt2_folder(gpt2_folder, capsys):
    argv = ["generate", "--base", str(gpt2_folder), "--prompt", "hello the", "--max-new-tokens", "6",
            "--temperature", "0"]  # fmt: skip
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.startswith("hello the") and len(first) > len("hello the")
    assert main(argv) == 0 and capsys.readouterr().out == first  # greedy: the same text again
    model, tok = load_base(gpt2_folder)
    ids = model.generate(tok.encode("hello the")[None, :], 6, temperature=0)
    assert first.rstrip("\n") == tok.decode(ids[0]).rstrip("\n")


def test_a_gpt2_folder_without_tokenizer_or_with_a_bad_config_is_one_clear_line(gpt2_folder, capsys):
    (gpt2_folder / "merges.txt").unlink()
    assert main(["generate", "--base", str(gpt2_folder)]) == 2
    err = capsys.readouterr().err
    assert "no tokenizer" in err and str(gpt2_folder) in err and "Traceback" not in err
    (gpt2_folder / "tokenizer.json").write_text("{}")
    cfg = json.loads((gpt2_folder / "config.json").read_text())
    (gpt2_folder / "config.json").write_text(json.dumps({**cfg, "activation_function": "relu"}))
    assert main(["generate", "--base", str(gpt2_folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "minilora: error:" in err


@pytest.mark.skipif("finetune" not in COMMANDS, reason="the finetune command is not registered in this tree")
def test_finetune_lora_on_a_gpt2_folder_then_generate_with_the_adapter(gpt2_folder, tmp_path, capsys):
    text = tmp_path / "train.txt"
    text.write_text("hello the world. " * 200)
    out = tmp_path / "adapter"
    argv = ["finetune", "--base", str(gpt2_folder), "--method", "lora", "--data", str(text), "--out", str(out),
            "--steps", "3", "--batch-size", "2", "--rank", "2", "--eval-interval", "3", "--no-progress"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    gen = ["generate", "--base", str(gpt2_folder), "--prompt", "the", "--max-new-tokens", "3", "--temperature", "0"]
    assert main([*gen, "--adapter", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("the")
    # the same adapter exported in PEFT's format generates the same text (load_adapter detects the format)
    model, _ = load_base(gpt2_folder)
    load_adapter(model, str(out)).save_adapter(str(tmp_path / "peft"), format="peft")
    assert main([*gen, "--adapter", str(tmp_path / "peft")]) == 0
    assert capsys.readouterr().out == text


def test_a_pickle_only_folder_is_refused_in_one_line(gpt2_folder, capsys):
    (gpt2_folder / "model.safetensors").rename(gpt2_folder / "pytorch_model.bin")
    assert main(["generate", "--base", str(gpt2_folder)]) == 2
    err = capsys.readouterr().err
    assert "pytorch_model.bin" in err and "safetensors" in err and err.count("\n") == 1


def test_save_pretrained_with_the_tokenizer_and_token_ids_round_trips(gpt2_folder, tmp_path):
    cfg = json.loads((gpt2_folder / "config.json").read_text())
    (gpt2_folder / "config.json").write_text(json.dumps({**cfg, "bos_token_id": 261, "eos_token_id": 261}))
    model, tok = load_base(gpt2_folder)
    save_pretrained(model, tmp_path / "copy", tokenizer=tok)
    saved = json.loads((tmp_path / "copy" / "config.json").read_text())
    assert saved["bos_token_id"] == saved["eos_token_id"] == 261 == tok.eos_token_id
    model2, tok2 = load_base(tmp_path / "copy")  # tokenizer.json this time
    assert tok2 == tok and (tmp_path / "copy" / "tokenizer.json").is_file()
    with ml.no_grad():
        np.testing.assert_array_equal(model2(tok.encode("hello the")[None])[0].numpy(),
                                      model(tok.encode("hello the")[None])[0].numpy())  # fmt: skip
