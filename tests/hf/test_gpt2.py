"""Hugging Face GPT-2 folders: name mapping, the Conv1D transpose, round trips, dtypes and clear refusals."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="needs the hf extra: pip install 'minilora[hf]'")

from safetensors.numpy import load_file, save_file  # noqa: E402

import minilora as ml  # noqa: E402
from minilora.hf import UnsupportedCheckpointError, from_pretrained, save_pretrained  # noqa: E402
from minilora.hf.safetensors_io import read_metadata  # noqa: E402
from minilora.nn import GPT, GPTConfig  # noqa: E402

IDX = np.array([[1, 4, 0, 9, 3], [10, 2, 2, 7, 5]])


def numpy_gpt2_logits(t: dict[str, np.ndarray], cfg: dict, idx: np.ndarray) -> np.ndarray:
    """GPT2LMHeadModel's forward written from transformers' code, on Hugging Face's tensors (Conv1D: x @ W + b)."""
    t = {k: v.astype(np.float64) for k, v in t.items()}
    nh, d, eps = cfg["n_head"], cfg["n_embd"], 1e-5
    B, T = idx.shape

    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * t[p + ".weight"] + t[p + ".bias"]

    def conv1d(x, p):
        return x @ t[p + ".weight"] + t[p + ".bias"]

    def heads(x):
        return x.reshape(B, T, nh, d // nh).transpose(0, 2, 1, 3)

    x = t["transformer.wte.weight"][idx] + t["transformer.wpe.weight"][np.arange(T)]
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        q, k, v = np.split(conv1d(ln(x, p + "ln_1"), p + "attn.c_attn"), 3, axis=-1)
        att = heads(q) @ heads(k).transpose(0, 1, 3, 2) / np.sqrt(d // nh)
        att = np.where(np.tril(np.ones((T, T), bool)), att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        y = (att / att.sum(-1, keepdims=True)) @ heads(v)
        x = x + conv1d(y.transpose(0, 2, 1, 3).reshape(B, T, d), p + "attn.c_proj")
        h = conv1d(ln(x, p + "ln_2"), p + "mlp.c_fc")
        h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))  # gelu_new
        x = x + conv1d(h, p + "mlp.c_proj")
    return ln(x, "transformer.ln_f") @ t["transformer.wte.weight"].T


def logits(model: GPT, idx: np.ndarray = IDX) -> np.ndarray:
    with ml.no_grad():
        return model(idx)[0].numpy()


def tiny_gpt(bias: bool = True) -> GPT:
    ml.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, bias=bias))


# ----------------------------------------------------------------------------- loading
def test_from_pretrained_matches_a_numpy_gpt2_forward(make_hf_folder):
    folder, tensors = make_hf_folder()
    model = GPT.from_pretrained(folder)
    assert model.config == GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    assert model.dtype == np.float32
    assert not model.training  # eval mode, as Hugging Face's from_pretrained
    ref = numpy_gpt2_logits(tensors, {"n_head": 2, "n_embd": 8, "n_layer": 2}, IDX)
    np.testing.assert_allclose(logits(model), ref, rtol=1e-4, atol=1e-5)


def test_conv1d_weights_are_transposed_and_the_head_is_tied(make_hf_folder):
    folder, t = make_hf_folder()
    model = from_pretrained(folder)
    sd = model.state_dict()
    for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
        key = f"transformer.h.1.{name}.weight"
        np.testing.assert_array_equal(sd[key], t[key].T)  # ours (out, in), Hugging Face's (in, out)
    np.testing.assert_array_equal(sd["transformer.h.1.ln_2.bias"], t["transformer.h.1.ln_2.bias"])
    assert model.lm_head.weight is model.transformer.wte.weight


