"""Pieces shared by the networks: time embedding, FiLM, size padding, pixel-shuffle downsampling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of diffusion time.

    Args:
        t: (N,) times in [0, 1].
        dim: even embedding size.
    Returns:
        (N, dim) float32 embedding of ``1000 * t`` (the DDPM convention).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class TimeMLP(nn.Module):
    """Maps t in [0, 1] to a conditioning vector of size ``dim``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.dim).to(self.mlp[0].weight.dtype))  # type: ignore[arg-type]


class FiLM(nn.Module):
    """Per-channel scale and shift from a time embedding.

    Applied per channel and constant over space, so it cannot carry a pixel's value to itself:
    safe inside a blind-spot network. Initialised to the identity.
    """

    def __init__(self, embed_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embed_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.proj(emb)[:, :, None, None].chunk(2, dim=1)
        return x * (1.0 + scale) + shift

    def shared(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(gain, shift), each (C,), when every item of the batch gets the same ones and no gradient is
        needed; else None. Inference runs one time for the whole batch, so a caller can fold them into
        the weights of the linear layer before (a convolution, a normalisation's affine): one pass over
        the activations fewer, the same result up to float rounding."""
        if torch.is_grad_enabled() or not bool((emb == emb[:1]).all()):
            return None
        scale, shift = self.proj(emb[:1])[0].float().chunk(2)
        return 1.0 + scale, shift


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) at the bottom and right so H and W are multiples of ``multiple``.

    ``mode`` is "constant" (zeros; the only choice that keeps a blind spot exact) or "reflect"
    (falls back to "replicate" when the image is too small to reflect).
    Returns the padded tensor and the original (H, W) for :func:`crop_to`.
    """
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (height, width)
    if mode == "reflect" and (pad_h >= height or pad_w >= width):
        mode = "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (height, width)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x[..., : size[0], : size[1]]


def pd_down(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Pixel-shuffle downsampling (AP-BSN's PD): (N, C, H, W) -> (N * s^2, C, H / s, W / s).

    Each output image holds the pixels of one phase (i, j) of the s x s grid, so neighbours inside a
    sub-image are ``stride`` pixels apart in the input and their noise is nearly independent.
    H and W must be multiples of ``stride``.
    """
    if stride == 1:
        return x
    n, c, h, w = x.shape
    sub = F.pixel_unshuffle(x, stride)  # (N, C * s^2, h/s, w/s), channel = c * s^2 + phase
    sub = sub.view(n, c, stride * stride, h // stride, w // stride).transpose(1, 2)
    return sub.reshape(n * stride * stride, c, h // stride, w // stride)


def pd_up(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Inverse of :func:`pd_down`."""
    if stride == 1:
        return x
    ns, c, h, w = x.shape
    n = ns // (stride * stride)
    merged = x.view(n, stride * stride, c, h, w).transpose(1, 2).reshape(n, c * stride * stride, h, w)
    return F.pixel_shuffle(merged, stride)
