"""GPT: names, tying, init, whole-model gradchecks, causality, padding, hooks, generation, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import GPT, GPTConfig
from minilora.nn.gradcheck import check_module_grad

TINY = {"vocab_size": 11, "block_size": 8, "n_layer": 2, "n_head": 2, "n_embd": 8}


def tiny(device, seed=0, **over):
    ml.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY, **over})).to(device)


def ids(rng, *shape, device="cpu"):
    return backend.to_device(rng.integers(0, TINY["vocab_size"], shape), device)


def test_parameter_names_are_nanogpt_and_gpt2():
    names = [n for n, _ in tiny("cpu").named_parameters()]
    layer = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
             "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
             "mlp.c_proj.weight", "mlp.c_proj.bias"]
    expected = (["transformer.wte.weight", "transformer.wpe.weight"]
                + [f"transformer.h.{i}.{n}" for i in range(2) for n in layer]
                + ["transformer.ln_f.weight", "transformer.ln_f.bias"])
    assert names == expected  # lm_head.weight is tied: listed once, under its first name
    assert "lm_head.weight" in tiny("cpu").state_dict()
    no_bias = [n for n, _ in tiny("cpu", bias=False).named_parameters()]
    assert not any(n.endswith(".bias") for n in no_bias)


def test_tied_head_counted_once_and_gradient_summed(device, rng):
    m = tiny(device)
    assert m.lm_head.weight is m.transformer.wte.weight
    C, V = 8, 11
    per_layer = 4 * C + (3 * C * C + 3 * C) + (C * C + C) + (4 * C * C + 4 * C) + (4 * C * C + C)
    assert m.num_parameters() == V * C + 8 * C + 2 * per_layer + 2 * C
    x, y = ids(rng, 2, 5, device=device), ids(rng, 2, 5, device=device)
    m(x, y)[1].backward()
    tied = m.lm_head.weight.grad
    # untie (two separate Parameters holding the same values): the tied gradient is the sum of both
    m.zero_grad()
    m.lm_head.weight = ml.nn.Parameter(m.transformer.wte.weight.data.copy())
    m(x, y)[1].backward()
    np.testing.assert_allclose(backend.to_host(tied), backend.to_host(m.lm_head.weight.grad)
                               + backend.to_host(m.transformer.wte.weight.grad), rtol=1e-5, atol=1e-7)


def test_gpt2_init():
    m = tiny("cpu", n_embd=64, n_head=4, vocab_size=500, block_size=64, n_layer=4)
    sd = {n: p.numpy() for n, p in m.named_parameters()}
    assert abs(sd["transformer.wte.weight"].std() - 0.02) < 0.002
    assert abs(sd["transformer.h.0.mlp.c_fc.weight"].std() - 0.02) < 0.002
    assert abs(sd["transformer.h.0.mlp.c_proj.weight"].std() - 0.02 / math.sqrt(8)) < 0.001
    assert abs(sd["transformer.h.3.attn.c_proj.weight"].std() - 0.02 / math.sqrt(8)) < 0.001
    assert not sd["transformer.h.0.attn.c_attn.bias"].any()
    assert (sd["transformer.h.1.ln_2.weight"] == 1).all() and not sd["transformer.ln_f.bias"].any()
    assert sd["transformer.wte.weight"].dtype == np.float32


def test_same_seed_same_weights_on_cpu_and_device(device):
    a, b = tiny("cpu", seed=5), tiny(device, seed=5)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)


@pytest.mark.parametrize("bias", [True, False])
def test_whole_model_gradcheck_through_the_loss(device, rng, bias):
    m = tiny(device, bias=bias).double()
    x, y = ids(rng, 2, 5, device=device), ids(rng, 2, 5, device=device)
    y[0, 1] = -100  # an ignored target
    check_module_grad(m, lambda x, y: m(x, y)[1], [x, y], full_max=24, n_directions=2)


def test_gradcheck_of_the_fine_tuning_hooks(device, rng):
    """prefix_kv and prompt_embeds receive correct gradients through the frozen model (padding mask on)."""
    m = tiny(device).double().requires_grad_(False)
    x, y = ids(rng, 2, 4, device=device), ids(rng, 2, 4, device=device)
    mask = backend.to_device(np.array([[1, 1, 1, 0], [1, 1, 1, 1]]), device)
    prefix = [ml.tensor(rng.standard_normal((1, 2, 2, 4)), device=device, requires_grad=True) for _ in range(4)]
    prompt = ml.tensor(rng.standard_normal((2, 8)), device=device, requires_grad=True)

    def loss(prompt, k0, v0, k1, v1):
        return m(x, y, attention_mask=mask, prefix_kv=[(k0, v0), (k1, v1)], prompt_embeds=prompt)[1]

    check_module_grad(m, loss, [prompt, *prefix])


def test_causality(device, rng):
    m = tiny(device)
    x = backend.to_host(ids(rng, 1, 6))
    base = m(backend.to_device(x, device))[0].numpy()
    for t in range(6):
        x2 = x.copy()
        x2[0, t] = (x2[0, t] + 1) % 11
        out = m(backend.to_device(x2, device))[0].numpy()
        np.testing.assert_array_equal(out[:, :t], base[:, :t])


def test_padding_changes_nothing_else(device, rng):
    m = tiny(device)
    x = backend.to_host(ids(rng, 2, 6))
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    base = m(backend.to_device(x, device), attention_mask=backend.to_device(mask, device))[0].numpy()
    x2 = x.copy()
    x2[0, 4:] = [3, 7]
    out = m(backend.to_device(x2, device), attention_mask=backend.to_device(mask, device))[0].numpy()
    np.testing.assert_array_equal(out[mask == 1], base[mask == 1])
    short = m(backend.to_device(x[:1, :4], device))[0].numpy()
    np.testing.assert_allclose(base[0, :4], short[0], rtol=1e-5, atol=1e-6)


def test_prompt_embeds_act_like_tokens(device, rng):
    """Soft prompts equal to token embeddings give the logits of those tokens followed by the input."""
    m = tiny(device)
    p, x = ids(rng, 1, 3, device=device), ids(rng, 1, 4, device=device)
    prompt = ml.Tensor(m.transformer.wte.weight.data[p[0]])  # (3, C)
    logits, _ = m(x, prompt_embeds=prompt)
    full, _ = m(backend.get_array_module(x).concatenate([p, x], axis=1))
    assert logits.shape == (1, 4, 11)
    np.testing.assert_allclose(logits.numpy(), full.numpy()[:, 3:], rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip(device, rng):
    a, b = tiny(device, seed=1), tiny(device, seed=2)
    x = ids(rng, 2, 5, device=device)
    assert not np.allclose(a(x)[0].numpy(), b(x)[0].numpy())
    b.load_state_dict({k: backend.to_host(v) for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(a(x)[0].numpy(), b(x)[0].numpy())
    assert b.lm_head.weight is b.transformer.wte.weight


def test_errors(device, rng):
    m = tiny(device)
    with pytest.raises(ValueError, match="sequence of 9 positions .* exceeds block_size 8"):
        m(ids(rng, 1, 9, device=device))
    with pytest.raises(ValueError, match=r"3 soft prompt \+ 6 tokens\) exceeds block_size 8"):
        m(ids(rng, 1, 6, device=device), prompt_embeds=ml.tensor(np.zeros((3, 8)), device=device))
    for bad in (11, -1):
        x = backend.to_host(ids(rng, 1, 4))
        x[0, 2] = bad
        with pytest.raises(IndexError, match=rf"GPT: token id {bad} is outside the vocabulary \[0, 11\)"):
            m(backend.to_device(x, device))
    with pytest.raises(TypeError, match="token ids must be integers"):
        m(ml.tensor(np.zeros((1, 3)), device=device))
    with pytest.raises(ValueError, match="targets must have the shape of idx"):
        m(ids(rng, 2, 3, device=device), ids(rng, 2, 4, device=device))
    with pytest.raises(ValueError, match="not divisible by n_head"):
        GPTConfig(11, 8, 2, 3, 8)


def test_config_round_trip():
    cfg = GPTConfig(**TINY, dropout=0.1, bias=False)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg and cfg.layer_norm_epsilon == 1e-5
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['n_embed'\]"):
        GPTConfig.from_dict({**TINY, "n_embed": 3})


def test_float32_logits_and_loss(device, rng):
    logits, loss = tiny(device)(ids(rng, 2, 3, device=device), ids(rng, 2, 3, device=device))
    assert logits.dtype == np.float32 and loss.dtype == np.float32 and loss.shape == ()
    assert abs(loss.item() - math.log(11)) < 0.2  # small init: close to uniform


# ----------------------------------------------------------------------------- generation
def _hooks(m, rng, device, kind):
    if kind == "prefix":
        return {"prefix_kv": [tuple(ml.tensor(rng.standard_normal((1, 2, 2, 4)).astype(np.float32), device=device)
                                    for _ in range(2)) for _ in range(2)]}
    if kind == "prompt":
        return {"prompt_embeds": ml.tensor(rng.standard_normal((2, 8)).astype(np.float32), device=device)}
    if kind == "mask":
        return {"attention_mask": backend.to_device(np.array([[0, 1, 1], [1, 1, 1]]), device)}
    return {}


@pytest.mark.parametrize("kind", ["plain", "prefix", "prompt", "mask"])
@pytest.mark.parametrize("temperature,top_k", [(0.0, None), (1.0, None), (0.8, 3)])
def test_generation_with_cache_equals_recomputation(device, rng, kind, temperature, top_k):
    m = tiny(device).double()  # float64: no rounding ties between the two paths
    x = ids(rng, 2, 3, device=device)
    kw = _hooks(m, rng, device, kind)
    if kind in ("prefix", "prompt"):
        kw = {k: (v if not isinstance(v, list) else [tuple(t.astype(np.float64) for t in p) for p in v])
              for k, v in kw.items()}
        if kind == "prompt":
            kw["prompt_embeds"] = kw["prompt_embeds"].astype(np.float64)
    n = 9  # runs past block_size 8: the cache gives way to the cropped window
    a = m.generate(x, n, temperature=temperature, top_k=top_k, seed=7, **kw)
    b = m.generate(x, n, temperature=temperature, top_k=top_k, seed=7, use_cache=False, **kw)
    assert a.shape == (2, 3 + n)
    np.testing.assert_array_equal(backend.to_host(a), backend.to_host(b))
    np.testing.assert_array_equal(backend.to_host(a[:, :3]), backend.to_host(x))


def test_greedy_is_deterministic_and_matches_argmax(device, rng):
    m = tiny(device)
    x = ids(rng, 1, 4, device=device)
    a = m.generate(ml.Tensor(x), 3, temperature=0)
    assert isinstance(a, ml.Tensor)
    np.testing.assert_array_equal(a.numpy(), m.generate(ml.Tensor(x), 3, temperature=0).numpy())
    first = m(x)[0].numpy()[0, -1].argmax()
    assert a.numpy()[0, 4] == first
    ml.manual_seed(0)
    s1 = m.generate(x, 4)
    ml.manual_seed(0)
    np.testing.assert_array_equal(backend.to_host(s1), backend.to_host(m.generate(x, 4)))


def test_generate_keeps_training_mode_and_refuses_unknown_kwargs(device, rng):
    m = tiny(device, dropout=0.2)
    m.generate(ids(rng, 1, 2, device=device), 2)
    assert m.training
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['temp'\]"):
        m.generate(ids(rng, 1, 2, device=device), 2, temp=1.0)