def test_bare_gpt2model_names_buffers_and_a_stored_tied_head_are_accepted(make_hf_folder):
    _, t = make_hf_folder("with_prefix")
    bare = {k.removeprefix("transformer."): v for k, v in t.items()}  # as GPT2Model saves (openai-community/gpt2)
    for i in range(2):
        bare[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 8, 8), np.float32))  # causal-mask buffers, not parameters
        bare[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    bare["lm_head.weight"] = t["transformer.wte.weight"].copy()
    folder, _ = make_hf_folder("bare", tensors=bare)
    reference = from_pretrained(folder.parent / "with_prefix")
    np.testing.assert_array_equal(logits(from_pretrained(folder)), logits(reference))


@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
def test_half_precision_files_load_as_float32(make_hf_folder, tmp_path, dtype):
    folder, t = make_hf_folder()
    path = folder / "model.safetensors"
    if dtype == np.float16:
        save_file({k: v.astype(np.float16) for k, v in t.items()}, str(path), metadata={"format": "pt"})
        expect = {k: v.astype(np.float16).astype(np.float32) for k, v in t.items()}
    else:  # NumPy has no bfloat16: write the file by hand (the upper 16 bits of each float32)
        header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
        for k, v in t.items():
            raw = (v.view(np.uint32) >> 16).astype("<u2").tobytes()
            header[k] = {"dtype": "BF16", "shape": list(v.shape), "data_offsets": [offset, offset + len(raw)]}
            blobs.append(raw)
            offset += len(raw)
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))
        expect = {k: ((v.view(np.uint32) >> 16) << 16).view(np.float32) for k, v in t.items()}
    model = from_pretrained(folder)
    assert model.dtype == np.float32
    np.testing.assert_array_equal(model.state_dict()["transformer.h.0.mlp.c_fc.weight"],
                                  expect["transformer.h.0.mlp.c_fc.weight"].T)  # fmt: skip


def test_sharded_checkpoints_load(make_hf_folder):
    folder, t = make_hf_folder()
    keys = sorted(t)
    (folder / "model.safetensors").unlink()
    for n, part in enumerate((keys[:10], keys[10:])):
        save_file({k: t[k] for k in part}, str(folder / f"model-0000{n + 1}-of-00002.safetensors"))
    weight_map = {k: f"model-0000{1 + (i >= 10)}-of-00002.safetensors" for i, k in enumerate(keys)}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    ref = numpy_gpt2_logits(t, {"n_head": 2, "n_embd": 8, "n_layer": 2}, IDX)
    np.testing.assert_allclose(logits(from_pretrained(folder)), ref, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "key,value",
    [
        ("activation_function", "relu"),
        ("activation_function", "gelu"),  # the erf form: not what minilora's GPT computes
        ("scale_attn_by_inverse_layer_idx", True),
        ("reorder_and_upcast_attn", True),
        ("add_cross_attention", True),
        ("scale_attn_weights", False),
        ("n_inner", 16),
        ("model_type", "gpt_neo"),
    ],
)
def test_unsupported_configs_are_refused_by_key_and_value(make_hf_folder, key, value):
    folder, _ = make_hf_folder(**{key: value})
    with pytest.raises(UnsupportedCheckpointError, match=rf"config\.json: {key}.*{value!r}"):
        from_pretrained(folder)


def test_n_inner_of_four_times_n_embd_is_accepted(make_hf_folder):
    folder, _ = make_hf_folder(n_inner=32)
    assert from_pretrained(folder).config.n_embd == 8


def test_every_bad_key_is_named_in_one_error(make_hf_folder):
    _, t = make_hf_folder("good")
    t = dict(t)
    del t["transformer.h.1.ln_1.bias"]
    t["transformer.h.0.attn.c_attn.weight"] = t["transformer.h.0.attn.c_attn.weight"].T.copy()  # (out, in): wrong
    t["transformer.h.0.attn.rotary.weight"] = np.zeros(3, np.float32)
    t["score.weight"] = np.zeros((2, 8), np.float32)  # a GPT2ForSequenceClassification head
    folder, _ = make_hf_folder("bad", tensors=t)
    with pytest.raises(UnsupportedCheckpointError) as err:
        from_pretrained(folder)
    msg = str(err.value)
    assert "model.safetensors" in msg and "4 problem(s)" in msg and "unexpected key: score.weight" in msg
    assert "missing key: transformer.h.1.ln_1.bias" in msg
    assert "unexpected key: transformer.h.0.attn.rotary.weight" in msg
    assert "transformer.h.0.attn.c_attn.weight: shape (24, 8) in the file, (8, 24) expected" in msg


def test_an_untied_head_is_refused(make_hf_folder):
    _, t = make_hf_folder("good")
    folder, _ = make_hf_folder("untied", tensors={**t, "lm_head.weight": t["transformer.wte.weight"] + 1})
    with pytest.raises(UnsupportedCheckpointError, match="lm_head.weight differs"):
        from_pretrained(folder)


def test_missing_files_are_named(make_hf_folder, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        from_pretrained(tmp_path / "nowhere")
    assert "nowhere" in str(err.value.filename)
    folder, _ = make_hf_folder()
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin.*safetensors"):
        from_pretrained(folder)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError) as err:
        from_pretrained(folder)
    assert err.value.filename.endswith("config.json")


def test_a_corrupt_file_is_named(make_hf_folder):
    folder, _ = make_hf_folder()
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ValueError, match="model.safetensors: not a safetensors file"):
        from_pretrained(folder)


