"""Configs of the fine-tuning methods. Each is a dataclass that round-trips through JSON (to_dict / from_dict)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from minilora.validate import check_fields


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
        for cls in CONFIGS:
            if cls.peft_type == kind:
                names = {f.name for f in dataclasses.fields(cls)}
                unknown = sorted(set(d) - names)
                if unknown:
                    raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}")
                return cls(**d)
        raise ValueError(f"unknown peft_type {kind!r}; expected one of {[c.peft_type for c in CONFIGS]}")


def _positive(cfg: PeftConfig, *names: str) -> None:
    for n in names:
        v = getattr(cfg, n)
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{type(cfg).__name__}.{n} must be a positive integer, got {v!r}")


def _choice(cfg: PeftConfig, name: str, choices: tuple[str, ...]) -> None:
    if getattr(cfg, name) not in choices:
        raise ValueError(f"{type(cfg).__name__}.{name} must be one of {choices}, got {getattr(cfg, name)!r}")


@dataclasses.dataclass
class LoraConfig(PeftConfig):
    """LoRA (Hu et al. 2021): h = W0 x + (alpha / r) B A x; DoRA with use_dora=True; QLoRA with quantize=True."""

    peft_type: ClassVar[str] = "LORA"
    r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    target_modules: str | tuple[str, ...] = ("c_attn",)
    bias: str = "none"  # "none" | "all" | "lora_only": which biases train
    use_rslora: bool = False  # scale alpha / sqrt(r) instead of alpha / r
    use_dora: bool = False
    init_lora_weights: str = "kaiming"  # "kaiming" (uniform) | "gaussian"
    modules_to_save: tuple[str, ...] = ()  # modules trained in full beside the adapter (e.g. a classifier head)
    quantize: bool = False  # QLoRA: store the targeted base weights as NF4 first
    quant_block_size: int = 64
    double_quant: bool = True

    def validate(self) -> None:
        _positive(self, "r", "quant_block_size")
        _choice(self, "bias", ("none", "all", "lora_only"))
        _choice(self, "init_lora_weights", ("kaiming", "gaussian"))
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"LoraConfig.lora_dropout must be in [0, 1), got {self.lora_dropout}")

    @property
    def scaling(self) -> float:
        return self.lora_alpha / (self.r**0.5 if self.use_rslora else self.r)


@dataclasses.dataclass
class AdapterConfig(PeftConfig):
    """Bottleneck adapters (Houlsby et al. 2019): h + up(act(down(h))) after a sublayer."""

    peft_type: ClassVar[str] = "ADAPTER"
    bottleneck: int = 16
    placement: str = "houlsby"  # "houlsby": after attention and after the MLP; "pfeiffer": after the MLP only
    activation: str = "gelu"  # "gelu" | "relu" | "silu" | "tanh"
    train_layernorms: bool = False
    modules_to_save: tuple[str, ...] = ()

    def validate(self) -> None:
        _positive(self, "bottleneck")
        _choice(self, "placement", ("houlsby", "pfeiffer"))
        _choice(self, "activation", ("gelu", "relu", "silu", "tanh"))


@dataclasses.dataclass
class PrefixTuningConfig(PeftConfig):
    """Prefix tuning (Li & Liang 2021): P learned key/value vectors in front of K and V in every layer."""

    peft_type: ClassVar[str] = "PREFIX_TUNING"
    num_virtual_tokens: int = 10
    prefix_projection: bool = False  # train through a reparameterisation MLP, folded away for inference
    encoder_hidden_size: int | None = None  # the MLP's hidden width (default n_embd)
    modules_to_save: tuple[str, ...] = ()

    def validate(self) -> None:
        _positive(self, "num_virtual_tokens")
        if self.encoder_hidden_size is not None:
            _positive(self, "encoder_hidden_size")


@dataclasses.dataclass
class PromptTuningConfig(PeftConfig):
    """Prompt tuning (Lester et al. 2021): P soft prompt embeddings prepended to the input embeddings."""

    peft_type: ClassVar[str] = "PROMPT_TUNING"
    num_virtual_tokens: int = 10
    init: str = "random"  # "random" | "text"
    init_text: str | None = None
    modules_to_save: tuple[str, ...] = ()

    def validate(self) -> None:
        _positive(self, "num_virtual_tokens")
        _choice(self, "init", ("random", "text"))
        if self.init == "text" and not self.init_text:
            raise ValueError("PromptTuningConfig: init='text' needs init_text")


@dataclasses.dataclass
class IA3Config(PeftConfig):
    """IA3 (Liu et al. 2022): learned vectors, initialised to ones, rescale keys, values and MLP activations."""

    peft_type: ClassVar[str] = "IA3"
    target_modules: str | tuple[str, ...] = ("c_attn", "mlp.c_proj")
    feedforward_modules: str | tuple[str, ...] = ("mlp.c_proj",)  # these are scaled on their input, the rest on K, V
    modules_to_save: tuple[str, ...] = ()


@dataclasses.dataclass
class FullFineTuneConfig(PeftConfig):
    """Full fine-tuning in the same API: no adapter, every base parameter trains (the baseline)."""

    peft_type: ClassVar[str] = "FULL"


CONFIGS: tuple[type[PeftConfig], ...] = (
    LoraConfig, AdapterConfig, PrefixTuningConfig, PromptTuningConfig, IA3Config, FullFineTuneConfig,
)
