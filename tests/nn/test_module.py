"""The module system: registration, walking, state_dict round trip and refusal, devices, ties, freezing."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import Module, ModuleDict, ModuleList, Parameter, StateDictError


class Leaf(Module):
    def __init__(self, n: int = 3) -> None:
        super().__init__()
        self.w = Parameter(np.arange(n * 2, dtype=np.float32).reshape(n, 2))
        self.b = Parameter(np.zeros(2, dtype=np.float32))
        self.register_buffer("codes", np.arange(4, dtype=np.uint8))
        self.register_buffer("scratch", np.ones(2, dtype=np.float32), persistent=False)
        self.note = "plain attribute"

    def forward(self, x):
        return x @ self.w + self.b


class Tree(Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = ModuleList([Leaf(), Leaf()])
        self.heads = ModuleDict({"a": Leaf(2)})
        self.blocks[1].w = self.blocks[0].w  # tied


def test_registration_and_names():
    t = Tree()
    names = [n for n, _ in t.named_parameters()]
    assert names == ["blocks.0.w", "blocks.0.b", "blocks.1.b", "heads.a.w", "heads.a.b"]
    all_names = [n for n, _ in t.named_parameters(remove_duplicate=False)]
    assert "blocks.1.w" in all_names and len(all_names) == 6
    assert [n for n, _ in t.named_modules()] == ["", "blocks", "blocks.0", "blocks.1", "heads", "heads.a"]
    assert [n for n, _ in t.named_children()] == ["blocks", "heads"]
    assert t.num_parameters() == 6 + 2 + 2 + 4 + 2
    assert t.get_submodule("heads.a") is t.heads["a"] is t.heads.a
    assert t.blocks[0].note == "plain attribute"
    assert isinstance(t.blocks[0].codes, np.ndarray)


def test_set_submodule_and_errors():
    t = Tree()
    new = Leaf(5)
    t.set_submodule("blocks.1", new)
    assert t.blocks[1] is new
    t.set_submodule("heads.a", Leaf(4))
    assert t.heads.a.w.shape == (4, 2)
    with pytest.raises(AttributeError, match=r"blocks has no submodule '7'"):
        t.get_submodule("blocks.7")
    with pytest.raises(AttributeError, match="has no submodule 'nope'"):
        t.set_submodule("heads.nope", Leaf())
    with pytest.raises(TypeError, match="cannot assign a Tensor to parameter 'w'"):
        t.blocks[0].w = ml.tensor(np.ones((3, 2)))


def test_assign_before_init_is_a_clear_error():
    class Bad(Module):
        def __init__(self) -> None:
            self.w = Parameter(np.ones(2))

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Bad()


def test_state_dict_round_trip(device):
    t = Tree().to(device)
    sd = t.state_dict()
    assert "blocks.1.w" in sd and "blocks.0.codes" in sd and "blocks.0.scratch" not in sd
    assert all(backend.device_of(a) == device for a in sd.values())
    host = {k: backend.to_host(v) * 0 + 7 for k, v in sd.items()}  # NumPy arrays, all 7
    host["blocks.0.codes"] = np.full(4, 9, dtype=np.uint8)
    res = t.load_state_dict(host)
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert t.blocks[0].w.device == device
    np.testing.assert_array_equal(t.blocks[1].w.numpy(), np.full((3, 2), 7))
    assert t.blocks[1].w is t.blocks[0].w  # ties survive a load
    np.testing.assert_array_equal(backend.to_host(t.blocks[0].codes), np.full(4, 9))
    assert t.blocks[0].codes.dtype == np.uint8
    host["heads.a.b"][:] = 1  # the model holds its own copy
    assert t.heads.a.b.numpy()[0] == 7
    sd2 = t.state_dict()
    sd2["heads.a.b"][...] = 5  # and state_dict() returns copies
    assert t.heads.a.b.numpy()[0] == 7


def test_load_casts_dtype_and_accepts_device_arrays(device):
    t = Tree().to(device)
    state = {k: backend.to_device(backend.to_host(v).astype(np.float64) if v.dtype.kind == "f"
                                  else backend.to_host(v), device) for k, v in t.state_dict().items()}
    t.load_state_dict(state)
    assert t.blocks[0].w.dtype == np.float32


def test_refusal_names_every_problem_and_changes_nothing():
    t = Tree()
    before = t.state_dict()
    bad = dict(before)
    del bad["heads.a.b"]
    bad["blocks.0.b"] = np.zeros(3, dtype=np.float32)  # wrong shape
    bad["blocks.0.codes"] = np.zeros(4, dtype=np.float32)  # float into a uint8 buffer
    bad["extra.weight"] = np.zeros(1)
    bad["blocks.0.w"] = np.full((3, 2), 42, dtype=np.float32)  # a valid entry: must not be applied
    with pytest.raises(StateDictError) as err:
        t.load_state_dict(bad)
    msg = str(err.value)
    for needle in ("missing key: heads.a.b", "unexpected key: extra.weight", "blocks.0.b: shape (3,)",
                   "blocks.0.codes: dtype float32", "nothing was loaded"):
        assert needle in msg
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    res = t.load_state_dict({"blocks.0.w": np.ones((3, 2), dtype=np.float32), "zzz": np.ones(1)}, strict=False)
    assert res.unexpected_keys == ["zzz"] and "heads.a.b" in res.missing_keys
    np.testing.assert_array_equal(t.blocks[0].w.numpy(), np.ones((3, 2)))


def test_tied_parameter_needs_one_name():
    t = Tree()
    sd = t.state_dict()
    del sd["blocks.1.w"]
    assert t.load_state_dict(sd).missing_keys == []


def test_to_moves_in_place_and_casts(device):
    t = Tree()
    w = t.blocks[0].w
    t.to(device).double()
    assert t.blocks[0].w is w and t.blocks[1].w is w
    assert w.device == device and w.dtype == np.float64
    assert t.blocks[0].codes.dtype == np.uint8  # integer buffers are never cast
    assert t.device == device and t.dtype == np.float64
    t.to("cpu", dtype=np.float32)
    assert w.device == "cpu" and w.dtype == np.float32


def test_modes_freezing_and_zero_grad():
    t = Tree()
    assert t.training and t.blocks[0].training
    t.eval()
    assert not any(m.training for m in t.modules())
    t.train()
    assert all(m.training for m in t.modules())
    t.heads.requires_grad_(False)
    assert t.num_parameters(trainable_only=True) == 6 + 2 + 2
    x = ml.tensor(np.ones((1, 3), dtype=np.float32))
    (t.blocks[0](x).sum() + t.blocks[1](x).sum()).backward()
    np.testing.assert_array_equal(t.blocks[0].w.grad, np.full((3, 2), 2.0))  # tied: both uses summed
    t.zero_grad()
    assert all(p.grad is None for p in t.parameters())


def test_repr_tree():
    text = repr(Tree())
    assert "(blocks): ModuleList(" in text and "(0-1): 2 x Leaf()" in text and "(a): Leaf()" in text


def test_module_list_and_dict_behaviour():
    ml_ = ModuleList([Leaf()])
    ml_.append(Leaf()).extend([Leaf()])
    assert len(ml_) == 3 and ml_[-1] is list(ml_)[2]
    with pytest.raises(IndexError, match="out of range"):
        ml_[3]
    d = ModuleDict({"x": Leaf()})
    assert "x" in d and d.keys() == ["x"] and len(d) == 1


def test_cpu_and_zero_grad_set_to_none(device):
    m = ml.nn.Linear(2, 3).to(device)
    assert m.cpu() is m and m.device == "cpu"
    m.to(device)
    for p in m.parameters():
        p.grad = p.xp.ones(p.shape, p.dtype)
    m.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not backend.to_host(p.grad).any() for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
