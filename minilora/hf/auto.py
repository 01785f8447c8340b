"""One entry point for every family's Hugging Face folders: config.json's model_type picks the converter.

    model = minilora.hf.from_pretrained("path/to/folder")     # gpt2, llama or qwen2
    minilora.hf.save_pretrained(model, "out/")               # the folder transformers loads back

The registry (minilora.models) binds each family to its converter module
(minilora.hf.gpt2, minilora.hf.llama); this module only looks it up.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from minilora.hf import safetensors_io as stio
from minilora.hf.gpt2 import CONFIG_NAME, UnsupportedCheckpointError
from minilora.io import resolve_folder


def from_pretrained(path: str | os.PathLike[str], device: str = "cpu", dtype: Any = None, **kwargs: Any) -> Any:
    """The model of the family that config.json's model_type names, with the folder's weights.

    Weights are read from model.safetensors (or the shards of model.safetensors.index.json);
    bfloat16 and float16 files are widened to float32, unless ``dtype`` asks for another
    floating dtype. kwargs go to the family's converter (e.g. dropout). An unsupported
    model_type is a one-line error listing the supported ones.
    """
    from minilora.models import family_for_model_type  # noqa: PLC0415

    p = resolve_folder(path)  # a save killed mid-swap: the complete set still on disk
    if not p.is_dir():
        raise FileNotFoundError(2, "no such checkpoint folder", str(p))
    hf = stio.read_json(p / CONFIG_NAME)
    try:
        family = family_for_model_type(hf.get("model_type", "gpt2"), source=str(p / CONFIG_NAME))
    except ValueError as exc:
        raise UnsupportedCheckpointError(str(exc)) from None
    model = family.from_pretrained(p, device=device, **kwargs)
    if dtype is not None and np.dtype(dtype) != model.dtype:
        model.to(model.device, np.dtype(dtype))
    return model


def save_pretrained(model: Any, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """Write ``model`` (any registered family) as a Hugging Face folder: see the family's converter."""
    from minilora.models import family_of  # noqa: PLC0415

    family_of(model).save_pretrained(model, path, **kwargs)