# ----------------------------------------------------------------------------- saving
def expected_gpt2lmheadmodel_keys(n_layer: int) -> set[str]:
    """GPT2LMHeadModel.state_dict() keys (attn.bias is a non-persistent buffer; lm_head.weight is tied, not saved)."""
    per_layer = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                 "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                 "mlp.c_proj.weight", "mlp.c_proj.bias"]  # fmt: skip
    keys = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight", "transformer.ln_f.bias"}
    return keys | {f"transformer.h.{i}.{k}" for i in range(n_layer) for k in per_layer}


def test_save_pretrained_writes_gpt2lmheadmodel_names_shapes_and_layout(tmp_path):
    model = tiny_gpt()
    model.save_pretrained(tmp_path / "out")
    t = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert set(t) == expected_gpt2lmheadmodel_keys(2)
    assert read_metadata(tmp_path / "out" / "model.safetensors") == {"format": "pt"}  # transformers checks this
    shapes = {"attn.c_attn": (8, 24), "attn.c_proj": (8, 8), "mlp.c_fc": (8, 32), "mlp.c_proj": (32, 8)}
    for name, shape in shapes.items():  # Conv1D: (in, out)
        w = t[f"transformer.h.0.{name}.weight"]
        assert w.shape == shape and w.dtype == np.float32
        np.testing.assert_array_equal(w, model.get_submodule(f"transformer.h.0.{name}").weight.numpy().T)
    assert t["transformer.wte.weight"].shape == (11, 8) and t["transformer.wpe.weight"].shape == (8, 8)
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
    assert {k: cfg[k] for k in ("vocab_size", "n_positions", "n_ctx", "n_embd", "n_layer", "n_head")} == {
        "vocab_size": 11, "n_positions": 8, "n_ctx": 8, "n_embd": 8, "n_layer": 2, "n_head": 2}  # fmt: skip
    assert cfg["activation_function"] == "gelu_new" and cfg["n_inner"] is None and cfg["layer_norm_epsilon"] == 1e-5
    assert cfg["tie_word_embeddings"] is True and cfg["scale_attn_weights"] is True
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors"]  # no temp files


def test_round_trip_gives_identical_logits_and_generations(tmp_path):
    model = tiny_gpt()
    save_pretrained(model, tmp_path / "m")
    back = from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(logits(back), logits(model))
    a = model.generate(IDX[:, :3], 4, temperature=0)
    np.testing.assert_array_equal(back.generate(IDX[:, :3], 4, temperature=0), a)
    # the saved file is also what a from-scratch GPT-2 forward computes
    ref = numpy_gpt2_logits(load_file(str(tmp_path / "m" / "model.safetensors")), {"n_head": 2, "n_embd": 8,
                            "n_layer": 2}, IDX)  # fmt: skip
    np.testing.assert_allclose(logits(model), ref, rtol=1e-4, atol=1e-5)


def test_a_bias_free_model_is_saved_with_zero_biases(tmp_path):
    model = tiny_gpt(bias=False)
    save_pretrained(model, tmp_path / "nb")
    t = load_file(str(tmp_path / "nb" / "model.safetensors"))
    assert set(t) == expected_gpt2lmheadmodel_keys(2) and not t["transformer.h.0.mlp.c_fc.bias"].any()
    np.testing.assert_allclose(logits(from_pretrained(tmp_path / "nb")), logits(model), rtol=1e-5, atol=1e-6)


def test_save_refuses_state_gpt2_cannot_hold(tmp_path):
    model = tiny_gpt()
    model.transformer.h[0].attn.extra = ml.nn.Parameter(np.zeros(2, np.float32))
    with pytest.raises(UnsupportedCheckpointError, match=r"transformer\.h\.0\.attn\.extra.*merge_and_unload"):
        save_pretrained(model, tmp_path / "x")


def test_an_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    model = tiny_gpt()
    save_pretrained(model, tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    import safetensors.numpy

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.numpy, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(model, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


def test_loading_to_a_device_and_saving_from_it(make_hf_folder, tmp_path, device):
    folder, _ = make_hf_folder()
    on_cpu = from_pretrained(folder)
    model = from_pretrained(folder, device=device)
    assert model.device == device and model.lm_head.weight is model.transformer.wte.weight
    np.testing.assert_allclose(logits(model), logits(on_cpu), rtol=1e-5, atol=1e-6)
    save_pretrained(model, tmp_path / "back")  # device -> host happens once, explicitly, in save_pretrained
    assert load_file(str(tmp_path / "back" / "model.safetensors")).keys() == load_file(
        str(folder / "model.safetensors")).keys()  # fmt: skip
