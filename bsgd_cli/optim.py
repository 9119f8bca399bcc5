"""Optimisation helpers shared by training and distillation: learning-rate schedule and EMA."""

from __future__ import annotations

import math

import torch
from torch import nn


def warmup_cosine(step: int, *, peak: float, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5% of ``peak`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """EMA of ``model``'s parameters into ``ema``, with the usual warm-up ``min(decay, (1+s)/(10+s))``."""
    rate = min(decay, (1 + step) / (10 + step))
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param, 1.0 - rate)
