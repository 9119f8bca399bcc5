"""Time-conditioned blind-spot U-Net built from shifted convolutions.

Laine, Karras, Lehtinen, Aila, "High-Quality Self-Supervised Deep Image Denoising", NeurIPS 2019:
one U-Net whose receptive field is the half-plane of rows at or above the output row, run on the
input in four rotations; each result is shifted down one row (so it sees only rows strictly above),
rotated back, and the four are merged by 1x1 convolutions. The union of the four open half-planes is
everything but the centre pixel: the output at p never depends on the input at p.

Conditioning on diffusion time uses FiLM (per-channel scale and shift), which cannot leak the centre
pixel. No normalisation over space, pooling over the whole image, or attention is used.
With ``residual`` the head predicts a correction to the mean of the 8 neighbours (also blind).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BlindSpotConfig
from .common import FiLM, TimeMLP, crop_to, pad_to_multiple


def shift_down(x: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """Move features down by ``rows`` (zeros enter at the top): row i then holds old row i - rows."""
    return F.pad(x, (0, 0, rows, 0))[:, :, : x.shape[2], :]


class ShiftConv(nn.Module):
    """3x3 convolution whose output row i sees input rows i - 2 .. i only (zero padding)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor, gain: torch.Tensor | None = None, shift: torch.Tensor | None = None
                ) -> torch.Tensor:
        """The convolution, its output channels scaled by ``gain`` and moved by ``shift`` ((C,) each) if given."""
        weight, bias = self.conv.weight, self.conv.bias
        assert bias is not None
        if gain is not None and shift is not None:
            weight, bias = weight * gain[:, None, None, None], bias * gain + shift
        return F.conv2d(F.pad(x, (1, 1, 2, 0)), weight, bias)


class ShiftBlock(nn.Module):
    """ShiftConv -> FiLM(t) -> LeakyReLU. At inference with one t for the whole batch, FiLM is folded
    into the convolution's weights (:meth:`FiLM.shared`)."""

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.conv = ShiftConv(in_channels, out_channels)
        self.film = FiLM(embed_dim, out_channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        shared = self.film.shared(emb)
        if shared is not None:
            return F.leaky_relu(self.conv(x, *shared), 0.1, inplace=True)
        return F.leaky_relu(self.film(self.conv(x), emb), 0.1)


def shifted_pool(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool that keeps "row i sees rows <= i": shift down one row first (Laine et al.)."""
    return F.max_pool2d(shift_down(x, 1), 2)


class HalfPlaneUNet(nn.Module):
    """U-Net whose output row i depends on input rows <= i only."""

    def __init__(self, config: BlindSpotConfig, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        widths = [config.width * m for m in config.mults]
        self.down = nn.ModuleList()
        previous = in_channels
        for width in widths:
            blocks = [ShiftBlock(previous, width, embed_dim)]
            blocks += [ShiftBlock(width, width, embed_dim) for _ in range(config.blocks_per_level - 1)]
            self.down.append(nn.ModuleList(blocks))
            previous = width
        self.up = nn.ModuleList()
        for level in range(len(widths) - 2, -1, -1):
            width = widths[level]
            blocks = [ShiftBlock(previous + width, width, embed_dim)]
            blocks += [ShiftBlock(width, width, embed_dim) for _ in range(config.blocks_per_level - 1)]
            self.up.append(nn.ModuleList(blocks))
            previous = width
        self.out_channels = previous

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, blocks in enumerate(self.down):
            if level > 0:
                x = shifted_pool(x)
            for block in blocks:  # type: ignore[attr-defined]
                x = block(x, emb)
            skips.append(x)
        skips.pop()
        for blocks in self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = torch.cat([x, skips.pop()], dim=1)
            for block in blocks:  # type: ignore[attr-defined]
                x = block(x, emb)
        return x


def neighbour_mean(x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per channel, the mean of each pixel's valid 8 neighbours (never the pixel itself).

    Borders average only the neighbours inside the image (zero-padded sums over zero-padded
    counts), so no padding copies a pixel next to itself. ``valid`` (N, 1, H, W) is 1 on real
    pixels and 0 on padding added before the call, which then counts as outside too (else an image
    whose side is not a multiple of the net's would get grey-pulled last rows: results that depend
    on the tiling). A pixel with no valid neighbour gets 0.
    """
    channels = x.shape[1]
    kernel = torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device)
    kernel[0, 0, 1, 1] = 0.0
    valid = torch.ones_like(x[:, :1]) if valid is None else valid.to(x.dtype)
    sums = F.conv2d(x * valid, kernel.expand(channels, 1, 3, 3), padding=1, groups=channels)
    counts = F.conv2d(valid, kernel, padding=1)
    return sums / counts.clamp_min(1.0)


class BlindSpotNet(nn.Module):
    """B(z, t): predicts the noisy image at each pixel from its neighbours only.

    Input (N, C, H, W) in [-1, 1] (any H, W), t (N,) in [0, 1]; output (N, C, H, W).
    """

    def __init__(self, config: BlindSpotConfig, channels: int = 3) -> None:
        super().__init__()
        self.config = config
        embed_dim = 4 * config.width
        self.time = TimeMLP(embed_dim)
        self.body = HalfPlaneUNet(config, channels, embed_dim)
        features = self.body.out_channels
        self.head = _head(4 * features, config.head_width, channels)
        self.channels = channels
        if config.residual:
            # Start as the neighbour mean and learn a correction: flat regions come out right at
            # any brightness and colour, including ones the training photos never showed.
            nn.init.zeros_(self.head[-1].weight)  # type: ignore[arg-type]
            nn.init.zeros_(self.head[-1].bias)  # type: ignore[arg-type]
        self.size_multiple = 2 ** (len(config.mults) - 1)

    def forward(
        self, z: torch.Tensor, t: torch.Tensor, *, batch_rotations: bool = True, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The prediction of each value from its neighbours, (N, C, H, W).

        ``valid`` (N, 1, H, W): 1 on real pixels, 0 on padding the caller added (see neighbour_mean).
        """
        padded, size = pad_to_multiple(z, self.size_multiple, "constant")
        emb = self.time(t)
        n = padded.shape[0]
        if batch_rotations and padded.shape[2] == padded.shape[3]:
            # Square: run the four rotations as one batch through the shared body.
            rotated = torch.cat([torch.rot90(padded, k, dims=(2, 3)) for k in range(4)], dim=0)
            features = shift_down(self.body(rotated, emb.repeat(4, 1)), 1)
            parts = [torch.rot90(features[k * n : (k + 1) * n], -k, dims=(2, 3)) for k in range(4)]
        else:
            parts = []
            for k in range(4):
                features = shift_down(self.body(torch.rot90(padded, k, dims=(2, 3)), emb), 1)
                parts.append(torch.rot90(features, -k, dims=(2, 3)))
        features = torch.cat(parts, dim=1)
        out = self.head(features)
        if self.config.residual:
            mask = torch.ones_like(z[:, :1]) if valid is None else valid
            out = out + neighbour_mean(padded, pad_to_multiple(mask, self.size_multiple, "constant")[0])
        return crop_to(out, size)


def _head(in_channels: int, width: int, out_channels: int) -> nn.Sequential:
    """Three 1x1 convolutions (no spatial reach, so the blind spot stays exact)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 1),
        nn.LeakyReLU(0.1),
        nn.Conv2d(width, width, 1),
        nn.LeakyReLU(0.1),
        nn.Conv2d(width, out_channels, 1),
    )
