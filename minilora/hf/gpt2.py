"""Hugging Face GPT-2 checkpoints: load a GPT2LMHeadModel folder into a minilora GPT, and write one back.

A Hugging Face GPT-2 folder holds ``config.json`` and ``model.safetensors``. The
parameter names are nanoGPT's (minilora uses them too), with two differences:

1. The attention and MLP projections (c_attn, c_proj, c_fc) are ``Conv1D``
   layers, which compute ``y = x @ W + b`` with W stored as (in, out). minilora's
   Linear computes ``y = x @ W.T + b`` with W stored as (out, in), like
   torch.nn.Linear. Loading and saving therefore transpose exactly these weights.
2. Files saved from a bare ``GPT2Model`` have no ``transformer.`` prefix, and
   older files carry the causal-mask buffers ``attn.bias`` / ``attn.masked_bias``
   (not parameters: ignored). ``lm_head.weight`` is tied to ``transformer.wte.weight``
   and usually absent from the file.

Only the architecture minilora implements is accepted: pre-LayerNorm blocks,
GELU in its tanh form, attention scaled by 1/sqrt(head size), inner MLP width
4 * n_embd. Any other setting in config.json is refused with its key and value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from minilora import backend
from minilora.hf import safetensors_io as stio
from minilora.io import atomic_folder, nonfinite_names, resolve_folder

if TYPE_CHECKING:
    from minilora.nn import GPT, GPTConfig

CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # stored (in, out) by Hugging Face
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # three spellings of the same tanh approximation
BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers in older files, not parameters
BACKBONE = ("wte.", "wpe.", "h.", "ln_f.")  # GPT2Model's top-level names (GPT2LMHeadModel adds "transformer.")
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
# GPT2Config's defaults: a key missing from config.json means this value, as in transformers
HF_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
}
# settings GPT2LMHeadModel supports but minilora's GPT does not compute: (key, the only accepted value)
REFUSED = (
    ("scale_attn_weights", True),
    ("scale_attn_by_inverse_layer_idx", False),
    ("reorder_and_upcast_attn", False),
    ("add_cross_attention", False),
)


class UnsupportedCheckpointError(ValueError):
    """A Hugging Face checkpoint that minilora's GPT cannot represent exactly."""


# ----------------------------------------------------------------------------- config
def config_from_hf(hf: dict[str, Any], source: str = CONFIG_NAME, dropout: float = 0.0) -> GPTConfig:
    """A GPTConfig from the contents of a GPT-2 config.json; unsupported options are refused by name."""
    from minilora.nn import GPTConfig

    c = {**HF_DEFAULTS, **hf}
    model_type = hf.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise UnsupportedCheckpointError(f"{source}: model_type {model_type!r} is not supported (only 'gpt2')")
    if c["activation_function"] not in TANH_GELUS:
        raise UnsupportedCheckpointError(
            f"{source}: activation_function {c['activation_function']!r} is not supported; minilora's GPT uses "
            f"GELU in its tanh form ({', '.join(TANH_GELUS)})"
        )
    for key, ok in REFUSED:
        if c[key] != ok:
            raise UnsupportedCheckpointError(f"{source}: {key}={c[key]!r} is not supported (only {ok!r})")
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        if not isinstance(c[key], int) or isinstance(c[key], bool) or c[key] <= 0:
            raise UnsupportedCheckpointError(f"{source}: {key} must be a positive integer, got {c[key]!r}")
    if c["n_inner"] is not None and c["n_inner"] != 4 * c["n_embd"]:
        raise UnsupportedCheckpointError(
            f"{source}: n_inner={c['n_inner']!r} is not supported (minilora's MLP is 4 * n_embd = {4 * c['n_embd']})"
        )
    if c["n_embd"] % c["n_head"]:
        raise UnsupportedCheckpointError(f"{source}: n_embd={c['n_embd']} is not divisible by n_head={c['n_head']}")
    return GPTConfig(
        vocab_size=c["vocab_size"],
        block_size=c["n_positions"],
        n_layer=c["n_layer"],
        n_head=c["n_head"],
        n_embd=c["n_embd"],
        dropout=dropout,
        bias=True,
        layer_norm_epsilon=float(c["layer_norm_epsilon"]),  # host: a JSON number
    )


