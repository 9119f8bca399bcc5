"""Spectral Wiener refinement: a second stage that puts back the detail a pilot estimate lost.

Every network mode returns a *pilot* x_p of the clean image. The blind-spot branch and the student
distilled from it are smooth: they cannot see the pixel they predict, so fine texture is lost along
with the noise. This stage is BM3D's second (Wiener) step without block matching, driven by the pilot:

1. Colour: an RGB image is turned into opponent planes (luminance and two colour differences; an
   orthonormal transform, so white noise stays white). Real sRGB noise is strongly correlated
   across R, G and B (demosaicing); in these planes the colour noise is separated from the detail.
2. Cut the noisy input y and the pilot into overlapping ``patch`` x ``patch`` blocks (every
   ``stride`` pixels) and take each block's 2-D DCT, per plane.
3. Estimate the noise power of every DCT frequency (and plane) from the residual y - x_p alone:
   ``median(c^2) / 0.4549`` over all blocks (the median of a squared zero-mean Gaussian is 0.4549
   of its variance), times ``noise_scale`` (times ``noise_scale * chroma_scale`` on the colour
   planes). The residual is mostly noise wherever the pilot is right, so the median ignores the
   places where it is not. One estimate per frequency follows the spatial correlation of real sRGB
   noise (demosaicing makes it far from white).
4. Shrink each coefficient of y by the empirical Wiener gain ``P^2 / (P^2 + sigma^2)``, with P the
   pilot's coefficient, invert the DCT, average the overlapping blocks and return to RGB. The block
   mean (DC) is kept as it is in y: shrinking it would darken shadows (the gain depends on the
   value offset), and the pilot's own mean can be biased (the shipped student's by +0.5/255);
   keeping it measured 0.07 dB better than either on PolyU and Nam, with no change of the image mean.
5. With ``passes`` > 1, the result becomes the next pilot (the noise estimate is kept).

No clean image and no per-set tuning of sigma: the noise is measured on each image. The scales
correct the median's bias on signal-dependent noise and the pilot's own error; the colour planes
want four times the luminance's (colour noise is blotchy and the eye does not miss colour detail).
All defaults were chosen by measurement (docs/ablation-wiener.md). Any other number of planes
(packed Bayer in the RAW domain) is filtered plane by plane with ``noise_scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError

_MEDIAN_OF_CHI2_1 = 0.4549364231195724  # median of a chi-square with 1 degree of freedom
_MAX_NOISE_SAMPLES = 16384  # blocks used for the noise median (a strided subset beyond this)


@dataclass(frozen=True)
class WienerSettings:
    """passes: Wiener passes; noise_scale: multiplies the estimated noise power; chroma_scale: a
    further factor on an RGB image's two colour planes; patch/stride: block side and step in pixels;
    opponent: False filters R, G and B as they are (the first version's way, kept for ablations)."""

    passes: int = 1  # the same defaults as SamplerConfig's wiener_* fields
    noise_scale: float = 3.0
    chroma_scale: float = 4.0
    patch: int = 16
    stride: int = 4
    opponent: bool = True

    def __post_init__(self) -> None:
        if self.passes < 1:
            raise ConfigError("Wiener passes must be at least 1")
        if self.noise_scale <= 0 or self.chroma_scale <= 0:
            raise ConfigError(f"the Wiener noise scales must be positive, got {self.noise_scale} and {self.chroma_scale}")
        if self.patch < 2 or not 1 <= self.stride <= self.patch:
            raise ConfigError(f"Wiener patch must be >= 2 and 1 <= stride <= patch, got {self.patch}, {self.stride}")


@lru_cache(maxsize=8)
def _dct_basis(size: int) -> torch.Tensor:
    """The orthonormal 1-D DCT-II matrix (frequency, position), built in float64."""
    i = torch.arange(size, dtype=torch.float64)
    basis = torch.cos(math.pi * (i[None, :] + 0.5) * i[:, None] / size) * math.sqrt(2.0 / size)
    basis[0] /= math.sqrt(2.0)
    return basis.float()


@lru_cache(maxsize=8)
def _dct_filters(size: int) -> torch.Tensor:
    """The 2-D DCT basis as (size*size, 1, size, size) conv filters, frequency index ky * size + kx."""
    basis = _dct_basis(size)
    return (basis[:, None, :, None] * basis[None, :, None, :]).reshape(size * size, 1, size, size)


# Rows: luminance, red - blue, green - (red + blue) / 2; orthonormal, so its inverse is its transpose.
_OPPONENT = torch.tensor(
    [[1 / math.sqrt(3)] * 3, [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)], [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)]]
)


