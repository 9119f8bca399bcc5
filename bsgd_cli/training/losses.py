"""Self-supervised training losses for the two branches (noisy images only, no clean targets).

Both draw t and eps from the ``torch.Generator`` passed in (the ``*_given`` variants take them
already drawn, by :func:`draw_noise`). Images are (N, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..diffusion.schedule import signal_and_noise
from ..engine.model import BsgdModel


def _diffuse(
    noisy: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    a64, s64 = signal_and_noise(t.double(), schedule)
    a = a64.float()[:, None, None, None].to(noisy.device)
    s = s64.float()[:, None, None, None].to(noisy.device)
    eps = eps.to(noisy.device)
    return a * noisy + s * eps, eps, a, s


def sample_times(n: int, generator: torch.Generator, t_max: float, zero_prob: float) -> torch.Tensor:
    """(n,) times uniform in (0, t_max], a ``zero_prob`` share set to exactly 0, on the generator's device."""
    t = torch.rand(n, generator=generator, device=generator.device) * t_max
    zero = torch.rand(n, generator=generator, device=generator.device) < zero_prob
    return torch.where(zero, torch.zeros_like(t), t.clamp_min(1e-4))


def draw_noise(
    shape: torch.Size | tuple[int, ...], generator: torch.Generator, t_max: float, zero_prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, eps) for a batch of ``shape`` (N, C, H, W), drawn on the generator's device in the order
    the losses use.

    Distributed training draws them for the global batch on every rank and keeps its own slice.
    """
    t = sample_times(shape[0], generator, t_max, zero_prob)
    eps = torch.randn(shape, generator=generator, device=generator.device)
    return t, eps


def blind_spot_loss(
    model: BsgdModel, noisy: torch.Tensor, generator: torch.Generator, config: TrainConfig, t_max: float
) -> torch.Tensor:
    """B(z_t, t) through PD (stride ``pd_train``) predicts the noisy y itself: L1 or L2 over all pixels;

    Because the blind spot hides each pixel's own (independent after PD) noise, the minimiser is an
    estimate of the clean image (Noise2Void / AP-BSN argument).
    """
    t, eps = draw_noise(noisy.shape, generator, t_max, config.t_zero_prob)
    return blind_spot_loss_given(model, noisy, t, eps, config)


def blind_spot_loss_given(
    model: BsgdModel, noisy: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, config: TrainConfig
) -> torch.Tensor:
    """:func:`blind_spot_loss` with t and eps already drawn (see :func:`draw_noise`)."""
    t = t.to(noisy.device)
    z, _eps, _a, _s = _diffuse(noisy, t, eps, model.config.schedule.kind)
    stride = model.config.blind_spot.pd_train
    prediction = model.blind_spot(z, t, stride)
    if config.bsn_loss == "l2":
        return F.mse_loss(prediction.float(), noisy)
    return F.l1_loss(prediction.float(), noisy)


def diffusion_loss(
    model: BsgdModel, noisy: torch.Tensor, generator: torch.Generator, t_max: float
) -> torch.Tensor:
    """Standard denoising-diffusion loss on the noisy images (eps- or v-prediction, MSE)."""
    t, eps = draw_noise(noisy.shape, generator, t_max, 0.0)
    return diffusion_loss_given(model, noisy, t, eps)


def diffusion_loss_given(model: BsgdModel, noisy: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """:func:`diffusion_loss` with t and eps already drawn (see :func:`draw_noise`)."""
    t = t.to(noisy.device)
    z, eps, a, s = _diffuse(noisy, t, eps, model.config.schedule.kind)
    output = model.diffusion_output(z, t).float()
    target = a * eps - s * noisy if model.config.unet.prediction == "v" else eps
    return F.mse_loss(output, target)


def student_loss(model: BsgdModel, noisy: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distillation: the single-pass student maps y to the BSGD sampler's output (L1)."""
    return F.l1_loss(model.fast(noisy).float(), target)


class BranchLosses(torch.nn.Module):
    """The training forward pass as one module, so DistributedDataParallel can wrap it.

    ``forward(noisy, bsn_t, bsn_eps, diffusion_t, diffusion_eps)`` returns ``{"loss_bsn": ...,
    "loss_diffusion": ...}`` for the branches ``config.branch`` trains (t and eps drawn beforehand by
    :func:`bsgd_cli.training.losses.draw_noise`; pass None for an untrained branch's).
    """

    def __init__(self, model: BsgdModel, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def forward(
        self,
        noisy: torch.Tensor,
        bsn_t: torch.Tensor | None,
        bsn_eps: torch.Tensor | None,
        diffusion_t: torch.Tensor | None,
        diffusion_eps: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        if bsn_t is not None and bsn_eps is not None:
            losses["loss_bsn"] = blind_spot_loss_given(self.model, noisy, bsn_t, bsn_eps, self.config)
        if diffusion_t is not None and diffusion_eps is not None:
            losses["loss_diffusion"] = diffusion_loss_given(self.model, noisy, diffusion_t, diffusion_eps)
        return losses
