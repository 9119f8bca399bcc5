"""Spectral Wiener refinement: a second stage that puts back the detail a pilot estimate lost.

Every network mode returns a *pilot* x_p of the clean image. The blind-spot branch and the student
distilled from it are smooth: they cannot see the pixel they predict, so fine texture is lost along
with the noise. This stage is BM3D's second (Wiener) step without block matching, driven by the pilot:

1. Colour: an RGB image is turned into opponent planes (luminance and two colour differences; an
   orthonormal transform, so white noise stays white). Real sRGB noise is strongly correlated
   across R, G and B (demosaicing); in these planes the colour noise is separated from the detail.
2. Cut the noisy input y and the pilot into overlapping ``patch`` x ``patch`` blocks (every
   ``stride`` pixels) and take each block's 2-D DCT, per plane. The colour planes use larger blocks
   (``chroma_patch`` every ``chroma_stride``, 32 every 8 by default: each pixel in as many blocks as
   16 every 4, for little more time; docs/NOTES.md): colour noise is blotchy, its power sits at
   frequencies too low for the luminance's 16x16 blocks to reach.
3. Estimate the noise power of every DCT frequency (and plane) from the residual y - x_p alone:
   ``median(c^2) / 0.4549`` over all blocks (the median of a squared zero-mean Gaussian is 0.4549
   of its variance), times ``noise_scale`` (times ``noise_scale * chroma_scale`` on the colour
   planes). The residual is mostly noise wherever the pilot is right, so the median ignores the
   places where it is not. One estimate per frequency follows the spatial correlation of real sRGB
   noise (demosaicing makes it far from white).
4. Shrink each coefficient of y by the empirical Wiener gain ``P^2 / (P^2 + sigma^2)``, with P the
   pilot's coefficient, invert the DCT, average the overlapping blocks and return to RGB. The block
   mean (DC) is kept as it is in y: shrinking it would darken shadows (the gain depends on the
   value offset), and the pilot's own mean can be biased; keeping it measured better than either
   (docs/NOTES.md), and the image mean cannot change.
5. With ``passes`` > 1, the result becomes the next pilot (the noise estimate is kept).

No clean image and no per-set tuning of sigma: the noise is measured on each image. The scales
correct the median's bias on signal-dependent noise and the pilot's own error; the colour planes
want six times the luminance's (colour noise is blotchy and the eye does not miss colour detail).
All defaults were chosen by measurement (docs/BENCHMARKS.md, third and fourth ablations). Any other number of planes
(packed Bayer in the RAW domain) is filtered plane by plane with ``noise_scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..config import WienerConfig
from ..errors import ConfigError

_MEDIAN_OF_CHI2_1 = 0.4549364231195724  # median of a chi-square with 1 degree of freedom
_MAX_NOISE_SAMPLES = 16384  # blocks used for the noise median (a strided subset beyond this)


@dataclass(frozen=True)
class _Group:
    """Planes filtered alike: ``planes`` (a slice of the plane axis), their block side and step, noise scale."""

    planes: slice
    patch: int
    stride: int
    scale: float


def largest_patch(settings: WienerConfig, channels: int) -> int:
    """The largest block side any plane of a ``channels``-plane image uses (tiles overlap by more)."""
    return max(group.patch for group in _groups(channels, settings))


def _groups(channels: int, settings: WienerConfig) -> list[_Group]:
    """Luminance and the colour planes of an opponent RGB image; otherwise every plane alike."""
    if channels == 3 and settings.opponent:
        return [
            _Group(slice(0, 1), settings.patch, settings.stride, settings.noise_scale),
            _Group(
                slice(1, 3), settings.chroma_patch, settings.chroma_stride, settings.noise_scale * settings.chroma_scale
            ),
        ]
    return [_Group(slice(0, channels), settings.patch, settings.stride, settings.noise_scale)]


@lru_cache(maxsize=8)
def _dct_basis(size: int) -> torch.Tensor:
    """The orthonormal 1-D DCT-II matrix (frequency, position), built in float64."""
    i = torch.arange(size, dtype=torch.float64)
    basis = torch.cos(math.pi * (i[None, :] + 0.5) * i[:, None] / size) * math.sqrt(2.0 / size)
    basis[0] /= math.sqrt(2.0)
    return basis.float()


def _block_dct(planes: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """2-D DCT of every size x size block, blocks ``stride`` apart: (M, 1, H, W) -> (M, size*size, rows, cols).

    Frequency index ky * size + kx. Separable (along y, then along x): 2 * size**3 multiplies per block
    instead of size**4, which makes 32x32 blocks cost 8 times less than one conv2d with the 2-D basis.
    """
    basis = _dct_basis(size).to(planes.device)
    along_y = F.conv2d(planes, basis[:, None, :, None], stride=(stride, 1))  # (M, ky, rows, W)
    m, _, rows, width = along_y.shape
    along_x = F.conv2d(along_y.reshape(m * size, 1, rows, width), basis[:, None, None, :], stride=(1, stride))
    return along_x.reshape(m, size * size, rows, along_x.shape[-1])


def _block_idct_sum(coefficients: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """Inverse of :func:`_block_dct`, overlapping blocks summed: (M, size*size, rows, cols) -> (M, 1, H, W).

    The inverse DCT of every block is two matrix products; the overlap-add then splits each block into
    q x q cells of stride x stride pixels (q = ceil(size / stride), the block zero-padded to q * stride)
    and adds each cell's grid shifted into place: faster than a separable conv_transpose2d for the colour
    planes' large blocks (docs/NOTES.md).
    """
    m, _, rows, cols = coefficients.shape
    basis_t = _dct_basis(size).to(coefficients.device).t().contiguous()  # (position, frequency)
    flat = coefficients.reshape(m, size, size * rows * cols)  # (M, ky, kx * blocks)
    along_y = torch.matmul(basis_t, flat).reshape(m, size, size, rows * cols)  # (M, y, kx, blocks)
    blocks = torch.matmul(basis_t, along_y.transpose(1, 2).reshape(m, size, size * rows * cols))  # (M, x, y * blocks)
    q = -(-size // stride)
    blocks = blocks.reshape(m, size, size, rows, cols)
    if q * stride > size:
        blocks = F.pad(blocks.permute(0, 3, 4, 1, 2), (0, q * stride - size, 0, q * stride - size)).permute(
            0, 3, 4, 1, 2
        )
    # (M, x cell, x within, y cell, y within, rows, cols) -> (M, y cell, x cell, rows, y within, cols, x within)
    cells = blocks.reshape(m, q, stride, q, stride, rows, cols).permute(0, 3, 1, 5, 4, 6, 2)
    out = torch.zeros(m, rows + q - 1, stride, cols + q - 1, stride, device=coefficients.device)
    for cell_y in range(q):
        for cell_x in range(q):
            out[:, cell_y : cell_y + rows, :, cell_x : cell_x + cols, :] += cells[:, cell_y, cell_x]
    height, width = (rows - 1) * stride + size, (cols - 1) * stride + size
    return out.reshape(m, 1, (rows + q - 1) * stride, (cols + q - 1) * stride)[..., :height, :width]


# Rows: luminance, red - blue, green - (red + blue) / 2; orthonormal, so its inverse is its transpose.
_OPPONENT = torch.tensor(
    [
        [1 / math.sqrt(3)] * 3,
        [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
        [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
    ]
)


def _to_planes(image: torch.Tensor, channel_dim: int, opponent: bool = True) -> torch.Tensor:
    """RGB to opponent planes along ``channel_dim``; any other channel count passes unchanged."""
    if image.shape[channel_dim] != 3 or not opponent:
        return image
    return torch.tensordot(_OPPONENT.to(image.device, image.dtype), image.movedim(channel_dim, 0), dims=1).movedim(
        0, channel_dim
    )


def _from_planes(planes: torch.Tensor, channel_dim: int, opponent: bool = True) -> torch.Tensor:
    """The inverse of :func:`_to_planes`."""
    if planes.shape[channel_dim] != 3 or not opponent:
        return planes
    return torch.tensordot(_OPPONENT.T.to(planes.device, planes.dtype), planes.movedim(channel_dim, 0), dims=1).movedim(
        0, channel_dim
    )


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
    return _lower_median(residual.square()) / _MEDIAN_OF_CHI2_1


def _lower_median(values: torch.Tensor) -> torch.Tensor:
    """``values.median(dim=-1).values`` (the lower of the two middle values), reordering ``values``.

    On a CPU by numpy's partial sort, in place: the same values, several times faster than torch's
    median on the noise estimate's blocks (docs/NOTES.md).
    """
    if values.device.type != "cpu" or values.dtype not in (torch.float32, torch.float64) or not values.is_contiguous():
        return values.median(dim=-1).values
    array = values.numpy()
    middle = (array.shape[-1] - 1) // 2
    array.partition(middle, axis=-1)
    return torch.from_numpy(array[..., middle].copy())


def estimate_noise(
    noisy: np.ndarray, pilot: np.ndarray, settings: WienerConfig = WienerConfig()
) -> list[torch.Tensor] | None:
    """The noise power of every plane and DCT frequency of one whole image.

    ``noisy`` and ``pilot`` are (H, W, C) float arrays in the value range the refinement will see.
    Returns one tensor per plane group, (planes, block side squared): for RGB, the luminance (1, 256)
    and the two colour planes (2, 1024) with the default blocks; other channel counts one
    (C, patch * patch). The planes are those the refinement works in, not R, G and B.
    Measured on non-overlapping blocks spread evenly over the image (at most about 16 k of them),
    read one band of rows at a time, so memory stays small on 100-megapixel photos. Returns None for
    an image smaller than the largest block (nothing to measure; leave it unrefined). The noise
    scales are not applied here.
    """
    height, width, channels = noisy.shape
    groups = _groups(channels, settings)
    if min(height, width) < max(group.patch for group in groups):
        return None
    spectra = []
    for group in groups:
        size = group.patch
        step = max(size // 2, math.ceil(math.sqrt(height * width / _MAX_NOISE_SAMPLES)))
        starts = list(range(0, height - size + 1, step))
        per_band = max(1, 256 // step)  # about 256 rows of the image at a time
        parts = []
        for first in range(0, len(starts), per_band):
            top, last = starts[first], starts[min(first + per_band, len(starts)) - 1]
            band = torch.from_numpy(
                np.ascontiguousarray(noisy[top : last + size] - pilot[top : last + size], dtype=np.float32)
            )
            planes = _to_planes(band.permute(2, 0, 1), 0, settings.opponent)[group.planes, None]  # (P, 1, rows, W)
            coefficients = _block_dct(planes, size, step)  # (P, F, band blocks, blocks across)
            parts.append(coefficients.flatten(2))
        spectra.append(_noise_power(torch.cat(parts, dim=2)))
    return spectra


def _filter_planes(
    y_planes: torch.Tensor,
    pilot_planes: torch.Tensor,
    group: _Group,
    passes: int,
    noise: torch.Tensor | None,
    offset: tuple[int, int],
) -> torch.Tensor:
    """The Wiener step on (N, P, H, W) planes of one group; ``noise`` (P, F) or None (measure here).

    One plane at a time: a 512-pixel tile's coefficients are then under 32 MiB per tensor, which the
    allocator keeps for the next tile (:mod:`bsgd_cli.engine.allocator`), and fewer bytes move per
    operation (two colour planes together took 1.7 times as long as one after the other; docs/NOTES.md).
    """
    filtered = [
        _filter_plane(y_planes[:, [index]], pilot_planes[:, [index]], group, passes,
                      None if noise is None else noise[index], offset)
        for index in range(y_planes.shape[1])
    ]
    return torch.cat(filtered, dim=1)


@dataclass(frozen=True)
class _Grid:
    """The blocks of one (N, 1, H, W) plane: its padding (blocks laid on whole-image coordinates) and
    the forward and inverse block transforms over it."""

    height: int
    width: int
    size: int
    stride: int
    pad: tuple[int, int, int, int]  # left, right, top, bottom
    pad_mode: str

    @classmethod
    def of(cls, plane: torch.Tensor, group: _Group, offset: tuple[int, int]) -> _Grid:
        h, w = plane.shape[-2:]
        top, bottom = _padding(h, group.patch, group.stride, offset[0])
        left, right = _padding(w, group.patch, group.stride, offset[1])
        # Mirror at the borders; an image smaller than the padding repeats its edge pixels instead.
        pad_mode = "reflect" if max(top, bottom) < h and max(left, right) < w else "replicate"
        return cls(h, w, group.patch, group.stride, (left, right, top, bottom), pad_mode)

    def forward(self, plane: torch.Tensor) -> torch.Tensor:  # (N, 1, H, W) -> (N, F, Lh, Lw)
        return _block_dct(F.pad(plane, self.pad, mode=self.pad_mode), self.size, self.stride)

    def inverse(self, coefficients: torch.Tensor) -> torch.Tensor:  # (N, F, Lh, Lw) -> (N, 1, H, W)
        left, _, top, _ = self.pad
        rows, cols = coefficients.shape[-2:]
        summed = _block_idct_sum(coefficients, self.size, self.stride)[..., top : top + self.height,
                                                                       left : left + self.width]
        if self.size % self.stride == 0:  # the padding puts every pixel in (size / stride)^2 blocks
            return summed / float((self.size // self.stride) ** 2)
        count = F.conv_transpose2d(
            torch.ones(1, 1, rows, cols, device=coefficients.device),
            torch.ones(1, 1, self.size, self.size, device=coefficients.device),
            stride=self.stride,
        )
        return summed / count[..., top : top + self.height, left : left + self.width]

    def inside(self, like: torch.Tensor) -> torch.Tensor:
        """(rows, cols): the share of each block's pixels inside the plane (border blocks reach into the padding)."""
        ones = torch.ones_like(like[:1])
        return F.avg_pool2d(F.pad(ones, self.pad), self.size, self.stride)[0, 0]


