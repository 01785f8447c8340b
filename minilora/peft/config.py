"""The base of every fine-tuning method's config: a dataclass that round-trips through JSON.

The concrete configs (LoraConfig, IA3Config, ...) live with their methods under
minilora/peft/methods/; each subclass is recorded by its ``peft_type`` as it is defined, so
``PeftConfig.from_dict`` finds it without a list here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from minilora.validate import check_fields, from_dict

CONFIG_TYPES: dict[str, type[PeftConfig]] = {}  # peft_type -> config class, filled as the classes are defined


class TaskType:
    """PEFT's task types that minilora has models for (``LoraConfig(task_type=TaskType.CAUSAL_LM)``)."""

    CAUSAL_LM = "CAUSAL_LM"  # GPT (a language model)
    SEQ_CLS = "SEQ_CLS"  # GPTForSequenceClassification


TASK_TYPES = (TaskType.CAUSAL_LM, TaskType.SEQ_CLS)


@dataclasses.dataclass
class PeftConfig:
    """Common base: ``peft_type`` names the method; ``to_dict``/``from_dict`` are what save_adapter writes.

    ``task_type`` (keyword only, as in PEFT: "CAUSAL_LM" or "SEQ_CLS") is recorded in the saved
    config; the model itself decides what is trained, so it may be left out.
    """

    peft_type: ClassVar[str] = ""
    task_type: str | None = dataclasses.field(default=None, kw_only=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.peft_type:
            CONFIG_TYPES[cls.peft_type] = cls

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, tuple(v))
        if self.task_type is not None:
            self.task_type = str(getattr(self.task_type, "value", self.task_type))  # PEFT's TaskType enum too
            if self.task_type not in TASK_TYPES:
                raise ValueError(f"{type(self).__name__}.task_type must be one of {TASK_TYPES} or None (minilora "
                                 f"has causal LMs and sequence classifiers), got {self.task_type!r}")
        check_fields(self)  # types first: lora_alpha "16" or target_modules 5 never reach the model
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the bad field."""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return {"peft_type": self.peft_type, **d}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> PeftConfig:
        d = dict(d)
        kind = d.pop("peft_type", None)
        if kind not in CONFIG_TYPES:
            raise ValueError(f"unknown peft_type {kind!r}; expected one of {list(CONFIG_TYPES)}")
        return from_dict(CONFIG_TYPES[kind], d, noun="field")


def check_positive(cfg: PeftConfig, *names: str) -> None:
    """Each named field is a positive integer, or ValueError naming it."""
    for n in names:
        v = getattr(cfg, n)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{type(cfg).__name__}.{n} must be a positive integer, got {v!r}")


def check_positive_finite(cfg: PeftConfig, *names: str) -> None:
    """Each named field is a positive finite number, or ValueError naming it."""
    for n in names:
        v = getattr(cfg, n)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{type(cfg).__name__}.{n} must be a positive finite number, got {v!r}")


def check_choice(cfg: PeftConfig, name: str, choices: tuple[str, ...]) -> None:
    """Field ``name`` is one of ``choices``, or ValueError naming it."""
    if getattr(cfg, name) not in choices:
        raise ValueError(f"{type(cfg).__name__}.{name} must be one of {choices}, got {getattr(cfg, name)!r}")


def __getattr__(name: str) -> Any:
    """``from minilora.peft.config import LoraConfig`` keeps working: the class is found among the registered ones."""
    for cls in CONFIG_TYPES.values():  # minilora.peft imports every method module before any of its submodules
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
