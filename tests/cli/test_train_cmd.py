"""``minilora pretrain``, ``generate`` and ``eval``: a tiny end-to-end run, and every user mistake as one line."""

from __future__ import annotations

import json

import pytest

from minilora import backend
from minilora.cli import main

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--max-steps", "6", "--eval-interval", "3", "--eval-batches", "2", "--corpus-size", "200", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    assert main(["pretrain", *TINY, "--out-dir", str(out)]) == 0
    return out


def test_pretrain_writes_checkpoint_log_vocab_and_config(checkpoint, capsys):
    assert {"ckpt.npz", "metrics.jsonl", "vocab.json", "config.json"} <= {p.name for p in checkpoint.iterdir()}
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["n_embd"] == 16 and config["max_steps"] == 6 and config["vocab_size"] == 96


def test_generate_and_eval(checkpoint, capsys):
    ckpt = str(checkpoint / "ckpt.npz")
    assert main(["generate", "--checkpoint", ckpt, "--prompt", "The dog", "--max-new-tokens", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The dog") and len(out.rstrip("\n")) >= len("The dog") + 1
    assert main(["eval", "--checkpoint", ckpt, "--corpus", "arithmetic", "--corpus-size", "100"]) == 0
    assert "arithmetic: validation loss" in capsys.readouterr().out


def test_config_file_and_resume(checkpoint, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"max_steps": 8, "out_dir": str(checkpoint)}))
    assert main(["pretrain", *TINY[:-1], "--config", str(cfg), "--max-steps", "8", "--resume", "--no-progress"]) == 0
    assert "resuming from" in capsys.readouterr().out


def test_missing_and_corrupt_files(tmp_path, cli_error):
    line = cli_error(["generate", "--checkpoint", str(tmp_path / "nope.npz")])
    assert "nope.npz" in line
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    assert "bad.npz: not a checkpoint" in cli_error(["eval", "--checkpoint", str(bad)])
    assert "nope.json" in cli_error(["pretrain", "--config", str(tmp_path / "nope.json")])


def test_unknown_options(tmp_path, cli_error):
    assert "--learning-rate" in cli_error(["pretrain", "--learning-rate", "1"])
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"learning_rate": 0.1}))
    assert "unknown option(s) learning_rate" in cli_error(["pretrain", "--config", str(cfg)])
    assert "klingon" in cli_error(["pretrain", "--corpus", "klingon"])


def test_checkpoint_that_does_not_fit(checkpoint, cli_error):
    line = cli_error(["pretrain", *TINY[:5], "32", *TINY[6:], "--out-dir", str(checkpoint), "--resume"])
    assert "n_embd 16 in the checkpoint, 32 in the model" in line


def test_device_cuda_without_gpu(monkeypatch, cli_error):
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    line = cli_error(["pretrain", "--device", "cuda"])
    assert line.startswith("minilora: error: --device cuda:")
    assert cli_error(["generate", "--checkpoint", "x.npz", "--device", "cuda"])


def test_classifier_checkpoint_refused_by_generate(tmp_path, cli_error):
    import minilora
    from minilora import nn
    from minilora.data import CharTokenizer
    from minilora.train import save_checkpoint

    minilora.manual_seed(0)
    cfg = nn.GPTConfig(vocab_size=96, block_size=8, n_layer=1, n_head=2, n_embd=8)
    save_checkpoint(tmp_path / "clf.npz", nn.GPTForSequenceClassification(cfg, 2), tokenizer=CharTokenizer.default())
    line = cli_error(["generate", "--checkpoint", str(tmp_path / "clf.npz")])
    assert "GPTForSequenceClassification" in line


@pytest.mark.parametrize("family, cls", [("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM")])
def test_pretrain_finetune_generate_eval_on_the_llama_family(tmp_path, capsys, family, cls):
    out = tmp_path / "pre"
    assert main(["pretrain", *TINY, "--family", family, "--n-kv-head", "1", "--max-steps", "2", "--eval-interval",
                 "0", "--out-dir", str(out)]) == 0
    assert f"model: {cls} n_layer=1" in capsys.readouterr().out
    ckpt = str(out / "ckpt.npz")
    from minilora.train import load_checkpoint

    assert load_checkpoint(ckpt).meta["family"] == family
    for method in ("lora", "prefix"):
        assert main(["finetune", "--method", method, "--base", ckpt, "--data", "arithmetic", "--steps", "1",
                     "--batch-size", "2", "--eval-interval", "0", "--corpus-size", "40", "--virtual-tokens", "2",
                     "--out", str(tmp_path / method), "--no-progress"]) == 0
    assert main(["generate", "--checkpoint", ckpt, "--adapter", str(tmp_path / "lora"), "--prompt", "1+1=",
                 "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("1+1=")
    assert main(["eval", "--checkpoint", ckpt, "--corpus", "arithmetic", "--corpus-size", "40"]) == 0
    for method in ("lora", "prefix"):  # a Llama prefix takes positions: eval's windows leave it room, as finetune's
        assert main(["eval", "--checkpoint", ckpt, "--adapter", str(tmp_path / method), "--corpus", "arithmetic",
                     "--corpus-size", "40"]) == 0
        assert "validation loss" in capsys.readouterr().out


def test_unknown_family_and_gqa_mistakes(cli_error):
    assert "unknown model family 'bert'" in cli_error(["pretrain", *TINY, "--family", "bert"])
    assert "num_key_value_heads" in cli_error(["pretrain", *TINY, "--family", "llama", "--n-kv-head", "3"])


def test_generate_and_finetune_a_hugging_face_llama_folder(tmp_path, capsys):
    pytest.importorskip("tokenizers", reason="needs the hf extra: pip install 'minilora[hf]'")
    from pathlib import Path

    folder = str(Path(__file__).parents[1] / "hf" / "fixtures" / "llama")  # written by transformers, bf16
    assert main(["generate", "--base", folder, "--prompt", "the fox", "--max-new-tokens", "4",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("the fox")
    assert main(["finetune", "--method", "lora", "--base", folder, "--data", "arithmetic", "--steps", "1",
                 "--batch-size", "2", "--eval-interval", "0", "--corpus-size", "40", "--out", str(tmp_path / "a"),
                 "--no-progress"]) == 0
    assert main(["generate", "--base", folder, "--adapter", str(tmp_path / "a"), "--prompt", "1+1=",
                 "--max-new-tokens", "2", "--temperature", "0"]) == 0
