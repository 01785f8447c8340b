"""PiSSA / OLoRA -> an ordinary rank-2r LoRA on the original base: exact, PEFT's tensors and config, resumable,
the PEFT-named folder route, and the refusals (one line, nothing changed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.hf import safetensors_io as stio
from minilora.nn import GPT, GPTConfig
from minilora.peft import IA3Config, LoraConfig, base_fingerprint, convert_to_lora, get_peft_model, load_adapter
from minilora.peft.io import AdapterError
from minilora.train import LMTask, TrainConfig, Trainer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
IDX = np.array([[1, 4, 0, 9, 3], [10, 2, 2, 7, 5]])


def base(device="cpu", dtype="float64"):
    ml.manual_seed(0)
    return GPT(CFG).to(device, dtype)


def trained(peft, seed=0):
    """Every trainable tensor moved away from its initial value, as training would."""
    rng = np.random.default_rng(seed)
    for _, p in peft.named_parameters():
        if p.requires_grad:
            p.data = p.data + p.xp.asarray(0.1 * rng.standard_normal(p.shape), dtype=p.dtype)
    return peft


def files(directory):
    return {p.name: p.read_bytes() for p in Path(directory).iterdir()}


@pytest.mark.parametrize("kw", [
    dict(init_lora_weights="pissa"),
    dict(init_lora_weights="olora", use_rslora=True),
    dict(init_lora_weights="pissa_niter_2", use_dora=True, bias="all"),
    dict(init_lora_weights="pissa", use_dora=True, use_rslora=True),
])  # fmt: skip
def test_the_converted_lora_on_the_original_base_is_the_trained_model(device, tmp_path, kw):
    peft = trained(get_peft_model(base(device), LoraConfig(r=3, lora_alpha=4, target_modules=("c_attn", "c_fc"),
                                                           **kw)))
    want = peft(IDX)[0].numpy()
    peft.save_adapter(str(tmp_path / "a"), convert_to_lora=True)
    meta = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert meta["base_fingerprint"] == base_fingerprint(base(device)) != peft.base_fingerprint
    cfg = meta["config"]
    assert (cfg["r"], cfg["init_lora_weights"]) == (6, "kaiming")
    assert cfg["lora_alpha"] / (6**0.5 if kw.get("use_rslora") else 6) == pytest.approx(peft.peft_config[
        "default"].scaling, rel=1e-15)
    plain = load_adapter(base(device), str(tmp_path / "a"))  # the ORIGINAL base: accepted
    np.testing.assert_allclose(plain(IDX)[0].numpy(), want, rtol=0, atol=1e-12)
    peft.save_pretrained(str(tmp_path / "p"), format="peft", convert_to_lora=True)  # float32 tensors in the file
    np.testing.assert_allclose(load_adapter(base(device), str(tmp_path / "p"))(IDX)[0].numpy(), want, atol=1e-5)


def test_convert_to_lora_concatenates_as_peft_and_changes_nothing(rng):
    peft = trained(get_peft_model(base(), LoraConfig(r=2, target_modules=("c_attn",), init_lora_weights="pissa")))
    before = {k: v.copy() for k, v in peft.state_dict().items()}
    fingerprint = peft.base_fingerprint
    converted = convert_to_lora(peft)
    assert {k: v.shape for k, v in converted.arrays.items()} == {
        f"transformer.h.{i}.attn.c_attn.lora_{m}": s for i in range(2) for m, s in (("A", (4, 8)), ("B", (24, 4)))}
    layer = peft.get_submodule("transformer.h.0.attn.c_attn")
    a0, b0 = layer.initial_weights("default")
    a, b = (converted.arrays[f"transformer.h.0.attn.c_attn.lora_{m}"] for m in "AB")
    np.testing.assert_array_equal(a, np.concatenate([layer.lora_A.data, a0]))  # [A ; A0]
    np.testing.assert_array_equal(b, np.concatenate([layer.lora_B.data, -b0], axis=1))  # [B | -B0]
    assert all(np.array_equal(v, before[k]) for k, v in peft.state_dict().items())
    assert peft.base_fingerprint == fingerprint and peft.base_changed


def test_an_inactive_pissa_adapter_converts_from_its_kept_slots(tmp_path):
    peft = trained(get_peft_model(base(), LoraConfig(r=2, init_lora_weights="pissa")))
    want = peft(IDX)[0].numpy()
    peft.add_adapter("plain", LoraConfig(r=2))  # a second adapter, on the residual base
    peft.set_adapter("plain")
    peft.save_adapter(str(tmp_path), adapter_name="default", convert_to_lora=True)
    np.testing.assert_allclose(load_adapter(base(), str(tmp_path))(IDX)[0].numpy(), want, atol=1e-12)


def test_the_initial_state_survives_a_trainer_checkpoint_and_resume(tmp_path):
    tokens = np.random.default_rng(0).integers(0, CFG.vocab_size, 400)
    config = LoraConfig(r=2, target_modules=("c_attn",), init_lora_weights="pissa_niter_1")  # a random sketch
    cfg = TrainConfig(max_steps=4, batch_size=2, lr=1e-2, warmup_steps=1, eval_interval=0, progress=False, seed=0)

    def run(seed, steps=None, resume=None):
        model = base()
        ml.manual_seed(seed)  # the sketch's draw
        peft = get_peft_model(model, config)
        trainer = Trainer(peft, LMTask(tokens[:300], tokens[300:], 8, 2, eval_batches=1), cfg)
        if resume:
            fresh = peft.get_submodule("transformer.h.0.attn.c_attn").initial_weights("default")[0].copy()
            trainer.resume(resume)
            restored = peft.get_submodule("transformer.h.0.attn.c_attn").initial_weights("default")[0]
            assert not np.allclose(fresh, restored)  # the checkpoint's A0, not this run's own sketch
        trainer.fit(steps)
        return trainer, peft

    straight = convert_to_lora(run(1)[1]).arrays
    first, _ = run(1, steps=2)
    first.save(str(tmp_path / "ckpt.npz"))
    resumed = convert_to_lora(run(123, resume=str(tmp_path / "ckpt.npz"))[1]).arrays
    assert all(np.array_equal(resumed[k], v) for k, v in straight.items())


def test_path_initial_model_for_weight_conversion_is_peft_s_route(tmp_path):
    peft = get_peft_model(base(), LoraConfig(r=2, target_modules=("c_attn",), init_lora_weights="olora"))
    peft.save_pretrained(str(tmp_path / "init"))  # right after initialisation, as PEFT's workflow
    trained(peft)
    peft.save_pretrained(str(tmp_path / "via_folder"), path_initial_model_for_weight_conversion=str(tmp_path / "init"))
    peft.save_adapter(str(tmp_path / "in_memory"), convert_to_lora=True)
    assert files(tmp_path / "via_folder") == files(tmp_path / "in_memory")
    # the PiSSA adapter loaded back onto its residual base has no A0, B0: the initial folder supplies them and the
    # original base's fingerprint it recorded
    residual = get_peft_model(base(), LoraConfig(r=2, target_modules=("c_attn",), init_lora_weights="olora")).unload()
    peft.save_adapter(str(tmp_path / "residual"))
    again = load_adapter(residual, str(tmp_path / "residual"), is_trainable=True)
    with pytest.raises(ValueError, match=r"no initial A0, B0 on transformer.h.0.attn.c_attn .*pass path_initial"):
        again.save_adapter(str(tmp_path / "x"), convert_to_lora=True)
    again.save_pretrained(str(tmp_path / "again"), path_initial_model_for_weight_conversion=str(tmp_path / "init"))
    assert files(tmp_path / "again") == files(tmp_path / "in_memory")
    other = get_peft_model(base(), LoraConfig(r=2, target_modules=("c_attn",), init_lora_weights="pissa"))
    with pytest.raises(AdapterError, match="this initial adapter belongs to another base"):
        other.save_pretrained(str(tmp_path / "y"), path_initial_model_for_weight_conversion=str(tmp_path / "init"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_refusals_are_one_line_and_leave_model_and_files_as_they_were(tmp_path):
    target = tmp_path / "adapter"
    lora = get_peft_model(base(), LoraConfig(r=2, target_modules=("c_attn",)))
    lora.save_adapter(str(target))
    old = files(target)
    state = {k: v.copy() for k, v in lora.state_dict().items()}
    cases = [
        (lora, r"init_lora_weights='kaiming', which leaves the base as it is"),
        (get_peft_model(base(), IA3Config()), r"IA3Config adapters never change the base"),
    ]
    for model, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            model.save_adapter(str(target), convert_to_lora=True)
        assert "\n" not in str(info.value)
        assert files(target) == old
    assert all(np.array_equal(v, state[k]) for k, v in lora.state_dict().items())
    with pytest.raises(ValueError, match=r"adapter 'nope' is missing"):
        convert_to_lora(lora, "nope")


def test_an_unconverted_pissa_adapter_in_peft_s_format_says_pissa(tmp_path):
    peft = get_peft_model(base(), LoraConfig(r=2, target_modules=("c_attn",), init_lora_weights="pissa_niter_3"))
    peft.save_adapter(str(tmp_path), format="peft")
    assert json.loads((tmp_path / "adapter_config.json").read_text())["init_lora_weights"] == "pissa_niter_3"


@pytest.mark.parametrize("rslora", [False, True])
def test_peft_s_conversion_fixture(rslora):
    """PEFT's save_pretrained(path_initial_model_for_weight_conversion=...) of a trained PiSSA adapter
    (benchmarks/make_peft_methods.py): minilora, given the same residual, A0, B0, A, B, writes the same tensors and
    config, and PEFT's converted adapter on the original base gives PEFT's trained logits here."""
    want = np.load(FIXTURES / "pissa_converted_expected.npz")
    folder = FIXTURES / ("pissa_converted" + ("_rslora" if rslora else ""))
    loaded = load_adapter(base(dtype="float32"), str(folder))
    np.testing.assert_allclose(loaded(IDX)[0].numpy(), want[f"{rslora}:logits"], atol=1e-5)
    peft = get_peft_model(base(dtype="float32"), LoraConfig(r=3, lora_alpha=6, target_modules=("c_attn",),
                                                            init_lora_weights="pissa", use_rslora=rslora))
    for i in range(CFG.n_layer):
        layer = peft.get_submodule(f"transformer.h.{i}.attn.c_attn")
        layer.base_layer.weight.data = want[f"{rslora}:{i}:residual"]
        layer.lora_initial.lora_A, layer.lora_initial.lora_B = want[f"{rslora}:{i}:A0"], want[f"{rslora}:{i}:B0"]
        layer.lora_A.data, layer.lora_B.data = want[f"{rslora}:{i}:A"], want[f"{rslora}:{i}:B"]
    np.testing.assert_allclose(peft(IDX)[0].numpy(), want[f"{rslora}:logits"], atol=1e-5)
    converted = convert_to_lora(peft)
    theirs = stio.read_safetensors(folder / "adapter_model.safetensors")
    for key, a in theirs.items():
        name = key.removeprefix("base_model.model.").removesuffix(".weight")
        np.testing.assert_array_equal(backend.to_host(converted.arrays[name]), a)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (converted.config.r, converted.config.init_lora_weights) == (config["r"], "kaiming")
    assert converted.config.lora_alpha == pytest.approx(config["lora_alpha"], rel=1e-15)
