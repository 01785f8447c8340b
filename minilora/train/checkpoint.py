"""Checkpoints: one .npz file that cannot execute code, written atomically.

Layout of the archive (``np.load(path, allow_pickle=False)`` reads it):

- ``meta``: a uint8 array holding UTF-8 JSON: format and version, step, model family
  (``minilora.models``; absent in older files, which are GPT-2), model class and config,
  tokenizer vocabulary, schedule, training config, RNG states (minilora's generators and
  the batch sampler's), the optimizer's hyper-parameters and step counts, and the list of
  weight names;
- ``model.<name>``: every entry of ``model.state_dict()``, as host arrays;
- ``optim.<index>.<key>``: every optimizer state array (Adam moments, momentum buffers).

Writing goes to a temporary file in the same directory, which is flushed and fsync'ed,
then ``os.replace``d over the target (atomic on POSIX and Windows), then the directory
is fsync'ed: a crash at any point leaves either the old checkpoint or the new one, never
a torn file. Loading checks everything and names the problem (missing key, corrupt
file, config mismatch) before it changes a model or an optimizer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from typing import Any

import numpy as np

from minilora import backend
from minilora.io import ArchiveError, atomic_write_npz, check_header, nonfinite_names, read_npz

FORMAT = "minilora-checkpoint"
VERSION = 1


class NonFiniteCheckpointError(ValueError):
    """A checkpoint was to be written with NaN/Inf values: nothing was written (the previous file stays)."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: the message names the file and the problem."""


# ----------------------------------------------------------------------------- writing
def _json_array(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)  # host: metadata bytes


def save_checkpoint(path: str | os.PathLike[str], model: Any, optimizer: Any = None, **state: Any) -> None:
    """Save a model (and optionally its optimizer and the training state) to ``path`` atomically.

    ``state``: checkpoint_arrays' keywords (step, tokenizer, schedule, sampler_state, train_config, extra).
    """
    arrays, meta = checkpoint_arrays(model, optimizer, **state)
    arrays["meta"] = _json_array(meta)
    atomic_write_npz(path, arrays)


def checkpoint_arrays(
    model: Any,
    optimizer: Any = None,
    *,
    step: int = 0,
    tokenizer: Any = None,
    schedule: Any = None,
    sampler_state: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta) of a checkpoint, host-side; NonFiniteCheckpointError, naming the tensors, if any is NaN/Inf."""
    arrays: dict[str, np.ndarray] = {}
    weights = model.state_dict()
    for name, a in weights.items():
        arrays[f"model.{name}"] = backend.to_host(a)  # host
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "family": _family_name(model),
        "model_class": type(model).__name__,
        "model_config": model.config.to_dict() if hasattr(model, "config") else None,
        "num_classes": getattr(model, "num_classes", None),
        "weights": list(weights),
        "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
        "schedule": schedule.to_dict() if schedule is not None else None,
        "train_config": train_config,
        "rng": backend.rng_state(),
        "sampler": sampler_state,
        "optimizer": None,
        "extra": extra or {},
    }
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, s in sd["state"].items():
            for key, v in s.items():
                if isinstance(v, np.ndarray):
                    arrays[f"optim.{idx}.{key}"] = v
                else:
                    scalars.setdefault(str(idx), {})[key] = v
        meta["optimizer"] = {"class": type(optimizer).__name__, "param_groups": sd["param_groups"], "scalars": scalars}
    bad = nonfinite_names(arrays)
    if bad:
        raise NonFiniteCheckpointError(
            f"refusing to write a checkpoint at step {step}: non-finite values (NaN/Inf) in {', '.join(bad[:5])}"
            + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
        )
    return arrays, meta


def _family_name(model: Any) -> str | None:
    from minilora.models import family_of  # noqa: PLC0415

    try:
        return family_of(model).name
    except ValueError:  # a model of no registered family: saved, but build_model cannot rebuild it
        return None


# ----------------------------------------------------------------------------- reading
@dataclasses.dataclass
class Checkpoint:
    """A loaded, validated checkpoint (host arrays). Apply it with ``restore_model`` / ``restore_optimizer``."""

    path: str
    meta: dict[str, Any]
    weights: dict[str, np.ndarray]
    optimizer_arrays: dict[str, np.ndarray]

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def model_config(self) -> dict[str, Any] | None:
        return self.meta.get("model_config")

    @property
    def family(self) -> Any:
        """The model's Family (minilora.models); checkpoints written before families were recorded are GPT-2."""
        try:
            return _family_named(self.meta.get("family"))
        except ValueError as exc:
            raise CheckpointError(f"{self.path}: {exc}") from None

    @property
    def is_classifier(self) -> bool:
        """True for a sequence classifier (a saved num_classes), False for a language model."""
        return self.meta.get("num_classes") is not None

    def tokenizer(self) -> Any:
        from minilora.data import CharTokenizer  # noqa: PLC0415

        if self.meta.get("tokenizer") is None:
            raise CheckpointError(f"{self.path}: the checkpoint has no tokenizer vocabulary")
        try:
            tok = CharTokenizer.from_dict(self.meta["tokenizer"])
        except ValueError as exc:
            raise CheckpointError(f"{self.path}: checkpoint field 'tokenizer': {exc}") from None
        vocab = (self.model_config or {}).get("vocab_size")
        if isinstance(vocab, int) and tok.vocab_size != vocab:
            raise CheckpointError(f"{self.path}: checkpoint field 'tokenizer' has {tok.vocab_size} characters but "
                                  f"the model's vocab_size is {vocab}")
        return tok

    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's ``state_dict()`` as it was saved."""
        opt = self.meta.get("optimizer")
        if opt is None:
            raise CheckpointError(f"{self.path}: the checkpoint holds no optimizer state (saved for inference only?)")
        state: dict[int, dict[str, Any]] = {}
        for idx, scalars in opt["scalars"].items():
            state.setdefault(int(idx), {}).update(scalars)
        for key, a in self.optimizer_arrays.items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = a
        return {"state": state, "param_groups": opt["param_groups"]}


