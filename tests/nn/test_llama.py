"""Llama / Qwen2: Hugging Face names, a NumPy reference forward, gradchecks, GQA, RoPE offsets, hooks, errors."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn.gradcheck import check_module_grad
from minilora.nn.llama import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, Qwen2Config

TINY = {"vocab_size": 13, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 16}


def tiny(device="cpu", cls=LlamaConfig, seed=0, **over):
    ml.manual_seed(seed)
    m = LlamaForCausalLM(cls(**{**TINY, **over}))
    for n, p in m.named_parameters():  # norms and biases off their init, so that a mix-up shows
        if n.endswith("norm.weight") or n.endswith(".bias"):
            p.data = p.data + backend.host_rng().normal(0, 0.2, p.shape).astype(np.float32)
    return m.to(device)


def ids(rng, *shape, device="cpu"):
    return backend.to_device(rng.integers(0, TINY["vocab_size"], shape), device)


def numpy_llama_logits(sd, cfg, idx, start=0):
    """transformers' LlamaForCausalLM forward in float64 NumPy, from the state dict."""
    t = {k: np.asarray(backend.to_host(v), np.float64) for k, v in sd.items()}
    nh, nkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    B, T = idx.shape

    def rms(x, w):
        return w * x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.rms_norm_eps)

    def lin(x, name):
        y = x @ t[name + ".weight"].T
        return y + t[name + ".bias"] if name + ".bias" in t else y

    inv = 1.0 / cfg.rope_theta ** (np.arange(0, hd, 2) / hd)
    ang = np.arange(start, start + T)[:, None] * inv
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    x = t["model.embed_tokens.weight"][idx]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        h = rms(x, t[p + "input_layernorm.weight"])
        q = rope(lin(h, p + "self_attn.q_proj").reshape(B, T, nh, hd).transpose(0, 2, 1, 3))
        k = rope(lin(h, p + "self_attn.k_proj").reshape(B, T, nkv, hd).transpose(0, 2, 1, 3))
        v = lin(h, p + "self_attn.v_proj").reshape(B, T, nkv, hd).transpose(0, 2, 1, 3)
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)  # transformers' repeat_kv
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + np.triu(np.full((T, T), -np.inf), 1)
        a = np.exp(s - s.max(-1, keepdims=True))
        y = (a / a.sum(-1, keepdims=True)) @ v
        x = x + lin(y.transpose(0, 2, 1, 3).reshape(B, T, nh * hd), p + "self_attn.o_proj")
        h = rms(x, t[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        x = x + lin(g / (1 + np.exp(-g)) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    head = t.get("lm_head.weight", t["model.embed_tokens.weight"])
    return rms(x, t["model.norm.weight"]) @ head.T


def test_parameter_names_are_hugging_faces():
    names = [n for n, _ in tiny().named_parameters()]
    layer = ["input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
             "self_attn.o_proj.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
             "mlp.down_proj.weight"]
    assert names == (["model.embed_tokens.weight"] + [f"model.layers.{i}.{n}" for i in range(2) for n in layer]
                     + ["model.norm.weight", "lm_head.weight"])
    qwen = [n for n, _ in tiny(cls=Qwen2Config).named_parameters()]
    assert {n.rpartition(".")[0].rpartition(".")[2] for n in qwen if n.endswith(".bias")} == {"q_proj", "k_proj",
                                                                                             "v_proj"}
    assert tiny().model.layers[0].self_attn.k_proj.out_features == 2 * 4  # num_key_value_heads * head_dim
    tied = tiny(tie_word_embeddings=True)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight


@pytest.mark.parametrize("cls", [LlamaConfig, Qwen2Config])
def test_forward_matches_numpy_reference(device, rng, cls):
    m = tiny(device, cls=cls)
    x = ids(rng, 2, 7)
    logits, _ = m(backend.to_device(x, device))
    want = numpy_llama_logits(m.state_dict(), m.config, backend.to_host(x))
    np.testing.assert_allclose(backend.to_host(logits.data), want, rtol=1e-4, atol=1e-5)


def test_whole_model_gradcheck(device, rng):
    m = tiny(device, cls=Qwen2Config, num_hidden_layers=1).double()
    x = ids(rng, 2, 5, device=device)
    check_module_grad(m, lambda i, t: m(i, t)[1], [x, ids(rng, 2, 5, device=device)])


def test_kv_cache_prompt_and_prefix_use_shifted_positions(device, rng):
    m = tiny(device)
    x = ids(rng, 2, 6, device=device)
    for kw in ({}, {"prompt_embeds": ml.Tensor(m.model.embed_tokens.weight.data[:2])}):
        a = m.generate(x, 5, temperature=0, **kw)
        b = m.generate(x, 5, temperature=0, use_cache=False, **kw)
        np.testing.assert_array_equal(backend.to_host(a), backend.to_host(b))
    # a prefix made of the cached keys/values of 3 real tokens acts exactly as those tokens: positions start at 3
    p = ids(rng, 2, 3, device=device)
    cache = ml.nn.KVCache(2, 16)
    with ml.no_grad():
        m(p, kv_cache=cache)
        whole, _ = m(backend.module_for(device).concatenate([p, x], axis=1))
    kv = [(ml.Tensor(c.k[:, :, :3].copy()), ml.Tensor(c.v[:, :, :3].copy())) for c in cache.layers]
    with ml.no_grad():
        after, _ = m(x, prefix_kv=kv)
    np.testing.assert_allclose(backend.to_host(after.data), backend.to_host(whole.data)[:, 3:], rtol=1e-5, atol=1e-6)
    a = m.generate(x, 4, temperature=0, prefix_kv=kv)
    b = m.generate(x, 4, temperature=0, prefix_kv=kv, use_cache=False)
    np.testing.assert_array_equal(backend.to_host(a), backend.to_host(b))


def test_rope_offset_is_the_cache_position(rng):
    m = tiny()
    x = ids(rng, 1, 6)
    want, _ = m(x)
    cache = ml.nn.KVCache(2, 16)
    with ml.no_grad():
        m(x[:, :4], kv_cache=cache)
        tail, _ = m(x[:, 4:], kv_cache=cache)
    np.testing.assert_allclose(tail.numpy(), want.numpy()[:, 4:], rtol=1e-5, atol=1e-6)


def test_classifier_from_lm_and_padding(rng):
    lm = tiny()
    clf = LlamaForSequenceClassification.from_lm(lm, 3)
    np.testing.assert_array_equal(clf.model.norm.weight.numpy(), lm.model.norm.weight.numpy())
    x = ids(rng, 2, 5)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    logits, loss = clf(x, np.array([0, 2]), attention_mask=mask)
    short, _ = clf(x[1:, :3])
    np.testing.assert_allclose(logits.numpy()[1], short.numpy()[0], rtol=1e-5, atol=1e-6)
    assert loss is not None and logits.shape == (2, 3)


@pytest.mark.parametrize("over, field", [
    ({"num_key_value_heads": 3}, "num_key_value_heads"), ({"hidden_size": 18}, "num_attention_heads"),
    ({"head_dim": 5}, "head_dim"), ({"num_hidden_layers": 0}, "num_hidden_layers"),
])
def test_bad_configs_are_one_line_errors(over, field):
    with pytest.raises(ValueError, match=field) as e:
        LlamaConfig(**{**TINY, **over})
    assert "\n" not in str(e.value)


def test_positions_beyond_max_position_embeddings(rng):
    m = tiny()
    with pytest.raises(ValueError, match="exceeds max_position_embeddings 16") as e:
        m(ids(rng, 1, 17))
    assert "\n" not in str(e.value)
    kv = [(ml.Tensor(np.zeros((1, 2, 4, 4), np.float32)),) * 2 for _ in range(2)]
    with pytest.raises(ValueError, match=r"4 prefix\) exceeds max_position_embeddings"):
        m(ids(rng, 1, 13), prefix_kv=kv)
    with pytest.raises(ValueError, match="num_key_value_heads=2"):
        m(ids(rng, 1, 3), prefix_kv=[(ml.Tensor(np.zeros((1, 4, 2, 4), np.float32)),) * 2] * 2)


def test_config_round_trip_and_registry():
    from minilora.models import build_model, family_of

    cfg = Qwen2Config(**TINY)
    assert Qwen2Config.from_dict(cfg.to_dict()) == cfg and cfg.n_kv_head == 2 and cfg.head_dim == 4
    m = build_model({"family": "qwen2", **TINY})
    assert family_of(m).name == "qwen2" and type(m).__name__ == "Qwen2ForCausalLM"
    fam = family_of(tiny())
    assert fam.name == "llama" and fam.lora_targets == ("q_proj", "v_proj") and fam.num_kv_heads(cfg) == 2
