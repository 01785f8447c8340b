"""VeRA: the fused op against NumPy, step-0 identity, frozen shared projections, PEFT's folder both ways, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import GPT, GPTConfig
from minilora.peft import VeraConfig, get_peft_model, load_adapter
from minilora.peft.fingerprint import base_fingerprint
from minilora.peft.methods.vera import VeraLinear, vera_linear
from minilora.tensor import Tensor

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
IDX = np.array([[1, 4, 0, 9, 3], [10, 2, 2, 7, 5]])
TARGETS = np.array([[4, 0, 9, 3, 1], [2, 2, 7, 5, 10]])


def base(device="cpu", dtype="float64"):
    ml.manual_seed(0)
    return GPT(CFG).to(device, dtype)


def test_fused_op_matches_numpy(device, rng):
    x, d, b, bias = (rng.standard_normal(s) for s in ((2, 3, 4), (3,), (5,), (5,)))
    w, a, bp = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal((5, 3))
    ref = x @ w.T + bias + b * (((x @ a.T) * d) @ bp.T)
    dev = [backend.to_device(v, device) for v in (w, a, bp)]
    t = [Tensor(backend.to_device(v, device)) for v in (x, d, b, bias)]
    y = vera_linear(t[0], t[0], *dev, *t[1:])
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12)


def test_step_zero_is_the_base_and_only_d_b_train(device):
    model = base(device)
    ref = model(IDX)[0].numpy()
    peft = get_peft_model(model, VeraConfig(r=16, target_modules=("c_attn", "c_proj")))
    np.testing.assert_array_equal(peft(IDX)[0].numpy(), ref)  # b = 0
    trainable = {n for n, p in peft.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("vera_lambda_d", "vera_lambda_b")) for n in trainable)
    layer = peft.get_submodule("transformer.h.0.attn.c_attn")
    assert isinstance(layer, VeraLinear)
    np.testing.assert_array_equal(layer.vera_lambda_d.numpy(), np.full(16, 0.1))
    proj = peft.shared["default"]
    assert proj.vera_A.shape == (16, 32) and proj.vera_B.shape == (24, 16)  # in_max: mlp.c_proj, out_max: c_attn
    _, loss = peft(IDX, TARGETS)
    loss.backward()
    assert proj.vera_A.grad is None and proj.vera_B.grad is None  # constants of the op


def test_a_peft_trained_adapter_gives_peft_s_logits_loss_and_grads():
    pytest.importorskip("safetensors", reason="needs the hf extra")
    want = np.load(FIXTURES / "vera_expected.npz")
    model = base()
    assert base_fingerprint(model) == str(want["base_fingerprint"])  # the seeded base the fixture was made on
    peft = load_adapter(model, str(FIXTURES / "vera_peft"), is_trainable=True)
    logits, loss = peft(IDX, TARGETS)
    np.testing.assert_allclose(logits.numpy(), want["logits"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(loss.numpy(), want["loss"], rtol=0, atol=1e-12)
    loss.backward()
    named = dict(peft.named_parameters())
    grads = [k for k in want.files if k.startswith("grad:")]
    assert len(grads) == 12
    for k in grads:
        np.testing.assert_allclose(np.asarray(named[k[5:]].grad), want[k], rtol=0, atol=1e-12)


def test_written_in_peft_s_format_as_peft_writes_it(tmp_path):
    pytest.importorskip("safetensors", reason="needs the hf extra")
    from safetensors.numpy import load_file

    peft = load_adapter(base(), str(FIXTURES / "vera_peft"))
    peft.save_adapter(str(tmp_path), format="peft")
    theirs = load_file(FIXTURES / "vera_peft" / "adapter_model.safetensors")
    ours = load_file(tmp_path / "adapter_model.safetensors")
    assert sorted(ours) == sorted(theirs)
    for k in theirs:
        np.testing.assert_array_equal(ours[k], theirs[k].astype(np.float32))
    ref = json.loads((FIXTURES / "vera_peft" / "adapter_config.json").read_text())
    got = json.loads((tmp_path / "adapter_config.json").read_text())
    for key in ("peft_type", "r", "projection_prng_key", "save_projection", "d_initial", "vera_dropout", "bias",
                "fan_in_fan_out", "target_modules"):
        assert got[key] == ref[key], key
    back = load_adapter(base(), str(tmp_path))
    np.testing.assert_allclose(back(IDX)[0].numpy(), peft(IDX)[0].numpy(), rtol=0, atol=1e-6)


def test_merge_and_unload_and_the_minilora_format_round_trip(tmp_path, rng):
    peft = get_peft_model(base(), VeraConfig(r=8))
    for _, p in peft.named_parameters():
        if p.requires_grad:
            p.data = p.data + rng.standard_normal(p.shape)
    out = peft(IDX)[0].numpy()
    peft.save_adapter(str(tmp_path))
    loaded = load_adapter(base(), str(tmp_path), is_trainable=True)
    np.testing.assert_allclose(loaded(IDX)[0].numpy(), out, rtol=1e-12)
    assert not loaded.shared["default"].vera_A.requires_grad  # is_trainable leaves the projections frozen
    plain = peft.merge_and_unload()
    np.testing.assert_allclose(plain(IDX)[0].numpy(), out, rtol=1e-10, atol=1e-12)


def test_bad_input_is_one_line_and_leaves_the_model_alone():
    with pytest.raises(ValueError, match="VeraConfig.r must be a positive integer, got 0"):
        VeraConfig(r=0)
    with pytest.raises(ValueError, match="save_projection=False is not supported"):
        VeraConfig(save_projection=False)
    peft = get_peft_model(base(), VeraConfig(r=4, target_modules=("c_attn",)))
    before = {n: p.numpy() for n, p in peft.named_parameters()}
    with pytest.raises(ValueError, match=r"projection_prng_key=1 differs from adapter 'default'"):
        peft.add_adapter("other", VeraConfig(r=4, target_modules=("c_attn",), projection_prng_key=1))
    with pytest.raises(ValueError, match=r"shared projections A \(4, 8\) and B \(24, 4\) .* up to 32 in"):
        peft.add_adapter("wide", VeraConfig(r=4, target_modules=("c_attn", "mlp.c_proj")))
    assert list(peft.peft_config) == ["default"] and list(peft.shared) == ["default"]
    assert {n: p.numpy() for n, p in peft.named_parameters()}.keys() == before.keys()
    peft.add_adapter("narrow", VeraConfig(r=2, target_modules=("attn.c_proj",)))  # fits the first's projections
    assert peft.shared["narrow"].vera_A.shape == (2, 8)