def _bad(path: str, field: str, want: str, value: Any) -> CheckpointError:
    return CheckpointError(f"{path}: checkpoint field {field!r} must be {want}, got {value!r}")


def _check_meta(path: str, meta: Any) -> None:
    """Every field load and resume use, by type, before anything is read into a model."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the 'meta' entry must be a JSON object, got a JSON {type(meta).__name__}")
    check_header(meta, FORMAT, VERSION, path, CheckpointError)
    for key in ("step", "weights", "rng"):
        if key not in meta:
            raise CheckpointError(f"{path}: missing key {key!r} in the checkpoint metadata")
    step = meta["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise _bad(path, "step", "a non-negative integer", step)
    if not isinstance(meta["weights"], list) or not all(isinstance(w, str) for w in meta["weights"]):
        raise _bad(path, "weights", "a list of weight names", meta["weights"])
    rng = meta["rng"]
    if not isinstance(rng, dict) or not isinstance(rng.get("seed"), int):
        raise _bad(path, "rng", "an object with an integer 'seed'", rng)
    for key in ("model_config", "tokenizer", "schedule", "train_config", "sampler", "optimizer"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise _bad(path, key, "a JSON object or null", meta[key])
    if not isinstance(meta.get("extra", {}), dict):
        raise _bad(path, "extra", "a JSON object", meta["extra"])


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate a checkpoint; a missing file raises FileNotFoundError, anything else CheckpointError.

    The archive's directory and ``meta`` are checked before any weight is read (see minilora.io.read_npz);
    weights holding NaN/Inf, or tied copies (wte, lm_head) that disagree, are refused by name.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such checkpoint file", path)
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory, not a checkpoint file (expected e.g. {path}/ckpt.npz)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a checkpoint (expected an .npz archive; the file is corrupt or of "
                              "another kind)")
    try:
        arrays = read_npz(path, first="meta")
    except ArchiveError as exc:
        raise CheckpointError(str(exc).replace("minilora file of this kind", "minilora checkpoint")) from None
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: the 'meta' entry is not valid JSON ({exc})") from None
    _check_meta(path, meta)
    weights = {}
    for name in meta["weights"]:
        if f"model.{name}" not in arrays:
            raise CheckpointError(f"{path}: missing key 'model.{name}'")
        weights[name] = arrays[f"model.{name}"]
    bad = nonfinite_names(weights)
    if bad:
        raise CheckpointError(f"{path}: non-finite values (NaN/Inf) in {', '.join(bad)}; this checkpoint cannot "
                              "be used (an earlier one, or a lower learning rate, may)")
    try:
        tied = _family_named(meta.get("family")).tied_weights(meta.get("model_config") or {})
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    for a, b in tied:  # copies that must agree when a file holds both
        if a in weights and b in weights and not np.array_equal(weights[a], weights[b]):
            raise CheckpointError(f"{path}: the tied weights {a} and {b} disagree (the file was edited or damaged)")
    optim = {k[len("optim.") :]: v for k, v in arrays.items() if k.startswith("optim.")}
    return Checkpoint(path, meta, weights, optim)


def _family_named(name: str | None) -> Any:
    from minilora.models import get_family  # noqa: PLC0415

    return get_family(name or "gpt2")  # files written before families were recorded are GPT-2


def _config_dict(model: Any) -> dict[str, Any] | None:
    cfg = getattr(model, "config", None)
    return cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else None


def restore_model(ckpt: Checkpoint, model: Any, strict: bool = True) -> None:
    """Load the weights into ``model``; a config or shape mismatch raises CheckpointError and changes nothing."""
    saved, current = ckpt.model_config, _config_dict(model)
    if saved is not None and current is not None:
        diffs = [f"{k} {saved.get(k)!r} in the checkpoint, {current.get(k)!r} in the model"
                 for k in sorted(set(saved) | set(current)) if k != "dropout" and saved.get(k) != current.get(k)]
        if diffs:
            raise CheckpointError(f"{ckpt.path}: the checkpoint does not fit the model config: " + "; ".join(diffs))
    try:
        model.load_state_dict(ckpt.weights, strict=strict)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{ckpt.path}: {exc}") from None


def restore_optimizer(ckpt: Checkpoint, optimizer: Any) -> None:
    saved_class = (ckpt.meta.get("optimizer") or {}).get("class")
    if saved_class is not None and saved_class != type(optimizer).__name__:
        raise CheckpointError(f"{ckpt.path}: optimizer state is for {saved_class}, not {type(optimizer).__name__}")
    try:
        optimizer.load_state_dict(ckpt.optimizer_state())
    except ValueError as exc:
        raise CheckpointError(f"{ckpt.path}: {exc}") from None


def build_model(ckpt: Checkpoint, device: str = "cpu") -> Any:
    """A fresh model of the checkpoint's family (its language model, or its classifier), with the saved weights."""
    if ckpt.model_config is None:
        raise CheckpointError(f"{ckpt.path}: the checkpoint has no model config, so no model can be built from it")
    family = ckpt.family
    try:
        config = family.config_cls.from_dict(ckpt.model_config)
        model = family.build(config, int(ckpt.meta["num_classes"]) if ckpt.is_classifier else None)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{ckpt.path}: bad model config in the checkpoint ({exc})") from None
    restore_model(ckpt, model)
    return model.to(device)