def _filter_plane(
    y_plane: torch.Tensor,
    pilot_plane: torch.Tensor,
    group: _Group,
    passes: int,
    noise: torch.Tensor | None,
    offset: tuple[int, int],
) -> torch.Tensor:
    """The Wiener step on one plane, (N, 1, H, W); ``noise`` (F,) or None (measure here)."""
    grid = _Grid.of(y_plane, group, offset)
    y = grid.forward(y_plane)
    p = grid.forward(pilot_plane)
    if noise is None:
        power = _noise_power((y - p).flatten(-2))  # (N, F)
    else:
        power = noise.to(y.device, torch.float32).expand(y_plane.shape[0], grid.size * grid.size)
    sigma2 = (power * group.scale)[..., None, None].clamp_min(1e-12)
    means = y[:, 0].clone()
    for index in range(passes):
        last = index + 1 == passes
        gain = p.square_()  # p is not used again in this pass
        gain = gain.div_(gain + sigma2)
        shrunk = y.mul_(gain) if last else y * gain  # y is needed again only for another pass
        shrunk[:, 0] = means  # block means pass unchanged: no tonal shift, offset-equivariant
        if not last:
            p = grid.forward(grid.inverse(shrunk))
    return grid.inverse(shrunk)


def _sweep_plane(
    y_plane: torch.Tensor, pilot_plane: torch.Tensor, group: _Group, noise: torch.Tensor, factors: list[float]
) -> list[tuple[float, float]]:
    """The one-pass Wiener step on one (1, 1, H, W) plane at the group's scale times each of ``factors``:
    per factor the squared residual ``|y - x|^2`` and the divergence (:func:`_divergence`). The forward
    transforms are taken once for all of them."""
    grid = _Grid.of(y_plane, group, (0, 0))
    y = grid.forward(y_plane)
    p2 = grid.forward(pilot_plane).square_()
    power = noise.to(y.device, torch.float32).expand(1, grid.size * grid.size)
    inside = grid.inside(y_plane)
    results = []
    for factor in factors:
        sigma2 = (power * group.scale * factor)[..., None, None].clamp_min(1e-12)
        gain = p2 / (p2 + sigma2)
        shrunk = y * gain
        shrunk[:, 0] = y[:, 0]
        residual = float((grid.inverse(shrunk).double() - y_plane.double()).square().sum())
        results.append((residual, _divergence(gain, power, inside, grid.size, grid.stride)))
    return results


