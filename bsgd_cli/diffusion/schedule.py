"""Continuous-time noise schedules on t in [0, 1] (pure functions, float64 maths).

z_t = a(t) * y + s(t) * eps with a = sqrt(abar), s = sqrt(1 - abar). ``cosine`` is Nichol and
Dhariwal (2021) with offset 0.008; ``linear`` is DDPM's beta range 1e-4 .. 0.02 over 1000 steps in
its continuous form. Named schedules never change meaning: add a new name instead.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError

_MIN_ABAR = 1e-5
_COSINE_OFFSET = 0.008


def alpha_bar(t: torch.Tensor | float, kind: str = "cosine") -> torch.Tensor:
    """abar(t) in (0, 1], float64; abar(0) = 1 exactly."""
    t64 = torch.as_tensor(t, dtype=torch.float64).clamp(0.0, 1.0)
    if kind == "cosine":
        f = torch.cos((t64 + _COSINE_OFFSET) / (1 + _COSINE_OFFSET) * math.pi / 2) ** 2
        f0 = math.cos(_COSINE_OFFSET / (1 + _COSINE_OFFSET) * math.pi / 2) ** 2
        abar = f / f0
    elif kind == "linear":
        beta0, beta1 = 0.1, 20.0  # 1000 * (1e-4, 0.02)
        abar = torch.exp(-(beta0 * t64 + 0.5 * (beta1 - beta0) * t64**2))
    else:
        raise ConfigError(f"unknown schedule {kind!r}; choose 'cosine' or 'linear'")
    return torch.where(t64 <= 0, torch.ones_like(abar), abar.clamp(_MIN_ABAR, 1.0))


def signal_and_noise(t: torch.Tensor | float, kind: str = "cosine") -> tuple[torch.Tensor, torch.Tensor]:
    """(a(t), s(t)) in float64."""
    abar = alpha_bar(t, kind)
    return abar.sqrt(), (1.0 - abar).clamp_min(0.0).sqrt()


def ddim_times(t_start: float, steps: int) -> list[tuple[float, float]]:
    """K evenly spaced (t, t_prev) pairs from ``t_start`` down to 0; the last t_prev is exactly 0."""
    if steps < 1:
        raise ConfigError("steps must be at least 1")
    grid = [t_start * (1.0 - k / steps) for k in range(steps + 1)]
    grid[-1] = 0.0
    return list(zip(grid[:-1], grid[1:], strict=True))


def time_for_ratio(ratio: float, kind: str = "cosine") -> float:
    """The diffusion time t whose noise-to-signal ratio s(t) / a(t) is ``ratio`` (0 for ratio <= 0),
    by bisection (the ratio grows with t); at most 1."""
    if ratio <= 0:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        a, s = signal_and_noise(middle, kind)
        if float(s / a) < ratio:
            low = middle
        else:
            high = middle
    return high
