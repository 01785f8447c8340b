"""gradient_checkpointing_enable: the same gradients as without, for full fine-tuning and every PEFT method."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import minilora as ml
from minilora.activation_checkpoint import Checkpoint
from minilora.models import build_model, families, get_family
from minilora.nn import GPT, GPTConfig
from minilora.peft import LoraConfig, get_peft_model, registry

CFG = GPTConfig(vocab_size=11, block_size=12, n_layer=3, n_head=2, n_embd=8, dropout=0.2)
TINY = {  # every family, dropout on, 3 blocks (the last is not checkpointed); a new family must be added here
    "gpt2": CFG.to_dict(),
    "llama": {"vocab_size": 11, "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 3,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 12,
              "attention_dropout": 0.2},
}
TINY["qwen2"] = TINY["llama"]


def test_every_family_is_covered() -> None:
    assert set(TINY) == set(families())


def _method_configs() -> dict[str, object]:
    """Every registered method variant at its defaults (dropout on where it has one)."""
    out: dict[str, object] = {}
    for name, (method, _) in registry.variants().items():
        fields = {f.name for f in dataclasses.fields(method.config_cls)}
        kw = {"lora_dropout": 0.3} if "lora_dropout" in fields else {}
        if "num_virtual_tokens" in fields:
            kw["num_virtual_tokens"] = 3
        if "quant_block_size" in fields:
            kw["quant_block_size"] = 8
        out[name] = method.config(name, **kw)
    return out


METHODS = _method_configs()


def _for_family(config: object, family: str) -> object:
    """The method's targets as the family names them (GPT-2's are the configs' defaults)."""
    fam, fields = get_family(family), {f.name for f in dataclasses.fields(config)}
    if family == "gpt2" or "target_modules" not in fields:
        return config
    if "feedforward_modules" in fields:
        return dataclasses.replace(config, target_modules=fam.ia3_targets, feedforward_modules=fam.ia3_feedforward)
    return dataclasses.replace(config, target_modules=fam.lora_targets)


def _grads(device: str, method: str | None, checkpointing: bool, accum: int = 1,
           family: str = "gpt2", num_layers: int | None = None) -> dict[str, np.ndarray]:
    ml.manual_seed(0)
    model = build_model({"family": family, **TINY[family]}).to(device, "float64")
    if method is not None:
        model = get_peft_model(model, _for_family(METHODS[method], family))
        model.to(device, "float64")
    noise = np.random.default_rng(7)
    for p in model.parameters():  # move off the init (LoRA's B = 0 would give A no gradient)
        if p.requires_grad:
            p.data = p.data + p.xp.asarray(0.1 * noise.standard_normal(p.shape))
    if checkpointing:
        model.gradient_checkpointing_enable(num_layers=num_layers)
    ml.manual_seed(5)  # dropout draws start from the same state in both runs
    rng = np.random.default_rng(1)
    for _ in range(accum):  # gradient accumulation: grads sum over micro-batches
        idx = rng.integers(0, 11, (2, 6))
        _, loss = model(idx, targets=np.roll(idx, -1, axis=1))
        loss.backward()
    return {n: p.grad.numpy() if hasattr(p.grad, "numpy") else ml.Tensor(p.grad).numpy()
            for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", [None, *METHODS])
@pytest.mark.parametrize("family", sorted(TINY))
def test_same_gradients_with_and_without(device: str, method: str | None, family: str) -> None:
    plain = _grads(device, method, False, family=family)
    ckpt = _grads(device, method, True, family=family)
    assert plain and plain.keys() == ckpt.keys()
    for name in plain:
        assert np.allclose(plain[name], ckpt[name], rtol=0, atol=1e-12), name
        assert np.abs(plain[name]).max() > 0, f"{name} got no gradient: the test would not see a bug"


@pytest.mark.parametrize("num_layers", [0, 1, 3])
def test_num_layers_checkpoints_the_first_blocks_with_the_same_gradients(num_layers: int) -> None:
    plain, ckpt = _grads("cpu", "lora", False), _grads("cpu", "lora", True, num_layers=num_layers)
    for name in plain:
        assert np.allclose(plain[name], ckpt[name], rtol=0, atol=1e-12), name
    model = GPT(CFG)
    model.gradient_checkpointing_enable(num_layers=num_layers)
    assert _checkpoint_nodes(model(np.zeros((1, 4), np.int64))[0]) == num_layers  # 3 = every block, the last too


@pytest.mark.parametrize("bad", [-1, 4, 1.5, True, "2"])
def test_num_layers_out_of_range_is_refused_and_changes_nothing(bad: object) -> None:
    model = GPT(CFG)
    with pytest.raises(ValueError, match=r"num_layers must be a whole number from 0 to 3 .* got"):
        model.gradient_checkpointing_enable(num_layers=bad)  # type: ignore[arg-type]
    assert not model.is_gradient_checkpointing and model.gradient_checkpointing_layers is None


def _checkpoint_nodes(logits: ml.Tensor) -> int:
    seen, stack, n = set(), [logits], 0
    while stack:
        t = stack.pop()
        if id(t) in seen or t._ctx is None:
            continue
        seen.add(id(t))
        n += isinstance(t._ctx, Checkpoint)
        stack.extend(t._ctx.inputs)
    return n


def test_gradient_accumulation_matches() -> None:
    plain, ckpt = _grads("cpu", "lora", False, accum=3), _grads("cpu", "lora", True, accum=3)
    for name in plain:
        assert np.allclose(plain[name], ckpt[name], rtol=0, atol=1e-12), name


def test_blocks_are_checkpointed_only_when_training_with_a_graph() -> None:
    model = GPT(CFG)
    assert not model.is_gradient_checkpointing
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    idx = np.zeros((1, 4), np.int64)
    checkpoint_nodes = _checkpoint_nodes

    assert checkpoint_nodes(model(idx)[0]) == CFG.n_layer - 1  # all but the last block
    model.eval()
    assert checkpoint_nodes(model(idx)[0]) == 0
    model.train()
    with ml.no_grad():
        assert model(idx)[0]._ctx is None
    assert model.generate(idx, 2).shape == (1, 6)  # the KV cache path is untouched
    model.gradient_checkpointing_disable()
    assert checkpoint_nodes(model(idx)[0]) == 0


def test_peft_model_forwards_the_switch() -> None:
    peft = get_peft_model(GPT(CFG), LoraConfig())
    peft.gradient_checkpointing_enable()
    assert peft.base_model.is_gradient_checkpointing
    with pytest.raises(ValueError, match="use_reentrant"):
        peft.gradient_checkpointing_enable({"use_reentrant": True})
