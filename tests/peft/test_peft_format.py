"""LoRA adapters in Hugging Face PEFT's format: exact keys and config, round trips, hand-built folders, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="needs the hf extra: pip install 'minilora[hf]'")

from safetensors.numpy import load_file, save_file  # noqa: E402

import minilora as ml  # noqa: E402
from minilora import backend  # noqa: E402
from minilora.hf import from_pretrained, save_pretrained  # noqa: E402
from minilora.hf.safetensors_io import read_metadata  # noqa: E402
from minilora.nn import GPT, GPTConfig, GPTForSequenceClassification  # noqa: E402
from minilora.peft import IA3Config, LoraConfig, get_peft_model, load_adapter  # noqa: E402
from minilora.peft.io import AdapterError  # noqa: E402
from minilora.peft.peft_format import PeftFormatError, peft_target_modules  # noqa: E402

CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
IDX = np.array([[1, 4, 0, 9, 3], [10, 2, 2, 7, 5]])


def base(seed: int = 0) -> GPT:
    ml.manual_seed(seed)
    return GPT(CFG)


def logits(model) -> np.ndarray:
    with ml.no_grad():
        return model(IDX)[0].numpy()


def trained_peft(config: LoraConfig, model=None):
    """A PeftModel whose B (and DoRA magnitude, trained biases) are non-zero, as after training."""
    peft = get_peft_model(model if model is not None else base(), config)
    rng = np.random.default_rng(1)
    for p in peft.adapter_state().values():
        p.data = p.data + backend.to_device(rng.normal(0, 0.2, p.shape), p.device, p.dtype)
    return peft


# ----------------------------------------------------------------------------- what is written
def test_saved_keys_shapes_values_and_config_are_peft_s(tmp_path):
    peft = trained_peft(LoraConfig(r=2, lora_alpha=4, target_modules=("c_attn", "mlp.c_fc")))
    size = peft.save_adapter(str(tmp_path), format="peft")
    t = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert size == sum(f.stat().st_size for f in tmp_path.iterdir())
    expected = {}
    for i in range(2):
        for mod, (n_in, n_out) in {"attn.c_attn": (8, 24), "mlp.c_fc": (8, 32)}.items():
            expected[f"base_model.model.transformer.h.{i}.{mod}.lora_A.weight"] = (2, n_in)  # (r, in)
            expected[f"base_model.model.transformer.h.{i}.{mod}.lora_B.weight"] = (n_out, 2)  # (out, r)
    assert {k: v.shape for k, v in t.items()} == expected
    layer = peft.get_submodule("transformer.h.1.mlp.c_fc")
    np.testing.assert_array_equal(t["base_model.model.transformer.h.1.mlp.c_fc.lora_A.weight"], layer.lora_A.numpy())
    np.testing.assert_array_equal(t["base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight"], layer.lora_B.numpy())
    assert read_metadata(tmp_path / "adapter_model.safetensors")["format"] == "pt"
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert {k: cfg[k] for k in ("peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules",
                                "fan_in_fan_out", "bias", "use_rslora", "use_dora", "base_model_name_or_path",
                                "inference_mode", "init_lora_weights", "modules_to_save", "layers_to_transform",
                                "rank_pattern", "alpha_pattern")} == {  # fmt: skip
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4, "lora_dropout": 0.0,
        "target_modules": ["c_attn", "c_fc"], "fan_in_fan_out": True, "bias": "none", "use_rslora": False,
        "use_dora": False, "base_model_name_or_path": None, "inference_mode": True, "init_lora_weights": True,
        "modules_to_save": None, "layers_to_transform": None, "rank_pattern": {}, "alpha_pattern": {},
    }  # fmt: skip


def test_target_modules_select_exactly_the_adapted_layers():
    kinds = ("attn", "attn.c_attn", "attn.c_proj", "mlp", "mlp.c_fc", "mlp.c_proj")
    names = [f"transformer.h.{i}.{m}" for i in range(12) for m in kinds] + ["lm_head"]
    every = [n for n in names if n.endswith("c_proj")]
    assert peft_target_modules(every, names) == ["c_proj"]
    attn = [n for n in every if ".attn." in n]
    assert peft_target_modules(attn, names) == ["attn.c_proj"]
    assert peft_target_modules(["transformer.h.0.attn.c_attn"], names) == ["0.attn.c_attn"]  # not h.10


def test_base_model_name_or_path_is_the_gpt2_folder(tmp_path):
    save_pretrained(base(), tmp_path / "gpt2")
    model = from_pretrained(tmp_path / "gpt2")
    trained_peft(LoraConfig(r=2), model).save_adapter(str(tmp_path / "a"), format="peft")
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tmp_path / "gpt2"
    )


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize(
    "config",
    [
        LoraConfig(r=2, lora_alpha=4, target_modules=("c_attn", "mlp.c_proj")),
        LoraConfig(r=4, lora_alpha=3, use_rslora=True, target_modules="all-linear", init_lora_weights="gaussian"),
        LoraConfig(r=2, lora_alpha=4, use_dora=True, target_modules=("c_fc",)),
        LoraConfig(r=2, lora_alpha=4, bias="all", target_modules=("attn.c_proj",)),
    ],
    ids=["lora", "rslora-all-linear", "dora", "bias-all"],
)
def test_round_trip_gives_identical_outputs(tmp_path, config):
    peft = trained_peft(config)
    want = logits(peft)
    peft.save_adapter(str(tmp_path), format="peft")
    loaded = load_adapter(base(), str(tmp_path))  # auto-detected: adapter_config.json + adapter_model.safetensors
    np.testing.assert_array_equal(logits(loaded), want)
    assert loaded.peft_config["default"].use_dora == config.use_dora
    assert not any(p.requires_grad for p in loaded.parameters())  # loaded for inference unless is_trainable
    t = load_file(str(tmp_path / "adapter_model.safetensors"))
    if config.use_dora:
        assert t["base_model.model.transformer.h.0.mlp.c_fc.lora_magnitude_vector"].shape == (32,)  # (out,)
    if config.bias == "all":
        assert "base_model.model.transformer.h.0.attn.c_proj.base_layer.bias" in t  # the wrapped layer's bias
        assert "base_model.model.transformer.h.0.ln_1.bias" in t


def test_classifier_with_modules_to_save_round_trips(tmp_path):
    ml.manual_seed(0)
    clf = GPTForSequenceClassification(CFG, num_classes=3)
    peft = trained_peft(LoraConfig(r=2, target_modules=("c_attn",), modules_to_save=("score",)), clf)
    want = logits(peft)
    peft.save_adapter(str(tmp_path), format="peft")
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["task_type"] == "SEQ_CLS" and cfg["modules_to_save"] == ["score"]
    assert load_file(str(tmp_path / "adapter_model.safetensors"))["base_model.model.score.weight"].shape == (3, 8)
    ml.manual_seed(0)
    np.testing.assert_array_equal(logits(load_adapter(GPTForSequenceClassification(CFG, 3), str(tmp_path))), want)
    # PEFT before its AuxiliaryTrainingWrapper refactor wrote <path>.modules_to_save.<param>: read that too
    t = load_file(str(tmp_path / "adapter_model.safetensors"))
    t["base_model.model.score.modules_to_save.weight"] = t.pop("base_model.model.score.weight")
    save_file(t, str(tmp_path / "adapter_model.safetensors"))
    ml.manual_seed(0)
    np.testing.assert_array_equal(logits(load_adapter(GPTForSequenceClassification(CFG, 3), str(tmp_path))), want)


# ----------------------------------------------------------------------------- a folder written as PEFT writes it
def write_peft_folder(folder, tensors, **config):
    folder.mkdir(exist_ok=True)
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 6, "lora_dropout": 0.05,
           "target_modules": ["c_attn", "c_proj"], "fan_in_fan_out": True, "bias": "none", "use_rslora": False,
           "use_dora": False, "init_lora_weights": True, "inference_mode": True, "peft_version": "0.18.1",
           "base_model_name_or_path": "openai-community/gpt2", "layers_to_transform": [0], "layers_pattern": "h",
           "exclude_modules": None, "lora_bias": False, "rank_pattern": {}, "alpha_pattern": {},
           "modules_to_save": None, **config}  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


@pytest.mark.parametrize("use_rslora", [False, True])
def test_hand_built_peft_adapter_gives_the_hand_computed_outputs(tmp_path, use_rslora):
    rng = np.random.default_rng(7)
    A1, B1 = rng.normal(size=(2, 8)).astype(np.float32), rng.normal(size=(24, 2)).astype(np.float32)
    A2, B2 = rng.normal(size=(2, 32)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32)
    folder = write_peft_folder(tmp_path / "adapter", {
        "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": A1,
        "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight": B1,
        "base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight": A2,
        "base_model.model.transformer.h.0.mlp.c_proj.lora_B.weight": B2,
    }, use_rslora=use_rslora)  # fmt: skip
    s = 6 / np.sqrt(2) if use_rslora else 6 / 2
    loaded = load_adapter(base(), str(folder))
    assert loaded.peft_config["default"].lora_dropout == 0.05
    # expected: the base with W += s B A, computed in NumPy in minilora's (out, in) layout ...
    merged = base()
    for path, A, B in (("transformer.h.0.attn.c_attn", A1, B1), ("transformer.h.0.mlp.c_proj", A2, B2)):
        lin = merged.get_submodule(path)
        lin.weight.data = (lin.weight.data.astype(np.float64) + s * (B.astype(np.float64) @ A)).astype(np.float32)
    np.testing.assert_allclose(logits(loaded.eval()), logits(merged), rtol=1e-5, atol=1e-5)
    # ... and in Hugging Face's Conv1D layout (in, out), where fan_in_fan_out merges (s B A)^T
    save_pretrained(base(), tmp_path / "hf")
    t = load_file(str(tmp_path / "hf" / "model.safetensors"))
    t["transformer.h.0.attn.c_attn.weight"] += (s * (B1 @ A1)).T.astype(np.float32)
    t["transformer.h.0.mlp.c_proj.weight"] += (s * (B2 @ A2)).T.astype(np.float32)
    save_file(t, str(tmp_path / "hf" / "model.safetensors"), metadata={"format": "pt"})
    np.testing.assert_allclose(logits(loaded), logits(from_pretrained(tmp_path / "hf")), rtol=1e-5, atol=1e-5)


def test_fan_in_fan_out_false_and_a_regex_target_are_read(tmp_path):
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 8)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32)
    folder = write_peft_folder(tmp_path / "a", {
        "base_model.model.transformer.h.1.attn.c_proj.lora_A.weight": a,
        "base_model.model.transformer.h.1.attn.c_proj.lora_B.weight": b,
    }, fan_in_fan_out=False, target_modules="transformer\\.h\\.1\\.attn\\.c_proj")  # fmt: skip
    loaded = load_adapter(base(), str(folder), format="peft")
    assert loaded.peft_config["default"].target_modules == ("transformer.h.1.attn.c_proj",)
    np.testing.assert_array_equal(loaded.get_submodule("transformer.h.1.attn.c_proj").lora_B.numpy(), b)


# ----------------------------------------------------------------------------- refusals
GOOD = {"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": np.zeros((2, 8), np.float32),
        "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight": np.zeros((24, 2), np.float32)}  # fmt: skip


@pytest.mark.parametrize(
    "config,message",
    [
        ({"peft_type": "IA3"}, "peft_type 'IA3' is not supported"),
        ({"rank_pattern": {"c_attn": 4}}, r"rank_pattern=\{'c_attn': 4\} is not supported"),
        ({"lora_bias": True}, "lora_bias=True is not supported"),
        ({"init_lora_weights": "pissa"}, "init_lora_weights='pissa' is not supported"),
        ({"task_type": "SEQ_2_SEQ_LM"}, "task_type 'SEQ_2_SEQ_LM' is not supported"),
        ({"bias": "some"}, "LoraConfig.bias must be one of"),
    ],
)
def test_unsupported_configs_are_refused_by_key(tmp_path, config, message):
    folder = write_peft_folder(tmp_path / "a", GOOD, **config)
    with pytest.raises(PeftFormatError, match=message) as err:
        load_adapter(base(), str(folder), format="peft")
    assert "adapter_config.json" in str(err.value)


@pytest.mark.parametrize(
    "tensors,message",
    [
        ({**GOOD, "base_model.model.transformer.wte.lora_embedding_A": np.zeros((2, 11), np.float32)},
         "lora_embedding_A: not supported"),
        ({"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": np.zeros((2, 8), np.float32)},
         "lora_B missing"),
        ({**GOOD, "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight": np.zeros((24, 3), np.float32)},
         r"do not have rank r=2"),
        ({"transformer.h.0.attn.c_attn.lora_A.weight": np.zeros((2, 8), np.float32)}, "expected the prefix"),
        ({k.replace(".weight", ".default.weight"): v for k, v in GOOD.items()}, "still holding an adapter name"),
    ],
)  # fmt: skip
def test_bad_tensors_are_refused_by_key(tmp_path, tensors, message):
    folder = write_peft_folder(tmp_path / "a", tensors)
    with pytest.raises(PeftFormatError, match=message) as err:
        load_adapter(base(), str(folder))
    assert "adapter_model.safetensors" in str(err.value)


def test_shapes_that_do_not_fit_the_model_are_refused_and_nothing_changes(tmp_path):
    folder = write_peft_folder(tmp_path / "a", {
        "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": np.zeros((2, 16), np.float32),  # in=16
        "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight": np.zeros((48, 2), np.float32),
    })  # fmt: skip
    model = base()
    before = logits(model)
    with pytest.raises(AdapterError, match=r"lora_A: shape \(2, 16\) in the file, \(2, 8\) in the model"):
        load_adapter(model, str(folder))
    assert not any("lora" in n for n, _ in model.named_parameters())
    np.testing.assert_array_equal(logits(model), before)
    missing = write_peft_folder(tmp_path / "b", {k.replace("h.0", "h.5"): v for k, v in GOOD.items()})
    with pytest.raises(AdapterError, match=r"targets transformer\.h\.5\.attn\.c_attn, which this model does not"):
        load_adapter(base(), str(missing))


def test_an_adapter_saved_by_minilora_is_refused_on_another_base(tmp_path):
    trained_peft(LoraConfig(r=2)).save_adapter(str(tmp_path), format="peft")
    with pytest.raises(AdapterError, match="trained on another base model"):
        load_adapter(base(seed=1), str(tmp_path))


def test_pickle_files_and_other_methods_are_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(FileNotFoundError, match="adapter_model.bin is pickle"):
        load_adapter(base(), str(tmp_path), format="peft")
    ia3 = get_peft_model(base(), IA3Config())
    with pytest.raises(PeftFormatError, match="IA3Config; minilora writes PEFT.s format for .*LORA.* adapters only"):
        ia3.save_adapter(str(tmp_path / "x"), format="peft")


def test_save_and_load_on_a_device(tmp_path, device):
    peft = trained_peft(LoraConfig(r=2, lora_alpha=4, target_modules=("c_attn",)), base().to(device))
    want = logits(peft)
    peft.save_adapter(str(tmp_path), format="peft")
    loaded = load_adapter(base().to(device), str(tmp_path))
    assert loaded.get_submodule("transformer.h.0.attn.c_attn").lora_A.device == device
    np.testing.assert_allclose(logits(loaded), want, rtol=1e-6, atol=1e-6)
