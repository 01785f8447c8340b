"""Shared by the training commands: device checks and checkpoint loading that turn mistakes into CLIError."""

from __future__ import annotations

from typing import Any

from minilora import backend


def check_device(device: str) -> None:
    """One clear line (exit 2) when --device cuda is asked for and no GPU/CuPy is present."""
    from minilora.cli import CLIError  # noqa: PLC0415

    if device == "cuda" and not backend.cuda_available():
        raise CLIError(f"--device cuda: {backend.cuda_unavailable_reason()}")


def check_out_dir(out_dir: str, resume: bool, overwrite: bool) -> bool:
    """Whether to resume from ``out_dir``; a non-empty run folder without --resume or --overwrite is refused."""
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.io import resolve_folder  # noqa: PLC0415

    folder = resolve_folder(out_dir)
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"--out-dir {out_dir} is a file, not a folder")
    has_ckpt = (folder / "ckpt.npz").is_file()
    if resume:
        return has_ckpt
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        names = ", ".join(sorted(p.name for p in folder.iterdir()))
        raise CLIError(f"--out-dir {out_dir} already holds a run ({names[:120]}); pass --resume to continue it or "
                       "--overwrite to replace it")
    return False


def load_model(path: str, device: str) -> tuple[Any, Any, Any]:
    """(checkpoint, model, tokenizer) from a checkpoint file; problems become one-line CLIErrors.

    A Hugging Face folder (GPT-2, Llama, Qwen2) is accepted too (checkpoint is then None): see minilora.hf.load_base.
    """
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.hf.gpt2 import is_hf_folder  # noqa: PLC0415  [hf interop]
    from minilora.train import CheckpointError, build_model, load_checkpoint  # noqa: PLC0415

    if is_hf_folder(path):  # [hf interop] config.json + model.safetensors + tokenizer files
        from minilora.hf import load_base  # noqa: PLC0415

        try:
            return (None, *load_base(path, device))
        except (ValueError, ImportError) as exc:
            raise CLIError(_one_line(str(exc))) from None
    try:
        ckpt = load_checkpoint(path)
        if ckpt.is_classifier:
            raise CheckpointError(
                f"{path} holds a {ckpt.meta.get('model_class')} model (a sequence classifier); "
                f"this command needs a language model ({ckpt.family.lm_cls.__name__})"
            )
        model = build_model(ckpt, device)
        tokenizer = ckpt.tokenizer()
    except CheckpointError as exc:
        raise CLIError(_one_line(str(exc))) from None
    return ckpt, model, tokenizer


def _one_line(message: str) -> str:
    """Multi-line library errors (e.g. a list of state_dict problems) squeezed into one line."""
    parts = [p.strip() for p in message.splitlines() if p.strip()]
    return " ".join(parts)


def apply_adapter(model: Any, directory: str) -> Any:
    """``--adapter DIR`` (generate, eval): the model with the adapter saved in DIR loaded (frozen), or a CLIError."""
    from minilora.cli import CLIError  # noqa: PLC0415
    from minilora.peft import load_adapter  # noqa: PLC0415

    try:
        return load_adapter(model, directory)
    except FileNotFoundError as exc:
        raise CLIError(f"--adapter: {exc.strerror}: {exc.filename}") from None
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise CLIError(f"--adapter: {exc}") from None
