"""Every failure path of get_peft_model, add_adapter, load_adapter (both formats), quantize_model and
Trainer.resume leaves the model bit-identical (types, weights, flags, adapters), and a retry succeeds."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import minilora as ml
from minilora import nn, peft
from minilora.testing.digest import model_digest, tree_digest


def _gpt(seed: int = 0) -> nn.GPT:
    ml.manual_seed(seed)
    return nn.GPT(nn.GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16))


GOOD = peft.LoraConfig(r=2, target_modules=("c_attn",))
BAD_CONFIGS = {
    "targets match nothing": lambda: peft.LoraConfig(r=2, target_modules=("q_proj",)),
    "bad modules_to_save": lambda: peft.LoraConfig(r=2, modules_to_save=("nope",)),
    "qlora, bad modules_to_save": lambda: peft.LoraConfig(r=2, quantize=True, quant_block_size=16,
                                                          modules_to_save=("nope",)),
    "qlora, modules_to_save already adapted": lambda: peft.LoraConfig(r=2, quantize=True, quant_block_size=16,
                                                                      modules_to_save=("c_attn",)),
    "ia3 targets match nothing": lambda: peft.IA3Config(target_modules=("nope",), feedforward_modules=()),
    "modules_to_save already adapted": lambda: peft.LoraConfig(r=2, modules_to_save=("c_attn",)),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_get_peft_model_failure_changes_nothing_and_retry_works(name):
    model = _gpt()
    before = model_digest(model)
    with pytest.raises((ValueError, TypeError)):
        peft.get_peft_model(model, BAD_CONFIGS[name]())
    assert model_digest(model) == before
    assert type(model.transformer.h[0].attn.c_attn) is nn.Linear
    assert all(p.requires_grad for p in model.parameters())
    wrapped = peft.get_peft_model(model, GOOD)  # the retry works ("adapter 'default' already exists" before)
    assert wrapped.get_nb_trainable_parameters()[0] > 0


def test_add_adapter_failure_changes_nothing():
    wrapped = peft.get_peft_model(_gpt(), GOOD)
    before = model_digest(wrapped)
    with pytest.raises(ValueError):
        wrapped.add_adapter("second", peft.LoraConfig(r=2, modules_to_save=("nope",)))
    assert model_digest(wrapped) == before and list(wrapped.peft_config) == ["default"]
    wrapped.add_adapter("second", GOOD)
    assert list(wrapped.peft_config) == ["default", "second"]


def _edit_json(path, **changes):
    d = json.loads(open(path, encoding="utf-8").read())
    for k, v in changes.items():
        target = d
        *parents, last = k.split(".")
        for p in parents:
            target = target[p]
        target[last] = v
    open(path, "w", encoding="utf-8").write(json.dumps(d))


def _saved(tmp_path, config, fmt="minilora"):
    wrapped = peft.get_peft_model(_gpt(), config)
    folder = str(tmp_path / f"adapter-{fmt}")
    wrapped.save_adapter(folder, format=fmt)
    return folder


def _wrong_shape(folder):
    with np.load(os.path.join(folder, "adapter_model.npz")) as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = sorted(arrays)[-1]
    arrays[key] = np.zeros((arrays[key].shape[0], 1), np.float32)
    np.savez(os.path.join(folder, "adapter_model.npz"), **arrays)
    path = os.path.join(folder, "adapter_config.json")
    meta = json.loads(open(path, encoding="utf-8").read())
    meta["weights"][key]["shape"] = list(arrays[key].shape)
    open(path, "w", encoding="utf-8").write(json.dumps(meta))


LOAD_FAILURES = {
    "qlora adapter, one wrong shape": (peft.LoraConfig(r=2, quantize=True, quant_block_size=16), "minilora",
                                       _wrong_shape),
    "lora_alpha '16'": (GOOD, "minilora", lambda f: _edit_json(f + "/adapter_config.json",
                                                               **{"config.lora_alpha": "16"})),
    "target_modules 5": (GOOD, "minilora", lambda f: _edit_json(f + "/adapter_config.json",
                                                                **{"config.target_modules": 5})),
    "peft format, lora_alpha '8'": (GOOD, "peft", lambda f: _edit_json(f + "/adapter_config.json",
                                                                       lora_alpha="8")),
    "peft format, r mismatch": (GOOD, "peft", lambda f: _edit_json(f + "/adapter_config.json", r=3)),
}


@pytest.mark.parametrize("name", sorted(LOAD_FAILURES))
def test_load_adapter_failure_changes_nothing_and_retry_works(name, tmp_path):
    config, fmt, damage = LOAD_FAILURES[name]
    folder = _saved(tmp_path, config, fmt)
    good = str(tmp_path / "good")
    os.rename(folder, good)
    _saved(tmp_path, config, fmt)
    damage(folder)
    for base in (_gpt(), peft.get_peft_model(_gpt(), config, adapter_name="other")):
        before, files = model_digest(base), tree_digest(folder)
        with pytest.raises((ValueError, TypeError)):
            peft.load_adapter(base, folder)
        assert model_digest(base) == before and tree_digest(folder) == files
        assert peft.load_adapter(base, good) is not None  # the retry with a good folder works


def test_quantize_model_failure_half_way_changes_nothing(monkeypatch):
    from minilora.peft import qlora

    model = _gpt()
    before = model_digest(model)
    real, calls = qlora.Linear4bit.from_linear, []

    def flaky(linear, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("out of memory on the third layer")
        return real(linear, *a, **k)

    monkeypatch.setattr(qlora.Linear4bit, "from_linear", staticmethod(flaky))
    with pytest.raises(MemoryError):
        qlora.quantize_model(model, "all-linear", block_size=16)
    assert model_digest(model) == before
    monkeypatch.undo()
    qlora.quantize_model(model, "all-linear", block_size=16)
    with pytest.raises(ValueError, match="block_size"):
        qlora.quantize_model(_gpt(), "all-linear", block_size=0)


def test_resume_with_bad_step_changes_nothing(tmp_path):
    from minilora.data import CharTokenizer
    from minilora.io import atomic_write_npz
    from minilora.train import CheckpointError, LMTask, TrainConfig, Trainer

    tok = CharTokenizer.default()
    tokens = tok.encode("the quick brown fox jumps over the lazy dog. " * 20)
    ml.manual_seed(0)
    model = nn.GPT(nn.GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=8))

    def trainer():
        cfg = TrainConfig(max_steps=3, batch_size=2, warmup_steps=0, eval_interval=0, eval_batches=1, progress=False,
                          out_dir=str(tmp_path / "run"))
        return Trainer(model, LMTask(tokens, tokens, 8, 2, eval_batches=1), cfg, tokenizer=tok)

    t = trainer()
    t.fit()
    path = t.checkpoint_path
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["step"] = "abc"
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    bad = str(tmp_path / "bad.npz")
    atomic_write_npz(bad, arrays)
    t2 = trainer()
    t2.train_step()  # also: train_step before fit() works
    before, state = model_digest(model), (t2.step, json.dumps(t2.task.state_dict(), default=str))
    with pytest.raises(CheckpointError, match="'step'"):
        t2.resume(bad)
    assert model_digest(model) == before and (t2.step, json.dumps(t2.task.state_dict(), default=str)) == state
    t2.resume(path)
    assert t2.step == 3


def test_pissa_failure_restores_the_base_weights():
    """PiSSA rewrites the base weight (W_res = W0 - s B A): a later failure must bring W0 back."""
    model = _gpt()
    before = model_digest(model)
    with pytest.raises(ValueError):
        peft.get_peft_model(model, peft.LoraConfig(r=2, init_lora_weights="pissa", modules_to_save=("nope",)))
    assert model_digest(model) == before
