"""Self-supervised training losses for the two branches (noisy images only, no clean targets).

Both draw t and eps from the ``torch.Generator`` passed in. Images are (N, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .diffusion.schedule import signal_and_noise
from .model import BsgdModel


def _diffuse(
    noisy: torch.Tensor, t: torch.Tensor, generator: torch.Generator, schedule: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    a64, s64 = signal_and_noise(t.double(), schedule)
    a = a64.float()[:, None, None, None].to(noisy.device)
    s = s64.float()[:, None, None, None].to(noisy.device)
    eps = torch.randn(noisy.shape, generator=generator).to(noisy.device)
    return a * noisy + s * eps, eps, a, s


def sample_times(n: int, generator: torch.Generator, t_max: float, zero_prob: float) -> torch.Tensor:
    """(n,) times uniform in (0, t_max], a ``zero_prob`` share set to exactly 0."""
    t = torch.rand(n, generator=generator) * t_max
    zero = torch.rand(n, generator=generator) < zero_prob
    return torch.where(zero, torch.zeros_like(t), t.clamp_min(1e-4))


def blind_spot_loss(
    model: BsgdModel, noisy: torch.Tensor, generator: torch.Generator, config: TrainConfig, t_max: float
) -> torch.Tensor:
    """B(z_t, t) through PD (stride ``pd_train``) predicts the noisy y itself: L1 or L2 over all pixels.

    Because the blind spot hides each pixel's own (independent after PD) noise, the minimiser is an
    estimate of the clean image (Noise2Void / AP-BSN argument).
    """
    t = sample_times(noisy.shape[0], generator, t_max, config.t_zero_prob).to(noisy.device)
    z, _eps, _a, _s = _diffuse(noisy, t, generator, model.config.schedule.kind)
    prediction = model.blind_spot(z, t, model.config.blind_spot.pd_train)
    if config.bsn_loss == "l2":
        return F.mse_loss(prediction.float(), noisy)
    return F.l1_loss(prediction.float(), noisy)


def diffusion_loss(
    model: BsgdModel, noisy: torch.Tensor, generator: torch.Generator, t_max: float
) -> torch.Tensor:
    """Standard denoising-diffusion loss on the noisy images (eps- or v-prediction, MSE)."""
    t = sample_times(noisy.shape[0], generator, t_max, 0.0).to(noisy.device)
    z, eps, a, s = _diffuse(noisy, t, generator, model.config.schedule.kind)
    output = model.diffusion_output(z, t).float()
    target = a * eps - s * noisy if model.config.unet.prediction == "v" else eps
    return F.mse_loss(output, target)


def student_loss(model: BsgdModel, noisy: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distillation: the single-pass student maps y to the BSGD sampler's output (L1)."""
    return F.l1_loss(model.fast(noisy).float(), target)