def _to_planes(image: torch.Tensor, channel_dim: int, opponent: bool = True) -> torch.Tensor:
    """RGB to opponent planes along ``channel_dim``; any other channel count passes unchanged."""
    if image.shape[channel_dim] != 3 or not opponent:
        return image
    return torch.tensordot(_OPPONENT.to(image.device, image.dtype), image.movedim(channel_dim, 0), dims=1).movedim(0, channel_dim)


def _from_planes(planes: torch.Tensor, channel_dim: int, opponent: bool = True) -> torch.Tensor:
    """The inverse of :func:`_to_planes`."""
    if planes.shape[channel_dim] != 3 or not opponent:
        return planes
    return torch.tensordot(_OPPONENT.T.to(planes.device, planes.dtype), planes.movedim(channel_dim, 0), dims=1).movedim(0, channel_dim)


def _scales(channels: int, settings: WienerSettings) -> torch.Tensor:
    """The noise scale of each plane: ``noise_scale``, and ``chroma_scale`` times it on colour planes."""
    scales = torch.full((channels,), settings.noise_scale)
    if channels == 3 and settings.opponent:
        scales[1:] *= settings.chroma_scale
    return scales


def _padding(length: int, patch: int, stride: int, offset: int = 0) -> tuple[int, int]:
    """Padding before/after so blocks cover every pixel as often in the border as inside.

    ``offset``: where this piece starts in the whole image; the block grid is laid on whole-image
    coordinates, so a tile gets exactly the blocks the whole image would have there.
    """
    before = patch - stride + offset % stride
    covered = length + before + patch - stride
    after = patch - stride + (-(covered - patch) % stride)
    return before, after


def _noise_power(residual: torch.Tensor) -> torch.Tensor:
    """Per (..., frequency) noise power from residual DCT coefficients (..., F, blocks)."""
    blocks = residual.shape[-1]
    if blocks > _MAX_NOISE_SAMPLES:
        residual = residual[..., :: math.ceil(blocks / _MAX_NOISE_SAMPLES)]
    return residual.square().median(dim=-1).values / _MEDIAN_OF_CHI2_1


