"""Optimisation helpers shared by training and distillation: learning-rate schedules, EMA, time budgets."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

FLOOR = 0.05  # the cosine decays to this share of the peak rate


def _cosine(progress: float, peak: float) -> float:
    """Cosine decay from ``peak`` (progress 0) to ``FLOOR * peak`` (progress >= 1)."""
    progress = min(1.0, max(0.0, progress))
    return peak * (FLOOR + (1.0 - FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def warmup_cosine(step: int, *, peak: float, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5% of ``peak`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return _cosine((step - warmup) / max(1, total - warmup), peak)


def warmup_cosine_by_time(step: int, fraction: float, *, peak: float, warmup: int) -> float:
    """Linear warm-up over the first ``warmup`` steps, then cosine decay to 5% of ``peak`` as ``fraction``
    (the share of a wall-clock budget used, 0..1) goes to 1: the schedule ends when the time does,
    whatever the step rate turns out to be."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return _cosine(fraction, peak)


@dataclass(frozen=True)
class WallClock:
    """A wall-clock budget: ``seconds`` from ``started`` (a ``time.monotonic()`` reading).

    Make one with :meth:`start` where the clock should begin (before loading data, if that time
    counts); training and distillation stop cleanly after the step that uses it up.
    """

    seconds: float
    started: float

    @classmethod
    def start(cls, seconds: float) -> WallClock:
        if not seconds > 0:
            raise ValueError(f"a time budget must be positive, got {seconds} s")
        return cls(seconds=float(seconds), started=time.monotonic())

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return max(0.0, self.seconds - self.elapsed())

    def fraction(self) -> float:
        """Share of the budget used, clipped to [0, 1]."""
        return min(1.0, self.elapsed() / self.seconds)

    def expired(self) -> bool:
        return self.elapsed() >= self.seconds


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """EMA of ``model``'s parameters into ``ema``, with the usual warm-up ``min(decay, (1+s)/(10+s))``."""
    rate = min(decay, (1 + step) / (10 + step))
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param, 1.0 - rate)
