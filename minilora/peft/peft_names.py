"""Hugging Face PEFT's names for what PeftModel already does, so code copied from PEFT runs unchanged.

=======================================  =========================================
PEFT                                     minilora
=======================================  =========================================
``PeftModel.from_pretrained(base, dir)``  ``load_adapter(base, dir)`` (eval mode)
``peft_model.save_pretrained(dir)``       ``save_adapter(dir)``
``merge_adapter()`` / ``unmerge_adapter``  ``merge()`` / ``unmerge()``
``get_base_model()``                     ``base_model``
=======================================  =========================================
"""

from __future__ import annotations

from minilora.nn import Module


class PeftNames:
    """Mixed into PeftModel: each method is one line over minilora's own (``PeftModel.from_pretrained`` is
    PeftModel's own classmethod, which load_adapter calls)."""

    def save_pretrained(self, directory: str, adapter_name: str | None = None, format: str = "minilora") -> int:
        """Save the adapter only (as PEFT; not the base model): ``save_adapter``. ``format="peft"`` for PEFT's files."""
        return self.save_adapter(directory, adapter_name, format=format)  # type: ignore[attr-defined]

    def merge_adapter(self) -> None:
        """Fold the active adapter into the base weights, reversibly (``merge``)."""
        self.merge()  # type: ignore[attr-defined]

    def unmerge_adapter(self) -> None:
        """Undo ``merge_adapter`` (``unmerge``)."""
        self.unmerge()  # type: ignore[attr-defined]

    def get_base_model(self) -> Module:
        """The wrapped model, adapter layers included (``base_model``)."""
        return self.base_model  # type: ignore[attr-defined]