def _divergence(gain: torch.Tensor, power: torch.Tensor, inside: torch.Tensor, size: int, stride: int) -> float:
    """Sum of gain x noise power over blocks and frequencies, the block mean counted with gain 1 (it
    passes unchanged), each block weighted by the share of its pixels inside the image (``inside``,
    (rows, cols): border blocks reach into the padding), divided by the blocks each pixel lies in: the
    trace of the filter (linear in y for a fixed pilot) against the noise covariance, taken as diagonal
    in each block's DCT."""
    weighted = gain * inside
    weighted[:, 0] = inside
    per_frequency = weighted.flatten(2).sum(dim=-1)  # (N, F)
    return float((per_frequency * power).sum()) / float((size / stride) ** 2)


def sure_sweep(
    noisy: torch.Tensor, pilot: torch.Tensor, settings: WienerConfig, noise: list[torch.Tensor], scales: list[float]
) -> list[list[tuple[float, float]]]:
    """Per plane group (luminance, colour; see :func:`estimate_noise`) and for each of ``scales`` (the
    luminance's noise scale; the colour planes' is ``chroma_scale`` times it), the one-pass Wiener
    step's squared residual ``|noisy - x|^2`` over the group's planes and its divergence (see
    :func:`_divergence`), on one (1, C, H, W) image with its ``noise`` from :func:`estimate_noise`.
    The planes are orthonormal, so the groups' residuals add up to the image's. The risk estimate's
    terms for every candidate at the price of one set of forward transforms
    (:mod:`bsgd_cli.engine.wiener_choice`); its filter is :func:`wiener_refine`'s.
    ``settings.noise_scale`` and ``passes`` are not used."""
    if noisy.shape != pilot.shape or noisy.ndim != 4 or noisy.shape[0] != 1:
        raise ConfigError(
            f"noisy and pilot must both be (1, C, H, W), got {tuple(noisy.shape)} and {tuple(pilot.shape)}"
        )
    groups = _groups(noisy.shape[1], replace(settings, noise_scale=1.0))
    if len(noise) != len(groups):
        raise ConfigError(f"the noise estimate has {len(noise)} plane groups, these settings filter {len(groups)}")
    per_group = []
    with torch.autocast(device_type=noisy.device.type, enabled=False):
        y_planes = _to_planes(noisy.float(), 1, settings.opponent)
        pilot_planes = _to_planes(pilot.float(), 1, settings.opponent)
        for group, group_noise in zip(groups, noise, strict=True):
            totals = [(0.0, 0.0)] * len(scales)
            for index in range(group.planes.start, group.planes.stop):
                plane = _sweep_plane(y_planes[:, [index]], pilot_planes[:, [index]], group,
                                     group_noise[index - group.planes.start], list(scales))
                totals = [(r + pr, d + pd) for (r, d), (pr, pd) in zip(totals, plane, strict=True)]
            per_group.append(totals)
    return per_group


