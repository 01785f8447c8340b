"""Hugging Face Llama and Qwen2 folders: load a LlamaForCausalLM / Qwen2ForCausalLM folder, and write one back.

minilora's Llama uses transformers' parameter names and layouts (every projection an
nn.Linear, weight (out, in)), so the tensors map one to one; only ``lm_head.weight`` is
absent from the file when the embeddings are tied, and older files carry the
``rotary_emb.inv_freq`` buffer (not a parameter: ignored). Weights may be float32, float16
or bfloat16, in one model.safetensors or sharded with model.safetensors.index.json; they
are widened to float32 unless another dtype is asked for.

Only the architecture minilora computes is accepted: SiLU-gated MLP, default RoPE (no
rope scaling), no sliding-window attention. Any other setting in config.json is refused
with its key and value. A checkpoint whose tensors do not fit the config is refused with
every key, shape and the file named, before a model is built.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from minilora import backend
from minilora.hf import safetensors_io as stio
from minilora.hf.gpt2 import CONFIG_NAME, INDEX_NAME, WEIGHTS_NAME, UnsupportedCheckpointError, read_hf_tensors
from minilora.io import atomic_folder, resolve_folder

BUFFERS = ("rotary_emb.inv_freq",)
# transformers' defaults: a key missing from config.json means this value
HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": None, "max_position_embeddings": 2048,
              "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
              "head_dim": None, "attention_dropout": 0.0, "initializer_range": 0.02},
    "qwen2": {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 32768,
              "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "attention_dropout": 0.0,
              "initializer_range": 0.02},
}
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def _config_classes() -> dict[str, type]:
    from minilora.nn.llama import LlamaConfig, Qwen2Config  # noqa: PLC0415

    return {"llama": LlamaConfig, "qwen2": Qwen2Config}


# ----------------------------------------------------------------------------- config
def rope_theta(hf: dict[str, Any], source: str) -> float:
    """RoPE's theta from config.json (transformers 5: rope_parameters; earlier: rope_theta + rope_scaling)."""
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default")) if params else None
    if scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default":
        kind = scaling.get("rope_type", scaling.get("type"))
    if kind not in (None, "default"):
        raise UnsupportedCheckpointError(f"{source}: rope_type {kind!r} is not supported (only 'default' RoPE)")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))  # host: a JSON number


def config_from_hf(hf: dict[str, Any], source: str = CONFIG_NAME) -> Any:
    """A LlamaConfig or Qwen2Config from the contents of config.json; unsupported options are refused by name."""
    model_type = hf.get("model_type")
    if model_type not in HF_DEFAULTS:
        raise UnsupportedCheckpointError(f"{source}: model_type {model_type!r} is not a Llama-family type "
                                         f"({', '.join(HF_DEFAULTS)})")
    c = {**HF_DEFAULTS[model_type], **hf}
    if c.get("hidden_act", "silu") != "silu":
        raise UnsupportedCheckpointError(f"{source}: hidden_act {c['hidden_act']!r} is not supported (only 'silu')")
    if c.get("pretraining_tp", 1) != 1:
        raise UnsupportedCheckpointError(f"{source}: pretraining_tp={c['pretraining_tp']!r} is not supported (only 1)")
    if c.get("use_sliding_window"):
        raise UnsupportedCheckpointError(f"{source}: use_sliding_window=true is not supported (full attention only)")
    other = sorted({t for t in c.get("layer_types") or () if t != "full_attention"})
    if other:
        raise UnsupportedCheckpointError(f"{source}: layer_types {other} are not supported (full_attention only)")
    cls = _config_classes()[model_type]
    fields = {k: c[k] for k in HF_DEFAULTS[model_type]}
    try:
        return cls(**fields, rope_theta=rope_theta(hf, source))
    except ValueError as exc:
        raise UnsupportedCheckpointError(f"{source}: {exc}") from None


