"""The catalogue of bad inputs: each is refused with one line that names the problem, and changes nothing.

Every CLI case runs ``minilora`` in-process and asserts exit status 2, exactly one ``minilora: error:`` line
on stderr (no traceback) containing the expected words, and that no file under the test's folder changed
(SHA-256 of every file before and after). Every API case asserts the exception, the words, a one-line
message, and that the model it was given is bit-identical afterwards (minilora.testing.digest).
"""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import minilora as ml
from minilora import nn, peft
from minilora.cli import main
from minilora.testing.digest import model_digest, tree_digest

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--max-steps", "2", "--eval-interval", "0", "--eval-batches", "1", "--corpus-size", "100", "--no-progress"]
FT = ["--data", "arithmetic", "--corpus-size", "60", "--steps", "2", "--batch-size", "2", "--eval-interval", "0",
      "--no-progress"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny pretrained run, a LoRA adapter in both formats, and a folder for the bad files."""
    root = tmp_path_factory.mktemp("catalogue")
    run = root / "run"
    assert main(["pretrain", *TINY, "--out-dir", str(run)]) == 0
    ckpt = str(run / "ckpt.npz")
    adapter = root / "adapter"
    assert main(["finetune", "--method", "lora", "--base", ckpt, *FT, "--rank", "2", "--out", str(adapter)]) == 0
    from minilora.train import build_model, load_checkpoint

    base = build_model(load_checkpoint(ckpt))
    peft_dir = root / "peft"
    peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=("c_attn",))).save_adapter(str(peft_dir),
                                                                                           format="peft")
    (root / "bad").mkdir()
    return SimpleNamespace(root=root, run=run, ckpt=ckpt, adapter=adapter, peft=peft_dir, bad=root / "bad")


# ----------------------------------------------------------------------------- bad files, made per case
def _npz(path):
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def bad_ckpt(w, name, meta=None, arrays=None):
    """A copy of the run's checkpoint with its meta and/or arrays edited."""
    a = _npz(w.ckpt)
    m = json.loads(a["meta"].tobytes())
    m = meta(m) if meta else m
    if arrays:
        arrays(a)
    a["meta"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    out = w.bad / f"{name}.npz"
    np.savez(out, **a)
    return str(out)


def _set(d, **kv):
    d.update(kv)
    return d


def bad_adapter(w, name, config=None, arrays=None, src=None, drop=()):
    """A copy of an adapter folder with its adapter_config.json and/or arrays edited."""
    out = w.bad / name
    shutil.copytree(src or w.adapter, out)
    cfg = out / "adapter_config.json"
    if config is not None:
        text = config(json.loads(cfg.read_text()))
        cfg.write_text(text if isinstance(text, str) else json.dumps(text))
    if arrays is not None:
        a = _npz(out / "adapter_model.npz")
        arrays(a)
        np.savez(out / "adapter_model.npz", **a)
    for f in drop:
        (out / f).unlink()
    return str(out)


def _first_float(a, value):
    k = next(k for k in sorted(a) if k.startswith("model.") and a[k].dtype.kind == "f")
    a[k] = a[k].copy()
    a[k].flat[0] = value


def _meta_config(key, value):
    return lambda m: {**m, "config": {**m["config"], key: value}}


def _bomb(w, name):
    out = w.bad / f"{name}.npz"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("model.w.npy", "w") as f:
        np.lib.format.write_array(f, np.zeros(4_000_000, np.float32))  # 16 MB declared, a few KB on disk
    return str(out)


def _text(w, name, data: bytes):
    out = w.bad / name
    out.write_bytes(data)
    return str(out)


def _peft_int(w, name):
    from safetensors.numpy import load_file, save_file

    out = w.bad / name
    shutil.copytree(w.peft, out)
    t = load_file(str(out / "adapter_model.safetensors"))
    save_file({k: (v * 100).astype(np.int32) for k, v in t.items()}, str(out / "adapter_model.safetensors"))
    return str(out)


def gen(path_or_fn, *extra):
    return lambda w: ["generate", "--checkpoint", path_or_fn(w) if callable(path_or_fn) else path_or_fn(w),
                      "--max-new-tokens", "3", *extra]


def gen_adapter(make, *extra):
    return lambda w: ["generate", "--checkpoint", w.ckpt, "--adapter", make(w), "--max-new-tokens", "3", *extra]


def pre(*flags):
    return lambda w: ["pretrain", *TINY, "--out-dir", str(w.bad / "never"), *flags]


def pre_config(name, obj, raw=None):
    def make(w):
        path = _text(w, name, raw if raw is not None else json.dumps(obj).encode())
        return ["pretrain", *TINY, "--out-dir", str(w.bad / "never"), "--config", path]

    return make


def ft(*flags, out=None):
    return lambda w: ["finetune", "--method", "lora", "--base", w.ckpt, *FT, *flags,
                      "--out", out(w) if out else str(w.bad / "never")]


def ev(*flags):
    return lambda w: ["eval", "--checkpoint", w.ckpt, "--corpus-size", "50", *flags]


def _resume_copy(w, name):
    out = w.bad / name
    shutil.copytree(w.run, out)
    return str(out)


CLI_CASES = {
    # non-finite and out-of-range options
    "pretrain --lr nan": (pre("--lr", "nan"), "finite number"),
    "pretrain --lr inf": (pre("--lr", "inf"), "finite number"),
    "pretrain --grad-clip nan": (pre("--grad-clip", "nan"), "finite number"),
    "pretrain --lr -1": (pre("--lr", "-1"), "lr must be >= 0"),
    "pretrain --batch-size 0": (pre("--batch-size", "0"), "batch_size"),
    "pretrain --max-steps 0": (pre("--max-steps", "0"), "max_steps"),
    "pretrain --warmup-steps -1": (pre("--warmup-steps", "-1"), "warmup_steps"),
    "pretrain --dropout 1.5": (pre("--dropout", "1.5"), "dropout"),
    "pretrain --n-embd 15": (pre("--n-embd", "15"), "divisible"),
    "pretrain --device tpu": (pre("--device", "tpu"), "device"),
    "pretrain --val-fraction 2": (pre("--val-fraction", "2"), "fraction"),
    "pretrain --corpus nope": (pre("--corpus", "nope"), "nope"),
    "pretrain --text-file not UTF-8": (lambda w: pre("--text-file", _text(w, "latin1.txt", b"caf\xe9 " * 50))(w),
                                       "UTF-8"),
    "pretrain --text-file missing": (pre("--text-file", "/nonexistent/text.txt"), "/nonexistent/text.txt"),
    "finetune --alpha nan": (ft("--alpha", "nan"), "finite number"),
    "finetune --lr -1": (ft("--lr", "-1"), "lr must be >= 0"),
    "finetune --rank 0": (ft("--rank", "0"), "LoraConfig.r"),
    "finetune --dropout 1": (ft("--dropout", "1"), "lora_dropout"),
    "finetune --targets q_proj": (ft("--targets", "q_proj"), "q_proj"),
    "finetune --method bitfit": (lambda w: ["finetune", "--method", "bitfit", "--base", w.ckpt, *FT], "bitfit"),
    "finetune --data not UTF-8": (lambda w: ["finetune", "--method", "lora", "--base", w.ckpt, "--data",
                                             _text(w, "ft-latin1.txt", b"\xff\xfe" * 300), "--steps", "1"], "UTF-8"),
    "finetune --out an existing file": (ft(out=lambda w: _text(w, "a-file", b"x")), "--out"),
    "finetune prompt --virtual-tokens 16": (lambda w: ["finetune", "--method", "prompt", "--base", w.ckpt, *FT,
                                                       "--virtual-tokens", "16"], "--virtual-tokens"),
    "finetune --format peft --method ia3": (lambda w: ["finetune", "--method", "ia3", "--base", w.ckpt, *FT,
                                                       "--format", "peft", "--out", str(w.bad / "never")],
                                            "--format peft"),
    "finetune --global-batch-size -1": (ft("--global-batch-size", "-1"), "global_batch_size"),
    "finetune --steps 0": (ft("--steps", "0"), "max_steps"),
    "finetune --task classify, no labels": (lambda w: ["finetune", "--method", "lora", "--base", w.ckpt, "--data",
                                                       "english", "--task", "classify", "--steps", "1", "--out",
                                                       str(w.bad / "never")], "labels"),
    "eval --adapter missing": (ev("--adapter", "/nonexistent/adapter"), "/nonexistent/adapter"),
    "finetune --base missing": (lambda w: ["finetune", "--method", "lora", "--base", "/nonexistent.npz", *FT],
                                "/nonexistent.npz"),
    "generate --temperature nan": (gen(lambda w: w.ckpt, "--temperature", "nan"), "finite number"),
    "generate --top-k -1": (gen(lambda w: w.ckpt, "--top-k", "-1"), "--top-k"),
    "generate --top-p 1.5": (gen(lambda w: w.ckpt, "--top-p", "1.5"), "--top-p"),
    "generate --top-p nan": (gen(lambda w: w.ckpt, "--top-p", "nan"), "finite number"),
    "generate --eos-id 1000": (gen(lambda w: w.ckpt, "--eos-id", "1000"), "--eos-id"),
    "generate --max-new-tokens -1": (gen(lambda w: w.ckpt, "--max-new-tokens", "-1"), "--max-new-tokens"),
    "generate --prompt unknown char": (gen(lambda w: w.ckpt, "--prompt", "\u00e9t\u00e9"), "--prompt"),
    "eval --max-batches 0": (ev("--max-batches", "0"), "--max-batches"),
    "eval --batch-size 0": (ev("--batch-size", "0"), "--batch-size"),
    "eval --val-fraction 0": (ev("--val-fraction", "0"), "--val-fraction"),
    "demo --cache-dir a file": (lambda w: ["demo", "--quick", "--cache-dir", _text(w, "cache-file", b"x"),
                                           "--out", str(w.bad / "never")], "--cache-dir"),
    "demo --methods bogus": (lambda w: ["demo", "--quick", "--methods", "bogus", "--out", str(w.bad / "never")],
                             "bogus"),
    "demo --steps 0": (lambda w: ["demo", "--steps", "0", "--out", str(w.bad / "never")], "steps"),
    # --config files
    "--config not UTF-8": (pre_config("cfg-latin1.json", None, raw=b'{"lr": "\xe9"}'), "UTF-8"),
    "--config not JSON": (pre_config("cfg-bad.json", None, raw=b"{lr: 1"), "not valid JSON"),
    "--config a list": (pre_config("cfg-list.json", [1, 2]), "JSON object"),
    "--config unknown key": (pre_config("cfg-unknown.json", {"learning_rate": 1}), "learning_rate"),
    "--config max_steps '5'": (pre_config("cfg-str.json", {"max_steps": "5"}), "'max_steps'"),
    "--config max_steps 3.7": (pre_config("cfg-float.json", {"max_steps": 3.7}), "'max_steps'"),
    "--config bias 'no'": (pre_config("cfg-bias.json", {"bias": "no"}), "'bias'"),
    "--config lr NaN": (pre_config("cfg-nan.json", None, raw=b'{"lr": NaN}'), "'lr'"),
    "--config val_fraction '0.1'": (pre_config("cfg-vf.json", {"val_fraction": "0.1"}), "'val_fraction'"),
    # the run folder
    "pretrain into a non-empty out-dir": (lambda w: ["pretrain", *TINY, "--out-dir", str(w.run)], "--resume"),
    "pretrain --resume, checkpoint step 'abc'": (
        lambda w: ["pretrain", *TINY, "--resume", "--out-dir", str(_resume_step_abc(w))], "'step'"),
    "pretrain --overwrite, lr 1e39 overflows at step 1": (
        lambda w: ["pretrain", *TINY, "--overwrite", "--lr", "1e39", "--out-dir", _resume_copy(w, "run-copy")],
        "step 1: the update left non-finite values"),
    # checkpoints
    "checkpoint missing": (gen(lambda w: "/nonexistent/ckpt.npz"), "/nonexistent/ckpt.npz"),
    "checkpoint not a zip": (gen(lambda w: _text(w, "not-a-zip.npz", b"hello")), "not a checkpoint"),
    "checkpoint compressed bomb, no meta": (gen(lambda w: _bomb(w, "bomb")), "'meta'"),
    "checkpoint meta a list": (gen(lambda w: bad_ckpt(w, "meta-list", meta=lambda m: [m])), "JSON object"),
    "checkpoint weights 5": (gen(lambda w: bad_ckpt(w, "weights5", meta=lambda m: _set(m, weights=5))),
                             "'weights'"),
    "checkpoint version 'x'": (gen(lambda w: bad_ckpt(w, "version", meta=lambda m: _set(m, version="x"))),
                               "'version'"),
    "checkpoint step 'abc'": (gen(lambda w: bad_ckpt(w, "step", meta=lambda m: _set(m, step="abc"))), "'step'"),
    "checkpoint rng missing": (gen(lambda w: bad_ckpt(w, "rng", meta=lambda m: {k: v for k, v in m.items()
                                                                                 if k != "rng"})), "'rng'"),
    "checkpoint bad tokenizer": (gen(lambda w: bad_ckpt(w, "tok", meta=lambda m: _set(
        m, tokenizer={"type": "char", "chars": "aa"}))), "tokenizer"),
    "checkpoint too small tokenizer": (gen(lambda w: bad_ckpt(w, "tok-small", meta=lambda m: _set(
        m, tokenizer={"type": "char", "chars": "abc"}))), "tokenizer"),
    "checkpoint NaN weight": (gen(lambda w: bad_ckpt(w, "nan", arrays=lambda a: _first_float(a, np.nan))),
                              "non-finite"),
    "checkpoint tied copies disagree": (gen(lambda w: bad_ckpt(w, "tied", arrays=_untie)), "tied"),
    "checkpoint wrong shape": (gen(lambda w: bad_ckpt(w, "shape", arrays=_reshape_first)), "shape"),
    # adapters (minilora format)
    "adapter config a JSON list": (gen_adapter(lambda w: bad_adapter(w, "a-list", config=lambda d: [d])),
                                   "JSON object"),
    "adapter config invalid JSON": (gen_adapter(lambda w: bad_adapter(w, "a-json", config=lambda d: "{oops")),
                                    "not valid JSON"),
    "adapter config: 'x'": (gen_adapter(lambda w: bad_adapter(w, "a-cfg", config=lambda d: _set(d, config="x"))),
                            "'config'"),
    "adapter version '1'": (gen_adapter(lambda w: bad_adapter(w, "a-ver", config=lambda d: _set(d, version="1"))),
                            "'version'"),
    "adapter lora_alpha '16'": (gen_adapter(lambda w: bad_adapter(w, "a-alpha", config=_meta_config(
        "lora_alpha", "16"))), "lora_alpha"),
    "adapter target_modules 5": (gen_adapter(lambda w: bad_adapter(w, "a-tm", config=_meta_config(
        "target_modules", 5))), "target_modules"),
    "adapter unknown method": (gen_adapter(lambda w: bad_adapter(w, "a-kind", config=_meta_config(
        "peft_type", "BITFIT"))), "BITFIT"),
    "adapter NaN weight": (gen_adapter(lambda w: bad_adapter(w, "a-nan", arrays=lambda a: _poke(a, np.nan))),
                           "non-finite"),
    "adapter int tensor": (gen_adapter(lambda w: bad_adapter(w, "a-int", arrays=_to_int, config=_int_dtypes)),
                           "floating point"),
    "adapter weights missing": (gen_adapter(lambda w: bad_adapter(w, "a-noweights", drop=["adapter_model.npz"])),
                                "adapter_model.npz"),
    "adapter folder missing": (gen_adapter(lambda w: str(w.bad / "no-such-adapter")), "no-such-adapter"),
    # adapters (PEFT format and auto-detection)
    "peft config lacks peft_type, no weights": (gen_adapter(lambda w: bad_adapter(
        w, "p-notype", src=w.peft, config=lambda d: {k: v for k, v in d.items() if k != "peft_type"},
        drop=["adapter_model.safetensors"])), "peft_type"),
    "peft unsupported method": (gen_adapter(lambda w: bad_adapter(w, "p-prefix", src=w.peft, config=lambda d: _set(
        d, peft_type="PREFIX_TUNING"))), "PREFIX_TUNING"),
    "peft only adapter_model.bin": (gen_adapter(lambda w: _bin_only(w)), "pickle"),
    "peft lora_alpha '8'": (gen_adapter(lambda w: bad_adapter(w, "p-alpha", src=w.peft, config=lambda d: _set(
        d, lora_alpha="8"))), "lora_alpha"),
    "peft config a list": (gen_adapter(lambda w: bad_adapter(w, "p-list", src=w.peft, config=lambda d: [d])),
                           "JSON object"),
    "peft int tensors": (gen_adapter(lambda w: _peft_int(w, "p-int")), "floating point"),
    "peft rank mismatch": (gen_adapter(lambda w: bad_adapter(w, "p-r", src=w.peft, config=lambda d: _set(d, r=3))),
                           "r=3"),
}


def _resume_step_abc(w):
    out = Path(_resume_copy(w, "run-step"))
    a = _npz(out / "ckpt.npz")
    m = json.loads(a["meta"].tobytes())
    m["step"] = "abc"
    a["meta"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    np.savez(out / "ckpt.npz", **a)
    return out


def _untie(a):
    a["model.lm_head.weight"] = a["model.transformer.wte.weight"] + 1.0


def _reshape_first(a):
    a["model.transformer.wpe.weight"] = a["model.transformer.wpe.weight"][:-1]


def _poke(a, value):
    k = sorted(a)[0]
    a[k] = a[k].copy()
    a[k].flat[0] = value


def _to_int(a):
    k = sorted(a)[0]
    a[k] = (a[k] * 100).astype(np.int64)


def _int_dtypes(d):
    k = sorted(d["weights"])[0]
    d["weights"][k]["dtype"] = "<i8"
    return d


def _bin_only(w):
    out = Path(bad_adapter(w, "p-bin", src=w.peft, drop=["adapter_model.safetensors"]))
    (out / "adapter_model.bin").write_bytes(b"\x80\x04 pickle")
    return str(out)


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_refuses_in_one_line_and_changes_no_file(world, name, capsys):
    make, expect = CLI_CASES[name]
    argv = make(world)
    capsys.readouterr()
    before = tree_digest(world.root)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("minilora"), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert "trainable params" not in captured.out  # refused before any training, not after it
    assert expect.lower() in lines[0].lower(), lines[0]
    assert tree_digest(world.root) == before


# ----------------------------------------------------------------------------- the API
def _gpt():
    ml.manual_seed(0)
    return nn.GPT(nn.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))


def _cfg(**kw):
    return {"vocab_size": 11, "block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 8, **kw}


def _train(**kw):
    from minilora.train import TrainConfig

    return TrainConfig(**kw)


def _save_nan_checkpoint(model, tmp):
    from minilora.train import save_checkpoint

    path = tmp / "good.npz"
    save_checkpoint(path, model)
    before = path.read_bytes()
    model.lm_head.weight.data = model.lm_head.weight.data * np.float32("nan")
    try:
        save_checkpoint(path, model)
    finally:
        assert path.read_bytes() == before  # the good checkpoint was not replaced


API_CASES = {
    "GPTConfig(layer_norm_epsilon=-1)": (lambda m, t: nn.GPTConfig(**_cfg(layer_norm_epsilon=-1)),
                                         "layer_norm_epsilon"),
    "GPTConfig(layer_norm_epsilon=nan)": (lambda m, t: nn.GPTConfig(**_cfg(layer_norm_epsilon=math.nan)),
                                          "layer_norm_epsilon"),
    "GPTConfig(bias='no')": (lambda m, t: nn.GPTConfig(**_cfg(bias="no")), "bias"),
    "GPTConfig(n_layer=2.0)": (lambda m, t: nn.GPTConfig(**_cfg(n_layer=2.0)), "n_layer"),
    "GPTConfig(dropout=nan)": (lambda m, t: nn.GPTConfig(**_cfg(dropout=math.nan)), "dropout"),
    "TrainConfig(max_steps=3.7)": (lambda m, t: _train(max_steps=3.7), "max_steps"),
    "TrainConfig(lr=nan)": (lambda m, t: _train(lr=math.nan), "lr"),
    "TrainConfig(lr=inf)": (lambda m, t: _train(lr=math.inf), "lr"),
    "TrainConfig(beta1=1.0)": (lambda m, t: _train(beta1=1.0), "beta1"),
    "TrainConfig(progress='yes')": (lambda m, t: _train(progress="yes"), "progress"),
    "LoraConfig(lora_alpha='16')": (lambda m, t: peft.LoraConfig(lora_alpha="16"), "lora_alpha"),
    "LoraConfig(lora_alpha=nan)": (lambda m, t: peft.LoraConfig(lora_alpha=math.nan), "lora_alpha"),
    "LoraConfig(target_modules=5)": (lambda m, t: peft.LoraConfig(target_modules=5), "target_modules"),
    "LoraConfig(use_dora='yes')": (lambda m, t: peft.LoraConfig(use_dora="yes"), "use_dora"),
    "LoraConfig(r=2.5)": (lambda m, t: peft.LoraConfig(r=2.5), "LoraConfig.r"),
    "AdapterConfig(bottleneck='4')": (lambda m, t: peft.AdapterConfig(bottleneck="4"), "bottleneck"),
    "Linear(-1, 3)": (lambda m, t: nn.Linear(-1, 3), "in_features"),
    "generate with 1-D ids": (lambda m, t: m.generate(np.array([1, 2, 3]), 2), "idx"),
    "decode an id outside the vocabulary": (lambda m, t: _char_tok().decode([999]), "999"),
    "get_peft_model, targets match nothing": (lambda m, t: peft.get_peft_model(
        m, peft.LoraConfig(target_modules=("q_proj",))), "q_proj"),
    "get_peft_model, bad modules_to_save": (lambda m, t: peft.get_peft_model(
        m, peft.LoraConfig(modules_to_save=("nope",))), "nope"),
    "get_peft_model, qlora and bad modules_to_save": (lambda m, t: peft.get_peft_model(
        m, peft.LoraConfig(quantize=True, quant_block_size=16, modules_to_save=("nope",))), "nope"),
    "get_peft_model, a string config": (lambda m, t: peft.get_peft_model(m, "lora"), "PeftConfig"),
    "quantize_model(block_size=0)": (lambda m, t: peft.quantize_model(m, block_size=0), "block_size"),
    "quantize_model(targets nope)": (lambda m, t: peft.quantize_model(m, ("nope",)), "nope"),
    "load_adapter, no folder": (lambda m, t: peft.load_adapter(m, str(t / "none")), "No such adapter"),
    "save_checkpoint with NaN weights": (lambda m, t: _save_nan_checkpoint(_gpt(), t), "non-finite"),
}


def _llama(**kw):
    from minilora.nn.llama import LlamaConfig

    return LlamaConfig(**{"vocab_size": 11, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                          "num_attention_heads": 2, **kw})


def _demo(**kw):
    from minilora.demo import DemoConfig

    return DemoConfig(cache_dir=None, **kw)


API_CASES.update({
    "LlamaConfig(rms_norm_eps=nan)": (lambda m, t: _llama(rms_norm_eps=math.nan), "rms_norm_eps"),
    "LlamaConfig(rope_theta=inf)": (lambda m, t: _llama(rope_theta=math.inf), "rope_theta"),
    "LlamaConfig(tie_word_embeddings='no')": (lambda m, t: _llama(tie_word_embeddings="no"), "tie_word_embeddings"),
    "LlamaConfig(num_hidden_layers=1.5)": (lambda m, t: _llama(num_hidden_layers=1.5), "num_hidden_layers"),
    "DemoConfig(pretrain_lr=nan)": (lambda m, t: _demo(pretrain_lr=math.nan), "pretrain_lr"),
    "DemoConfig(progress='no')": (lambda m, t: _demo(progress="no"), "progress"),
})


def _char_tok():
    from minilora.data import CharTokenizer

    return CharTokenizer("abc")


@pytest.mark.parametrize("name", list(API_CASES))
def test_api_refuses_in_one_line_and_leaves_the_model_unchanged(name, tmp_path):
    call, expect = API_CASES[name]
    model = _gpt()
    before = model_digest(model)
    with pytest.raises((ValueError, TypeError, FileNotFoundError)) as info:
        call(model, tmp_path)
    message = str(info.value)
    assert expect.lower() in message.lower(), message
    assert "\n" not in message, message
    assert model_digest(model) == before


def test_the_catalogue_is_large_enough():
    assert len(CLI_CASES) + len(API_CASES) >= 60

