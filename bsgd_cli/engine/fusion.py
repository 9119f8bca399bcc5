"""The ``bsn`` mode's fusion: each pixel gets its own noisy value back where the blind spot cannot explain it.

A blind-spot network never sees the pixel it predicts, so on mild noise the detail its neighbours cannot
tell costs more than the noise it removes. Laine et al. (NeurIPS 2019) fuse the prediction with the
pixel by Bayes' rule. Here the prior's spread comes from the data around the pixel:

* ``local``: per channel, the mean squared residual (noisy - prediction) over a ``window`` square around
  the pixel, the pixel itself left out (so its own noise does not decide its own weight);
* ``noise``: the whole image's median of ``local`` per channel (most of a photo is explained up to the
  noise);
* ``prior = max(local - scale * noise, 0)``, and the result is
  ``prediction + prior / (prior + noise) * (noisy - prediction)``.

Flat areas keep the smooth prediction; edges and texture the neighbours could not predict get the
pixel back. The image is processed in bands of rows with a halo of ``window // 2``, so the result is
exactly the whole-image result whatever the band or tile size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_BAND_ROWS = 256
_MAX_SAMPLES = 1 << 20  # pixels per channel the median is taken over (a regular subsample beyond that)


def local_power(residual: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of ``residual ** 2`` over the ``window`` square around each value, the centre left out.

    ``residual``: (N, C, H, W); borders average only the values inside the image. Same shape out.
    """
    channels = residual.shape[1]
    kernel = torch.ones(1, 1, window, window, dtype=residual.dtype, device=residual.device)
    kernel[0, 0, window // 2, window // 2] = 0.0
    pad = window // 2
    sums = F.conv2d(residual.square(), kernel.expand(channels, 1, window, window), padding=pad, groups=channels)
    counts = F.conv2d(torch.ones_like(residual[:, :1]), kernel, padding=pad)
    return sums / counts.clamp_min(1.0)


def fuse(noisy: torch.Tensor, prediction: torch.Tensor, noise: torch.Tensor, window: int, scale: float) -> torch.Tensor:
    """The fusion of one (N, C, H, W) block; ``noise`` (C,) from :func:`noise_power`. Float32 out."""
    residual = (noisy - prediction).float()
    level = noise.to(residual.device, torch.float32).clamp_min(1e-12)[None, :, None, None]
    prior = (local_power(residual, window) - scale * level).clamp_min(0.0)
    return prediction.float() + prior / (prior + level) * residual


def _bands(height: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(first row, end row, first row read, end row read) of each band."""
    bands = []
    for first in range(0, height, _BAND_ROWS):
        end = min(first + _BAND_ROWS, height)
        bands.append((first, end, max(0, first - halo), min(height, end + halo)))
    return bands


def _as_tensor(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).permute(2, 0, 1)[None]


def noise_power(noisy: np.ndarray, pilot: np.ndarray, window: int) -> torch.Tensor:
    """Per channel, the image's median of the local residual power: (C,). ``noisy``, ``pilot``: (H, W, C)."""
    height, width, channels = noisy.shape
    step = max(1, math.ceil(math.sqrt(height * width / _MAX_SAMPLES)))
    samples = []
    for first, end, top, bottom in _bands(height, window // 2):
        power = local_power(_as_tensor(noisy[top:bottom]) - _as_tensor(pilot[top:bottom]), window)
        rows = power[0, :, first - top : end - top]
        offset = (-first) % step  # the same regular grid of rows whatever the bands
        samples.append(rows[:, offset::step, ::step].reshape(channels, -1))
    return torch.cat(samples, dim=1).median(dim=1).values


def fusion_pass(noisy: np.ndarray, pilot: np.ndarray, window: int, scale: float) -> np.ndarray:
    """:func:`fuse` over a whole (H, W, C) image, band by band, written into ``pilot``; returns it."""
    noise = noise_power(noisy, pilot, window)
    halo = window // 2
    above = pilot[:0].copy()  # the original pilot rows just above the current band (already overwritten)
    for first, end, top, bottom in _bands(noisy.shape[0], halo):
        rows = np.concatenate([above[above.shape[0] - (first - top) :] if first > top else above[:0],
                               pilot[first:bottom]])
        fused = fuse(_as_tensor(noisy[top:bottom]), _as_tensor(rows), noise, window, scale)
        above = pilot[max(first, end - halo) : end].copy()
        pilot[first:end] = fused[0, :, first - top : end - top].permute(1, 2, 0).numpy()
    return pilot
