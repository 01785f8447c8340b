"""Linear4bit and quantize_model: forward against the dequantised weight, gradients, no float copy, storage."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.gradcheck import check_grad
from minilora.nn.layers import Linear
from minilora.peft.qlora import Linear4bit, linear4bit, quantize_model, storage_report


def _layer(device, in_f=70, out_f=12, bias=True, double_quant=True):
    ml.manual_seed(0)
    lin = Linear(in_f, out_f, bias=bias).to(device)
    return lin, Linear4bit.from_linear(lin, block_size=64, double_quant=double_quant)


@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_is_x_times_dequantised_weight(device, rng, double_quant, dtype):
    lin, q = _layer(device, double_quant=double_quant)
    q.to(dtype=dtype)  # casts the bias and the float scale buffers: the compute dtype follows
    x = rng.standard_normal((2, 3, 70)).astype(dtype)
    w = backend.to_host(q.dequantize())
    assert w.dtype == dtype
    b = lin.bias.numpy().astype(dtype)
    y = q(ml.tensor(x, device=device))
    assert y.dtype == dtype and y.shape == (2, 3, 12) and y.device == device
    np.testing.assert_allclose(y.numpy(), x @ w.T + b, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    # close to the float layer: within the largest half-gap between levels (0.152) of the absmax
    np.testing.assert_allclose(w, lin.weight.numpy(), atol=0.16 * np.abs(lin.weight.numpy()).max())


def test_gradcheck_wrt_input_and_bias(device, rng):
    _, q = _layer(device, in_f=6, out_f=4)
    x = ml.tensor(rng.standard_normal((2, 3, 6)), device=device, requires_grad=True)
    b = ml.tensor(rng.standard_normal(4), device=device, requires_grad=True)
    weight = q.quantized_weight()
    check_grad(lambda x_, b_: linear4bit(x_, weight, b_), [x, b])
    check_grad(lambda x_: q.double()(x_), [x])


def test_backward_rebuilds_weight_and_gives_it_no_gradient(device, rng):
    lin, q = _layer(device)
    x = ml.tensor(rng.standard_normal((5, 70)).astype(np.float32), device=device, requires_grad=True)
    y = q(x)
    assert y._ctx.saved == ()  # nothing saved: W is dequantised again in backward
    g = rng.standard_normal((5, 12)).astype(np.float32)
    y.backward(ml.tensor(g, device=device))
    np.testing.assert_allclose(backend.to_host(x.grad), g @ backend.to_host(q.dequantize()), rtol=1e-5, atol=1e-6)
    assert q.bias.grad is None and not q.bias.requires_grad
    assert [n for n, _ in q.named_parameters()] == ["bias"]


def test_no_float_weight_is_kept(device):
    _, q = _layer(device, in_f=128, out_f=64)
    assert not hasattr(q, "weight")
    buffers = dict(q.named_buffers())
    assert set(buffers) == {"weight_codes", "weight_scale_codes", "weight_scale_scales", "weight_scale_offset"}
    assert buffers["weight_codes"].dtype == np.uint8 and buffers["weight_codes"].shape == (128 * 64 // 2,)
    assert buffers["weight_scale_codes"].dtype == np.int8
    assert all(b.size < 128 * 64 // 2 + 1 for b in buffers.values())
    floats = [v for v in vars(q).values() if backend.is_array(v) and v.dtype.kind == "f"]
    assert floats == []
    # 64 x 128 weights: 4096 code bytes + 128 scale codes + 1 group scale + offset = 4232 bytes
    assert q.weight_bytes() == 4096 + 128 + 4 + 4
    assert q.weight_bytes() / (128 * 64 * 4) <= 0.14


def test_state_dict_round_trip_and_device_move(device, rng):
    _, q = _layer("cpu", double_quant=True)
    fresh = Linear4bit(70, 12, bias=True, block_size=64, double_quant=True)
    fresh.load_state_dict(q.state_dict())
    fresh.to(device)
    x = rng.standard_normal((3, 70)).astype(np.float32)
    np.testing.assert_array_equal(fresh(ml.tensor(x, device=device)).numpy(), q(ml.tensor(x)).numpy())


def test_bad_input_is_refused_clearly(device):
    _, q = _layer(device)
    with pytest.raises(ValueError, match=r"linear4bit: input of shape \(2, 5\) does not fit .* \(12, 70\)"):
        q(ml.tensor(np.ones((2, 5), np.float32), device=device))
    with pytest.raises(ValueError, match=r"set_weight: weight of shape \(3, 3\) does not match"):
        q.set_weight(backend.to_device(np.ones((3, 3), np.float32), device))


# ----------------------------------------------------------------------------- whole models (tiny GPT)
def _gpt(device):
    from minilora.nn import GPT, GPTConfig  # noqa: PLC0415

    ml.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=32)).to(device)


def test_quantize_model_replaces_targets_and_stays_close(device, rng):
    model = _gpt(device)
    idx = rng.integers(0, 11, (2, 6))
    ref, _ = model(idx)
    quantize_model(model, target_modules="all-linear")
    kinds = {n: type(m).__name__ for n, m in model.named_modules()}
    for i in range(2):
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            assert kinds[f"transformer.h.{i}.{name}"] == "Linear4bit"
    assert kinds["lm_head"] == "Linear"  # all-linear leaves the (tied) head alone
    out, _ = model(idx)
    err = np.abs(out.numpy() - ref.numpy()).max()
    assert 0 < err < 0.1 * np.abs(ref.numpy()).max()
    report = storage_report(model)
    assert report.quantized_layers == 8 and report.ratio <= 0.14
    assert report.model_bytes < report.model_float32_bytes
    assert "NF4 layers" in str(report)


def test_quantize_model_targets_and_errors(device):
    model = quantize_model(_gpt(device), target_modules=["c_attn"], double_quant=False)
    q = [n for n, m in model.named_modules() if isinstance(m, Linear4bit)]
    assert q == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    with pytest.raises(ValueError, match="lm_head.weight is tied to transformer.wte.weight"):
        quantize_model(_gpt(device), target_modules=["lm_head"])
    with pytest.raises(ValueError):
        quantize_model(_gpt(device), target_modules=["no_such_layer"])


def test_qlora_gradcheck_through_the_4bit_gpt_and_base_untouched(device, rng):
    from minilora.nn.gradcheck import check_module_grad  # noqa: PLC0415
    from minilora.optim import AdamW  # noqa: PLC0415
    from minilora.peft import LoraConfig, get_peft_model  # noqa: PLC0415

    ml.manual_seed(0)
    model = get_peft_model(_gpt(device), LoraConfig(r=2, target_modules=["c_attn", "mlp.c_fc"], quantize=True))
    assert sum(isinstance(m, Linear4bit) for m in model.modules()) == 8  # QLoRA stores every Linear but the head
    for name, p in model.named_parameters():
        if name.endswith("lora_B"):
            p.data = backend.to_device(rng.standard_normal(p.shape) * 0.1, device, p.dtype)  # so g_A is not zero
    idx, tgt = rng.integers(0, 11, (2, 5)), rng.integers(0, 11, (2, 5))
    model.double()
    reports = check_module_grad(model, lambda: model(idx, tgt)[1], full_max=0, n_directions=2)
    assert set(reports[0].per_input) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n for n in reports[0].per_input)
    frozen = {n: backend.to_host(b).copy() for n, b in model.named_buffers()}
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    _, loss = model(idx, tgt)
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    assert all(np.array_equal(frozen[n], backend.to_host(b)) for n, b in model.named_buffers())
