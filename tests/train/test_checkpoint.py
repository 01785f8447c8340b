"""Checkpoints: full round trip, no pickle, atomic writes that survive a crash, clear errors on bad files."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

import minilora
from minilora import nn
from minilora.data import CharTokenizer
from minilora.optim import AdamW, param_groups
from minilora.train import (
    CheckpointError,
    build_model,
    load_checkpoint,
    restore_model,
    restore_optimizer,
    save_checkpoint,
)
from minilora.train import checkpoint as ckpt_mod


def _trained_pair(tiny_gpt):
    model = tiny_gpt(0)
    opt = AdamW(param_groups(model, 0.1), lr=1e-2)
    idx = np.arange(8).reshape(1, 8)
    _, loss = model(idx, idx)
    loss.backward()
    opt.step()
    return model, opt


def _weights(model):
    return {k: np.array(v) for k, v in model.state_dict().items()}


def test_round_trip_weights_optimizer_and_metadata(tmp_path, tiny_gpt):
    model, opt = _trained_pair(tiny_gpt)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, opt, step=7, tokenizer=CharTokenizer.default(), train_config={"lr": 0.01})
    ck = load_checkpoint(path)
    assert ck.step == 7 and ck.model_config == model.config.to_dict()
    assert ck.tokenizer() == CharTokenizer.default()
    fresh = build_model(ck)
    for k, v in _weights(model).items():
        np.testing.assert_array_equal(fresh.state_dict()[k], v)
    opt2 = AdamW(param_groups(fresh, 0.1), lr=1.0)
    restore_optimizer(ck, opt2)
    assert opt2.state_size() == opt.state_size() > 0
    np.testing.assert_array_equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_format_never_needs_pickle(tmp_path, tiny_gpt):
    model, opt = _trained_pair(tiny_gpt)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, opt)
    with np.load(path, allow_pickle=False) as npz:
        assert npz["meta"].dtype == np.uint8
        assert all(npz[k].dtype != object for k in npz.files)


def test_interrupted_save_leaves_previous_checkpoint(tmp_path, monkeypatch, tiny_gpt):
    model, opt = _trained_pair(tiny_gpt)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, opt, step=1)
    before = path.read_bytes()

    real_savez = np.savez

    def crash_midway(f, **arrays):  # write part of the archive, then "lose power"
        real_savez(f, **dict(list(arrays.items())[:2]))
        raise KeyboardInterrupt("simulated crash during save")

    monkeypatch.setattr(ckpt_mod.np, "savez", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, opt, step=2)
    monkeypatch.undo()
    monkeypatch.setattr(ckpt_mod.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, opt, step=3)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).step == 1
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temporary files left behind


def test_corrupt_files_name_the_problem(tmp_path, tiny_gpt):
    model, opt = _trained_pair(tiny_gpt)
    good = tmp_path / "good.npz"
    save_checkpoint(good, model, opt)
    data = bytearray(good.read_bytes())
    cases = {
        "truncated.npz": bytes(data[: len(data) // 2]),
        "text.npz": b"this is not a checkpoint",
        "flipped.npz": bytes(data[:3000]) + bytes([data[3000] ^ 0xFF]) + bytes(data[3001:]),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.npz")


def test_missing_keys_are_named(tmp_path, tiny_gpt):
    model, _ = _trained_pair(tiny_gpt)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "model.transformer.ln_f.bias"}
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(CheckpointError, match="missing key 'model.transformer.ln_f.bias'"):
        load_checkpoint(tmp_path / "partial.npz")
    np.savez(tmp_path / "nometa.npz", x=np.zeros(2))
    with pytest.raises(CheckpointError, match="missing key 'meta'"):
        load_checkpoint(tmp_path / "nometa.npz")
    assert zipfile.is_zipfile(tmp_path / "nometa.npz")


def test_config_mismatch_changes_nothing(tmp_path, tiny_gpt, tiny_config):
    model, _ = _trained_pair(tiny_gpt)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model)
    minilora.manual_seed(1)
    other = nn.GPT(tiny_config(n_embd=8))
    before = _weights(other)
    with pytest.raises(CheckpointError, match="n_embd 16 in the checkpoint, 8 in the model"):
        restore_model(load_checkpoint(path), other)
    for k, v in before.items():
        np.testing.assert_array_equal(other.state_dict()[k], v)


def test_classifier_checkpoint_builds(tmp_path, tiny_config):
    minilora.manual_seed(0)
    clf = nn.GPTForSequenceClassification(tiny_config(), num_classes=2)
    save_checkpoint(tmp_path / "c.npz", clf)
    rebuilt = build_model(load_checkpoint(tmp_path / "c.npz"))
    assert isinstance(rebuilt, nn.GPTForSequenceClassification) and rebuilt.num_classes == 2


def test_checkpoint_records_the_family_and_old_files_load(tmp_path, tiny_gpt):
    model = tiny_gpt(0)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model)
    ck = load_checkpoint(path)
    assert ck.meta["family"] == "gpt2" and ck.family.name == "gpt2" and not ck.is_classifier
    ck.meta.pop("family")  # a checkpoint written before families were recorded: GPT-2
    assert type(build_model(ck)) is nn.GPT
    clf = nn.GPTForSequenceClassification(model.config, 3)
    save_checkpoint(path, clf)
    built = build_model(load_checkpoint(path))
    assert type(built) is nn.GPTForSequenceClassification and built.num_classes == 3
