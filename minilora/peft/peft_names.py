"""Hugging Face PEFT's names for what PeftModel already does, so code copied from PEFT runs unchanged.

=======================================  =========================================
PEFT                                     minilora
=======================================  =========================================
``PeftModel.from_pretrained(base, dir)``  ``load_adapter(base, dir)`` (eval mode)
``peft_model.save_pretrained(dir)``       ``save_adapter(dir)``
``save_pretrained(dir, path_initial_...)``  ``save_adapter(dir, convert_to_lora=True)``
``merge_adapter()`` / ``unmerge_adapter``  ``merge()`` / ``unmerge()``
``get_base_model()``                     ``base_model``
=======================================  =========================================
"""

from __future__ import annotations

from minilora.nn import Module


class PeftNames:
    """Mixed into PeftModel: each method is one line over minilora's own (``PeftModel.from_pretrained`` is
    PeftModel's own classmethod, which load_adapter calls)."""

    def save_pretrained(self, directory: str, adapter_name: str | None = None, format: str = "minilora",
                        path_initial_model_for_weight_conversion: str | None = None,
                        convert_to_lora: bool = False) -> int:
        """Save the adapter only (as PEFT; not the base model): ``save_adapter``. ``format="peft"`` for PEFT's files.

        ``path_initial_model_for_weight_conversion`` (PEFT's): the folder where the PiSSA / OLoRA adapter was
        saved right after initialisation; the trained one is then written as a rank-2r LoRA on the original
        base (``convert_to_lora=True`` does the same with the A0, B0 the layers kept). Unlike PEFT, nothing is
        written into that folder.
        """
        return self.save_adapter(directory, adapter_name, format=format,  # type: ignore[attr-defined]
                                 convert_to_lora=convert_to_lora,
                                 path_initial_model_for_weight_conversion=path_initial_model_for_weight_conversion)

    def merge_adapter(self) -> None:
        """Fold the active adapter into the base weights, reversibly (``merge``)."""
        self.merge()  # type: ignore[attr-defined]

    def unmerge_adapter(self) -> None:
        """Undo ``merge_adapter`` (``unmerge``)."""
        self.unmerge()  # type: ignore[attr-defined]

    def get_base_model(self) -> Module:
        """The wrapped model, adapter layers included (``base_model``)."""
        return self.base_model  # type: ignore[attr-defined]