def config_to_hf(config: GPTConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config.json GPT2LMHeadModel.save_pretrained writes for this architecture.

    ``extra`` adds keys and may set the token ids; the architecture fields always describe this model.
    """
    hf: dict[str, Any] = {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": config.dropout,
        "bos_token_id": 50256 if config.vocab_size == 50257 else None,
        "embd_pdrop": config.dropout,
        "eos_token_id": 50256 if config.vocab_size == 50257 else None,
        "initializer_range": 0.02,
        "layer_norm_epsilon": getattr(config, "layer_norm_epsilon", 1e-5),
        "model_type": "gpt2",
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_head": config.n_head,
        "n_inner": None,
        "n_layer": config.n_layer,
        "n_positions": config.block_size,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": config.dropout,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": config.vocab_size,
    }
    for key, value in (extra or {}).items():
        if key not in hf or key in ("bos_token_id", "eos_token_id", "pad_token_id", "task_specific_params"):
            hf[key] = value
    return hf


# ----------------------------------------------------------------------------- names and layouts
def hf_param_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every key GPT2LMHeadModel's state dict holds (minus the tied lm_head.weight), with its Hugging Face shape."""
    d, v, t = config.n_embd, config.vocab_size, config.block_size
    shapes: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (v, d), "transformer.wpe.weight": (t, d)}
    for i in range(config.n_layer):
        p = f"transformer.h.{i}."
        shapes.update({
            p + "ln_1.weight": (d,), p + "ln_1.bias": (d,),
            p + "attn.c_attn.weight": (d, 3 * d), p + "attn.c_attn.bias": (3 * d,),
            p + "attn.c_proj.weight": (d, d), p + "attn.c_proj.bias": (d,),
            p + "ln_2.weight": (d,), p + "ln_2.bias": (d,),
            p + "mlp.c_fc.weight": (d, 4 * d), p + "mlp.c_fc.bias": (4 * d,),
            p + "mlp.c_proj.weight": (4 * d, d), p + "mlp.c_proj.bias": (d,),
        })  # fmt: skip
    shapes.update({"transformer.ln_f.weight": (d,), "transformer.ln_f.bias": (d,)})
    return shapes


def is_conv1d_weight(key: str) -> bool:
    """True for the weights Hugging Face stores (in, out): c_attn, c_proj and c_fc of every block."""
    return key.startswith("transformer.h.") and key.endswith(tuple(f".{m}.weight" for m in CONV1D))


