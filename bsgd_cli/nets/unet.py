"""Ordinary diffusion U-Net (full receptive field), also used time-free as the distilled student.

A compact DDPM-style U-Net (Ho et al. 2020; Nichol and Dhariwal 2021) without attention, so it
runs at a usable speed on a CPU: residual blocks with GroupNorm, SiLU and FiLM time conditioning,
strided-conv downsampling and nearest-neighbour upsampling with skip connections. A student may
replace GroupNorm by a learnt per-channel scale and shift, everywhere (``norm="affine"``) or at full
resolution only (``norm="mixed"``, GroupNorm below, where its per-tile statistics cost little);
inference then runs the scales and shifts folded into the convolutions (:mod:`.folded`), which skips
those layers' passes over the activations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .common import FiLM, TimeMLP, crop_to, pad_to_multiple


def _groups(channels: int) -> int:
    for groups in (8, 4, 2, 1):
        if channels % groups == 0:
            return groups
    return 1


class ChannelAffine(nn.Module):
    """``weight * x + bias`` per channel: GroupNorm's affine without its per-tile statistics."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.to(x.dtype)[:, None, None], x, self.weight.to(x.dtype)[:, None, None])


def make_norm(kind: str, channels: int) -> nn.Module:
    """The normalisation layer ``kind`` ("group" or "affine") for ``channels`` channels."""
    return nn.GroupNorm(_groups(channels), channels) if kind == "group" else ChannelAffine(channels)


def level_norm(norm: str, level: int) -> str:
    """The layer kind of a UNet with ``norm`` at ``level`` (0: full resolution)."""
    if norm == "mixed":
        return "affine" if level == 0 else "group"
    return norm


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, embed_dim: int | None, norm: str = "group") -> None:
        super().__init__()
        self.norm1 = make_norm(norm, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = make_norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.film = FiLM(embed_dim, out_channels) if embed_dim else None
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        inplace = not torch.is_grad_enabled()  # the norms' outputs are fresh tensors nothing else holds
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace))
        h = self._norm2_film(h, emb)
        h = self.conv2(F.silu(h, inplace=inplace))
        return h + self.skip(x)

    def _norm2_film(self, h: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        """GroupNorm then FiLM; at inference with one t for the batch, FiLM is folded into the norm's affine."""
        if self.film is None or emb is None:
            return self.norm2(h)
        shared = self.film.shared(emb)
        if shared is None or not isinstance(self.norm2, nn.GroupNorm):
            return self.film(self.norm2(h), emb)
        gain, shift = shared
        norm = self.norm2
        return F.group_norm(h, norm.num_groups, norm.weight * gain, norm.bias * gain + shift, norm.eps)


def run_encoder(
    h: torch.Tensor, down: nn.ModuleList, downsample: nn.ModuleList,
    step: Callable[[nn.Module, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The encoder from the stem's output: each level's blocks (``step(block, h)``) after its
    downsampling. Returns the bottom level's output and the features each upper level hands to the
    decoder (the last one first to be popped)."""
    skips = []
    for level, blocks in enumerate(down):
        if level > 0:
            h = downsample[level - 1](h)
        for block in blocks:  # type: ignore[attr-defined]
            h = step(block, h)
        skips.append(h)
    skips.pop()
    return h, skips


class UNet(nn.Module):
    """U(z, t) -> eps or v (diffusion branch), or U(y) -> residual noise (student, ``timed=False``).

    Input (N, C, H, W) in [-1, 1], any H and W (padded internally by reflection); output same shape.
    norm: "group" (GroupNorm), "affine" (:class:`ChannelAffine`, run folded when no gradient is needed)
    or "mixed" (affine at full resolution, GroupNorm below).
    """

    def __init__(
        self, *, width: int, mults: tuple[int, ...], blocks_per_level: int, channels: int = 3, timed: bool = True,
        norm: str = "group",
    ) -> None:
        super().__init__()
        self.norm = norm
        embed_dim = 4 * width if timed else None
        self.time = TimeMLP(4 * width) if timed else None
        widths = [width * m for m in mults]
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = widths[0]
        for level, level_width in enumerate(widths):
            if level > 0:
                self.downsample.append(nn.Conv2d(previous, previous, 3, stride=2, padding=1))
            kind = level_norm(norm, level)
            blocks = [ResBlock(previous, level_width, embed_dim, kind)]
            blocks += [ResBlock(level_width, level_width, embed_dim, kind) for _ in range(blocks_per_level - 1)]
            self.down.append(nn.ModuleList(blocks))
            previous = level_width
        self.up = nn.ModuleList()
        for level in range(len(widths) - 2, -1, -1):
            level_width = widths[level]
            kind = level_norm(norm, level)
            blocks = [ResBlock(previous + level_width, level_width, embed_dim, kind)]
            blocks += [ResBlock(level_width, level_width, embed_dim, kind) for _ in range(blocks_per_level - 1)]
            self.up.append(nn.ModuleList(blocks))
            previous = level_width
        self.out_norm = make_norm(level_norm(norm, 0), previous)
        self.out = nn.Conv2d(previous, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]
        self.size_multiple = 2 ** (len(mults) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm != "group" and not self.training and not torch.is_grad_enabled() and self.time is None:
            return self.folded()(x)
        padded, size = pad_to_multiple(x, self.size_multiple, "reflect")
        emb = self.time(t) if self.time is not None and t is not None else None
        h, skips = run_encoder(self.stem(padded), self.down, self.downsample, lambda block, h: block(h, emb))
        for blocks in self.up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:  # type: ignore[attr-defined]
                h = block(h, emb)
        return crop_to(self.out(F.silu(self.out_norm(h), inplace=not torch.is_grad_enabled())), size)

    def folded(self) -> nn.Module:
        """This network with its affine norms folded into the convolutions (:mod:`.folded`), made again
        whenever a weight changed (trained, loaded or moved since), else the one made before."""
        from .folded import FoldedUNet  # imports this module

        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        cached = self.__dict__.get("_folded")  # a plain attribute: not a submodule, not in the state dict
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, FoldedUNet(self))
            self.__dict__["_folded"] = cached
        return cached[1]
