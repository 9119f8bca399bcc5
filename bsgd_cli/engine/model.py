"""The BSGD model: blind-spot branch, diffusion branch, optional distilled student, and schedule.

All tensors are NCHW in [-1, 1] ("model space"); t is (N,) in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig, SamplerConfig, StudentConfig
from ..diffusion.schedule import signal_and_noise
from ..errors import ModelFileError
from ..nets import BlindSpotNet, UNet
from ..nets.common import crop_to, pad_to_multiple, pd_down, pd_up


class BsgdModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.blind_spot_net = BlindSpotNet(config.blind_spot, config.channels)
        unet = config.unet
        self.unet = UNet(
            width=unet.width, mults=unet.mults, blocks_per_level=unet.blocks_per_level, channels=config.channels
        )
        self.student: UNet | None = None
        if config.student is not None:
            self.student = self._make_student()

    def _make_student(self) -> UNet:
        student = self.config.student
        assert student is not None
        return UNet(
            width=student.width,
            mults=student.mults,
            blocks_per_level=student.blocks_per_level,
            channels=self.config.channels,
            timed=False,
            norm=student.norm,
        )

    def add_student(self, config_student: StudentConfig) -> None:
        """Attach a fresh student network (``config.student`` is replaced)."""
        self.config = replace(self.config, student=config_student)
        self.student = self._make_student()

    # -- branches -----------------------------------------------------------------------------
    def blind_spot(self, z: torch.Tensor, t: torch.Tensor, stride: int) -> torch.Tensor:
        """B(z, t) through pixel-shuffle downsampling with ``stride`` (1 = none): prediction of y."""
        if stride == 1:
            return self.blind_spot_net(z, t)
        padded, size = pad_to_multiple(z, stride, "constant")
        sub = pd_down(padded, stride)
        valid = pd_down(pad_to_multiple(torch.ones_like(z[:, :1]), stride, "constant")[0], stride)
        out = self.blind_spot_net(sub, t.repeat_interleave(stride * stride), valid=valid)
        return crop_to(pd_up(out, stride), size)

    def diffusion_output(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Raw U-Net output (eps or v, per ``config.unet.prediction``)."""
        return self.unet(z, t)

    def diffusion_x0(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 estimate of the diffusion branch, clamped to [-1, 1]."""
        a, s = signal_and_noise(t, self.config.schedule.kind)
        a = a.to(z.dtype)[:, None, None, None]
        s = s.to(z.dtype)[:, None, None, None]
        out = self.unet(z, t).to(z.dtype)
        if self.config.unet.prediction == "v":
            x0 = a * z - s * out
        else:
            x0 = (z - s * out) / a
        return x0.clamp(-1.0, 1.0)

    def fast(self, noisy: torch.Tensor) -> torch.Tensor:
        """Single-pass student: noisy minus predicted residual."""
        if self.student is None:
            raise ModelFileError("this model has no distilled student; use --mode bsgd or train one with bsgd distill")
        return noisy - self.student(noisy)

    def size_multiple(self) -> int:
        """Tile sides that are multiples of this avoid internal padding in every mode."""
        bs = self.config.blind_spot
        multiple = max(bs.pd_infer * self.blind_spot_net.size_multiple, self.unet.size_multiple)
        return multiple


@dataclass
class LoadedModel:
    """A model ready for inference, with the sampler defaults measured for it and its provenance."""

    model: BsgdModel
    sampler: SamplerConfig
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""