def wiener_refine(
    noisy: torch.Tensor,
    pilot: torch.Tensor,
    settings: WienerConfig = WienerConfig(),
    noise: list[torch.Tensor] | None = None,
    offset: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Refine ``pilot`` against ``noisy``; both (N, C, H, W) in the same value range; returns the same shape.

    ``noise``: the per-group noise power from :func:`estimate_noise` over the whole image (a tile
    then uses the image's estimate, so tiles agree); None measures each of the N images itself.
    ``offset``: (row, column) of these pixels in the whole image, for a tile: it puts the blocks
    where a whole-image pass would, so tiled and untiled results agree.
    Computed in float32 whatever the input dtype (bf16 autocast is not used here). An RGB input is
    filtered in opponent planes and returned in RGB.
    """
    if noisy.shape != pilot.shape or noisy.ndim != 4:
        raise ConfigError(
            f"noisy and pilot must both be (N, C, H, W) of one shape, got {tuple(noisy.shape)} and {tuple(pilot.shape)}"
        )
    groups = _groups(noisy.shape[1], settings)
    if noise is not None and len(noise) != len(groups):
        raise ConfigError(f"the noise estimate has {len(noise)} plane groups, these settings filter {len(groups)}")
    with torch.autocast(device_type=noisy.device.type, enabled=False):
        y_planes = _to_planes(noisy.float(), 1, settings.opponent)
        pilot_planes = _to_planes(pilot.float(), 1, settings.opponent)
        filtered = [
            _filter_planes(
                y_planes[:, g.planes],
                pilot_planes[:, g.planes],
                g,
                settings.passes,
                None if noise is None else noise[i],
                offset,
            )
            for i, g in enumerate(groups)
        ]
        return _from_planes(torch.cat(filtered, dim=1), 1, settings.opponent).to(noisy.dtype)
