"""The diffusion time the ``bsgd`` mode starts an image from, from the image's measured noise.

The guided sampler adds fresh noise at ``t_start`` and denoises from there. A fixed start suits one
noise level: on mild DSLR noise the tuning split wants 0.02-0.05, on the strong phone noise of the
SIDD pair 0.2-0.35 (docs/LEARNING.md). With ``SamplerConfig.t_start_noise`` = c above 0, each image
starts at the time whose noise-to-signal ratio s(t) / a(t) is c times its noise standard deviation in
model units ([-1, 1], so twice that in [0, 1]), never before ``t_start`` and at most
:data:`T_START_CAP`. The noise is the one the Wiener step measures (:func:`estimate_noise`), against
a cheap pilot: the student's output, or the blind-spot branch's for a model without one.
"""

from __future__ import annotations

import math

import torch

from ..config import SamplerConfig
from ..diffusion.schedule import time_for_ratio

T_START_CAP = 0.5
"""The latest start: the branches are trained on t up to 0.5 (``TrainConfig.t_max``)."""


def noise_std(noise: list[torch.Tensor] | None, channels: int) -> float | None:
    """The noise standard deviation per value, in the image's units, from :func:`estimate_noise`'s
    per-frequency powers (their mean over a plane's frequencies is the plane's variance per pixel; the
    planes are orthonormal); None when nothing could be measured."""
    if noise is None:
        return None
    return math.sqrt(sum(float(group.mean(dim=-1).sum()) for group in noise) / channels)


def start_time(settings: SamplerConfig, std: float | None, schedule: str) -> float:
    """The start for an image whose noise is ``std`` ([0, 1] units; None: unknown)."""
    if settings.t_start_noise <= 0 or std is None:
        return settings.t_start
    measured = time_for_ratio(settings.t_start_noise * 2.0 * std, schedule)
    return max(settings.t_start, min(measured, T_START_CAP))