def hf_to_minilora(tensors: dict[str, np.ndarray], config: GPTConfig, source: str = WEIGHTS_NAME) -> dict[str, Any]:
    """Hugging Face GPT-2 tensors -> minilora GPT state (Conv1D weights transposed to (out, in)).

    Every missing key, unexpected key and shape mismatch is named in one error.
    """
    expected = hf_param_shapes(config)
    found: dict[str, np.ndarray] = {}
    for key, value in tensors.items():
        if key.endswith(BUFFERS):
            continue
        name = f"transformer.{key}" if key.startswith(BACKBONE) else key  # a bare GPT2Model's names
        found[name] = value
    problems = [f"missing key: {k}" for k in expected if k not in found]
    problems += [f"unexpected key: {k}" for k in found if k not in expected and k != "lm_head.weight"]
    for key, shape in expected.items():
        if key in found and tuple(found[key].shape) != shape:
            problems.append(f"{key}: shape {tuple(found[key].shape)} in the file, {shape} expected for this config")
    head = found.get("lm_head.weight")
    wte = found.get("transformer.wte.weight")
    if head is not None and wte is not None and (head.shape != wte.shape or not np.array_equal(head, wte)):  # host
        problems.append("lm_head.weight differs from transformer.wte.weight: untied output heads are not supported")
    if problems:
        raise UnsupportedCheckpointError(
            f"{source} does not fit this GPT-2 config; {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        )
    return {k: (found[k].T if is_conv1d_weight(k) else found[k]) for k in expected}


def minilora_to_hf(state: dict[str, Any], config: GPTConfig) -> dict[str, np.ndarray]:
    """minilora GPT state (host arrays) -> Hugging Face GPT-2 tensors, C-ordered, Conv1D weights as (in, out).

    A model built with bias=False gets zero biases (the same function); extra keys
    such as LoRA factors are refused: merge the adapter first (merge_and_unload).
    """
    expected = hf_param_shapes(config)
    extra = sorted(k for k in state if k not in expected and k != "lm_head.weight")
    if extra:
        raise UnsupportedCheckpointError(
            f"save_pretrained: the model has state that GPT2LMHeadModel cannot hold: {', '.join(extra[:6])}"
            + (" ..." if len(extra) > 6 else "")
            + " (an adapted model must be merged first: model.merge_and_unload())"
        )
    head = state.get("lm_head.weight")
    if head is not None and not np.array_equal(head, state["transformer.wte.weight"]):  # host: host copies
        raise UnsupportedCheckpointError("save_pretrained: lm_head.weight is not tied to transformer.wte.weight")
    out: dict[str, np.ndarray] = {}
    for key, shape in expected.items():
        if key in state:
            a = state[key].T if is_conv1d_weight(key) else state[key]
        elif key.endswith(".bias"):
            a = np.zeros(shape, dtype=np.float32)
        else:
            raise UnsupportedCheckpointError(f"save_pretrained: the model has no {key}")
        if tuple(a.shape) != shape:
            raise UnsupportedCheckpointError(f"save_pretrained: {key} has shape {tuple(a.shape)}, expected {shape}")
        out[key] = np.ascontiguousarray(a, dtype=np.float32)
    return out


# ----------------------------------------------------------------------------- folders
def is_hf_folder(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder with a config.json: a Hugging Face checkpoint (minilora's are files).

    from_pretrained then says what is wrong with it (no safetensors weights, another architecture, ...).
    """
    p = resolve_folder(path)
    return p.is_dir() and (p / CONFIG_NAME).is_file()


def read_hf_tensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint folder: model.safetensors, or the shards a model.safetensors.index.json lists.

    Tensors holding NaN/Inf are refused by name (a ValueError naming the folder).
    """
    tensors = _read_hf_tensors(Path(path))
    bad = nonfinite_names(tensors)
    if bad:
        raise ValueError(f"{path}: non-finite values (NaN/Inf) in {', '.join(bad[:5])}"
                         + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""))
    return tensors


def _read_hf_tensors(p: Path) -> dict[str, np.ndarray]:
    if (p / WEIGHTS_NAME).is_file():
        return stio.read_safetensors(p / WEIGHTS_NAME)
    if (p / INDEX_NAME).is_file():
        weight_map = stio.read_json(p / INDEX_NAME).get("weight_map", {})
        tensors: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            if Path(shard).name != shard:  # an index must not point outside the folder
                raise ValueError(f"{p / INDEX_NAME}: shard name {shard!r} is not a plain file name")
            tensors.update(stio.read_safetensors(p / shard))
        return tensors
    pickled = [n for n in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack") if (p / n).is_file()]
    hint = (
        f" (it has {pickled[0]}; minilora reads only safetensors, which cannot execute code: convert it with "
        "transformers' model.save_pretrained(path, safe_serialization=True))"
        if pickled
        else ""
    )
    raise FileNotFoundError(2, f"no {WEIGHTS_NAME} in the checkpoint folder{hint}", str(p / WEIGHTS_NAME))


def from_pretrained(path: str | os.PathLike[str], device: str = "cpu", dropout: float = 0.0) -> GPT:
    """Load a Hugging Face GPT-2 folder (config.json + model.safetensors) as a float32 minilora GPT.

    dropout: the new model's dropout (0.0 by default, as nanoGPT; GPT-2 was trained with 0.1).
    Only JSON and safetensors are read: loading never executes code. The model is returned in
    eval mode, as Hugging Face's from_pretrained returns it (call ``.train()`` to train with dropout).
    """
    from minilora.nn import GPT

    p = resolve_folder(path)  # a save killed mid-swap: the complete set still on disk
    if not p.is_dir():
        raise FileNotFoundError(2, "no such checkpoint folder", str(p))
    hf = stio.read_json(p / CONFIG_NAME)
    config = config_from_hf(hf, source=str(p / CONFIG_NAME), dropout=dropout)
    state = hf_to_minilora(read_hf_tensors(p), config, source=str(p / WEIGHTS_NAME))
    model = GPT(config)
    model.load_state_dict(state, strict=False)  # lm_head.weight is the tied wte: one of a tie's names is enough
    model.hf_config = {k: hf[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in hf}
    model.name_or_path = str(p)  # written as base_model_name_or_path by save_adapter(format="peft")
    model.eval()  # as Hugging Face's from_pretrained: dropout off until .train()
    return model.to(device) if device != "cpu" else model


def save_pretrained(
    model: GPT, path: str | os.PathLike[str], tokenizer: Any = None, extra_config: dict[str, Any] | None = None
) -> None:
    """Write ``model`` as a Hugging Face GPT-2 folder that GPT2LMHeadModel.from_pretrained loads.

    Files: config.json and model.safetensors (Hugging Face names, Conv1D weights as
    (in, out), no lm_head.weight since it is tied, metadata {"format": "pt"}), each
    written atomically; plus tokenizer.json when a tokenizer with save_pretrained is given.
    """
    state = {k: backend.to_host(v) for k, v in model.state_dict().items()}  # host: checkpoint writing
    tensors = minilora_to_hf(state, model.config)
    extra = {**getattr(model, "hf_config", {}), **(extra_config or {})}
    with atomic_folder(path) as folder:  # config and weights land together, or neither (see minilora.io)
        stio.write_safetensors(folder.path(WEIGHTS_NAME), tensors, metadata={"format": "pt"})
        stio.write_json(folder.path(CONFIG_NAME), config_to_hf(model.config, extra))
        if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(folder.root)
