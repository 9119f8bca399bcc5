"""Blind-spot guidance: wrap the two branches into one x0 callable (classifier-free-guidance form).

x0 = x_c + w * (x_b - x_c), with x_c the diffusion branch's x0 estimate and x_b the blind-spot
branch's semi-clean estimate. w = 1 is the blind-spot branch alone, w = 0 the diffusion branch
alone, w > 1 extrapolates away from the diffusion estimate. At w = 0 or 1 the unused branch is not
evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

X0Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def blind_spot_guidance(diffusion_x0: X0Fn, blind_spot_x0: X0Fn, weight: float) -> X0Fn:
    def guided(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if weight == 1.0:
            return blind_spot_x0(z, t)
        if weight == 0.0:
            return diffusion_x0(z, t)
        x_c = diffusion_x0(z, t)
        x_b = blind_spot_x0(z, t)
        return x_c + weight * (x_b - x_c)

    return guided