def estimate_noise(noisy: np.ndarray, pilot: np.ndarray, settings: WienerSettings = WienerSettings()) -> torch.Tensor | None:
    """The noise power of every (plane, DCT frequency) of one whole image, shape (C, patch * patch).

    ``noisy`` and ``pilot`` are (H, W, C) float arrays in the value range the refinement will see.
    For RGB the planes are the opponent planes the refinement works in, not R, G and B.
    Measured on non-overlapping blocks spread evenly over the image (at most about 16 k of them),
    read one band of rows at a time, so memory stays small on 100-megapixel photos. Returns None for
    an image smaller than one block (nothing to measure; leave it unrefined). ``noise_scale`` is
    not applied here.
    """
    height, width, channels = noisy.shape
    size = settings.patch
    if height < size or width < size:
        return None
    step = max(size // 2, math.ceil(math.sqrt(height * width / _MAX_NOISE_SAMPLES)))
    filters = _dct_filters(size)
    starts = list(range(0, height - size + 1, step))
    per_band = max(1, 256 // step)  # about 256 rows of the image at a time
    parts = []
    for first in range(0, len(starts), per_band):
        top, last = starts[first], starts[min(first + per_band, len(starts)) - 1]
        band = torch.from_numpy(np.ascontiguousarray(noisy[top : last + size] - pilot[top : last + size], dtype=np.float32))
        planes = _to_planes(band.permute(2, 0, 1), 0, settings.opponent)[:, None]  # (C, 1, rows, W)
        coefficients = F.conv2d(planes, filters, stride=step)  # (C, F, band blocks, blocks across)
        parts.append(coefficients.flatten(2))
    return _noise_power(torch.cat(parts, dim=2))


def wiener_refine(
    noisy: torch.Tensor,
    pilot: torch.Tensor,
    settings: WienerSettings = WienerSettings(),
    noise: torch.Tensor | None = None,
    offset: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Refine ``pilot`` against ``noisy``; both (N, C, H, W) in the same value range; returns the same shape.

    ``noise``: the (C, patch * patch) noise power from :func:`estimate_noise` over the whole image (a
    tile then uses the image's estimate, so tiles agree); None measures each of the N images itself.
    ``offset``: (row, column) of these pixels in the whole image, for a tile: it puts the blocks
    where a whole-image pass would, so tiled and untiled results agree.
    Computed in float32 whatever the input dtype (bf16 autocast is not used here). An RGB input is
    filtered in opponent planes and returned in RGB.
    """
    if noisy.shape != pilot.shape or noisy.ndim != 4:
        raise ConfigError(f"noisy and pilot must both be (N, C, H, W) of one shape, got {tuple(noisy.shape)} and {tuple(pilot.shape)}")
    n, c, h, w = noisy.shape
    size, stride = settings.patch, settings.stride
    filters = _dct_filters(size).to(noisy.device)
    basis = _dct_basis(size).to(noisy.device)
    top, bottom = _padding(h, size, stride, offset[0])
    left, right = _padding(w, size, stride, offset[1])
    # Mirror at the borders; an image smaller than the padding repeats its edge pixels instead.
    pad_mode = "reflect" if max(top, bottom) < h and max(left, right) < w else "replicate"

    def forward(image: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, F, Lh, Lw)
        padded = F.pad(_to_planes(image.float(), 1, settings.opponent).reshape(n * c, 1, h, w), (left, right, top, bottom), mode=pad_mode)
        coefficients = F.conv2d(padded, filters, stride=stride)
        return coefficients.reshape(n, c, size * size, *coefficients.shape[-2:])

    def inverse(coefficients: torch.Tensor) -> torch.Tensor:
        # Separable overlap-add: the inverse DCT along x (kx channels), then along y (ky channels);
        # measured 2.4x faster than one conv_transpose2d with the 2-D filters on 2 CPU cores.
        rows, cols = coefficients.shape[-2:]
        along_x = F.conv_transpose2d(
            coefficients.reshape(n * c * size, size, rows, cols), basis[:, None, None, :], stride=(1, stride)
        )
        summed = F.conv_transpose2d(along_x.reshape(n * c, size, rows, -1), basis[:, None, :, None], stride=(stride, 1))
        count = F.conv_transpose2d(
            torch.ones(1, 1, rows, cols, device=coefficients.device), torch.ones_like(filters[:1]), stride=stride
        )
        image = (summed / count)[..., top : top + h, left : left + w]
        return _from_planes(image.reshape(n, c, h, w), 1, settings.opponent)

    with torch.autocast(device_type=noisy.device.type, enabled=False):
        y = forward(noisy)
        p = forward(pilot)
        if noise is None:
            power = _noise_power((y - p).flatten(-2))  # (N, C, F)
        else:
            power = noise.to(y.device, torch.float32).expand(n, c, size * size)
        sigma2 = (power * _scales(c, settings).to(y.device)[:, None])[..., None, None].clamp_min(1e-12)
        for index in range(settings.passes):
            power = p.square_()  # p is not used again in this pass
            shrunk = y * power.div_(power + sigma2)
            shrunk[:, :, 0] = y[:, :, 0]  # block means pass unchanged: no tonal shift, offset-equivariant
            if index + 1 < settings.passes:
                p = forward(inverse(shrunk))
        return inverse(shrunk).to(noisy.dtype)