def config_to_hf(config: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config.json transformers writes for this architecture (extra may set the token ids and add keys)."""
    model_type = config.model_type
    hf: dict[str, Any] = {k: v for k, v in config.to_dict().items() if k in HF_DEFAULTS[model_type]}
    hf.update({
        "architectures": [ARCHITECTURES[model_type]], "model_type": model_type, "hidden_act": "silu",
        "rope_theta": config.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "torch_dtype": "float32", "use_cache": True, "bos_token_id": None, "eos_token_id": None,
    })
    if model_type == "qwen2":
        hf.update({"use_sliding_window": False, "sliding_window": None, "max_window_layers": config.num_hidden_layers})
    for key, value in (extra or {}).items():
        if key not in hf or key in TOKEN_IDS:
            hf[key] = value
    return hf


# ----------------------------------------------------------------------------- tensors
def expected_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Every key the model's Hugging Face state dict holds (lm_head.weight only when untied), with its shape."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    return shapes


def check_tensors(
    tensors: dict[str, np.ndarray], model: Any, source: str, shards: dict[str, str] | None = None
) -> dict[str, np.ndarray]:
    """The file's tensors under the model's names; every missing, unexpected or misshapen key in one error.

    shards: key -> the file holding it (a sharded folder's weight_map), named beside each misfit key."""
    expected = expected_shapes(model)
    shards = shards or {}
    found = {k: v for k, v in tensors.items() if not k.endswith(BUFFERS)}
    problems = [f"missing key: {k}" for k in expected if k not in found]
    tied_head = "lm_head.weight" if model.config.tie_word_embeddings else None
    problems += [f"unexpected key: {k}" + (f" (in {shards[k]})" if k in shards else "")
                 for k in found if k not in expected and k != tied_head]
    problems += [f"{k}: shape {tuple(found[k].shape)} in {shards.get(k, 'the file')}, {shape} expected for this "
                 "config"
                 for k, shape in expected.items() if k in found and tuple(found[k].shape) != shape]  # fmt: skip
    if tied_head in found and not np.array_equal(found[tied_head], found.get("model.embed_tokens.weight")):  # host
        problems.append("lm_head.weight differs from model.embed_tokens.weight but tie_word_embeddings is true")
    if problems:
        raise UnsupportedCheckpointError(
            f"{source} does not fit this {model.config.model_type} config; {len(problems)} problem(s):\n  "
            + "\n  ".join(problems)
        )
    return {k: found[k] for k in expected}


# ----------------------------------------------------------------------------- folders
def _skeleton(config: Any) -> Any:
    """A model of the config's family with zero weights (nothing drawn): the reference for names and shapes."""
    from minilora.models import get_family  # noqa: PLC0415
    from minilora.nn.layers import skip_init  # noqa: PLC0415

    with skip_init():
        return get_family(config.model_type).build(config)


def from_pretrained(path: str | os.PathLike[str], device: str = "cpu", dropout: float | None = None) -> Any:
    """Load a Hugging Face Llama/Qwen2 folder as a float32 minilora model (minilora.hf.from_pretrained: any dtype).

    dropout: the attention dropout of the new model (None: the folder's attention_dropout).
    Only JSON and safetensors are read: loading never executes code. Nothing is built
    until every tensor has been checked against the config.
    """
    p = resolve_folder(path)  # a save killed mid-swap: the complete set still on disk
    if not p.is_dir():
        raise FileNotFoundError(2, "no such checkpoint folder", str(p))
    hf = stio.read_json(p / CONFIG_NAME)
    config = config_from_hf(hf, source=str(p / CONFIG_NAME))
    if dropout is not None:
        config.attention_dropout = dropout
    tensors = read_hf_tensors(p)
    model = _skeleton(config)
    if (p / WEIGHTS_NAME).is_file():
        state = check_tensors(tensors, model, source=str(p / WEIGHTS_NAME))
    else:  # sharded: the index, and each misfit key's shard
        shards = stio.read_json(p / INDEX_NAME).get("weight_map", {})
        state = check_tensors(tensors, model, source=str(p / INDEX_NAME), shards=shards)
    model.load_state_dict(state, strict=False)  # a tied lm_head is embed_tokens: one of its names is enough
    model.hf_config = {k: hf[k] for k in TOKEN_IDS if k in hf}
    model.name_or_path = str(p)
    return model.to(device) if device != "cpu" else model


def save_pretrained(model: Any, path: str | os.PathLike[str], tokenizer: Any = None,
                    extra_config: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Write ``model`` as a folder transformers' LlamaForCausalLM / Qwen2ForCausalLM loads.

    Files: model.safetensors (transformers' names, float32, no lm_head.weight when tied,
    metadata {"format": "pt"}) and config.json, as one unit (minilora.io.atomic_folder); plus
    tokenizer.json when a tokenizer with save_pretrained is given. An adapted model must be
    merged first: LoRA factors have no place in the file.
    """
    state = {k: backend.to_host(v) for k, v in model.state_dict().items()}  # host: checkpoint writing
    expected = expected_shapes(_skeleton(model.config))
    extra = sorted(k for k in state if k not in expected and k != "lm_head.weight")
    if extra:
        raise UnsupportedCheckpointError(
            f"save_pretrained: the model has state that {ARCHITECTURES[model.config.model_type]} cannot hold: "
            f"{', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''}"
            " (an adapted model must be merged first: model.merge_and_unload())"
        )
    missing = [k for k in expected if k not in state or tuple(state[k].shape) != expected[k]]
    if missing:
        raise UnsupportedCheckpointError(f"save_pretrained: the model has no {missing[0]} of shape "
                                         f"{expected[missing[0]]}")
    tensors = {k: np.ascontiguousarray(state[k], dtype=np.float32) for k in expected}
    with atomic_folder(path) as folder:  # config and weights land together, or neither (see minilora.io)
        stio.write_safetensors(folder.path(WEIGHTS_NAME), tensors, metadata={"format": "pt"})
        stio.write_json(folder.path(CONFIG_NAME), config_to_hf(model.config, {**getattr(model, "hf_config", {}),
                                                                              **(extra_config or {})}))
        if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(folder.root)
