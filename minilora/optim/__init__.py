"""Optimizers (SGD, Adam, AdamW), learning-rate schedules, gradient clipping and the non-finite guard."""

from minilora.optim.adam import Adam, AdamW
from minilora.optim.clip import (
    NonFiniteError,
    check_finite,
    check_updated,
    clip_grad_norm,
    clip_grad_norm_,
    grad_norm,
    scale_grads,
)
from minilora.optim.grad_scaler import GradScaler, LossScaleError
from minilora.optim.optimizer import Optimizer, param_groups
from minilora.optim.schedules import (
    ConstantSchedule,
    LinearSchedule,
    Schedule,
    WarmupCosineSchedule,
    get_schedule,
    schedule_from_dict,
)
from minilora.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "ConstantSchedule",
    "GradScaler",
    "LinearSchedule",
    "LossScaleError",
    "NonFiniteError",
    "Optimizer",
    "Schedule",
    "WarmupCosineSchedule",
    "check_finite",
    "check_updated",
    "clip_grad_norm",
    "clip_grad_norm_",
    "get_schedule",
    "grad_norm",
    "param_groups",
    "scale_grads",
    "schedule_from_dict",
]
