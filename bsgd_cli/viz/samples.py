"""Demo data: scikit-image's bundled colour photos with realistic synthetic camera noise.

The noise follows a camera pipeline rather than adding white Gaussian noise to sRGB values:

1. undo the sRGB gamma (linear light), divide by white-balance gains (camera-native response);
2. sample an RGGB Bayer mosaic;
3. add Poisson-Gaussian noise: shot noise (variance ``a * signal``) plus read noise (std ``b``), with
   ``a`` and ``b`` growing with an ISO-like gain;
4. apply the white-balance gains (red and blue noise gets amplified), bilinear-demosaic (which
   correlates the noise across neighbouring pixels and channels), re-apply the sRGB gamma.

Everything is driven by ``numpy.random.Generator`` seeded from ``seed`` and the image index, so the
output is identical run to run. scikit-image is optional and only needed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import convolve

from ..errors import BsgdError
from ..io.images import write_image

SOURCES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
"""scikit-image images used, in order (all bundled with the package; no download)."""
ISO_LEVELS: tuple[int, ...] = (1600, 6400, 800, 3200)
"""ISO-like noise levels, assigned to the images in turn."""
WB_GAINS = np.array([2.0, 1.0, 1.6], dtype=np.float32)
"""Daylight-like white-balance multipliers (R, G, B) of the simulated camera."""

_K_GREEN = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float32) / 4
_K_RED_BLUE = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 4


def _load_source(name: str) -> np.ndarray:
    try:
        from skimage import data
    except ImportError as exc:
        raise BsgdError("scikit-image is needed for the demo samples: pip install scikit-image") from exc
    img = getattr(data, name)()
    return np.asarray(img[..., :3], dtype=np.uint8)


def _fit(img: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (size, size, 3) in [0, 1]: scale the short side, centre-crop."""
    if size is None:
        return img.astype(np.float32) / 255.0
    h, w = img.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    resized = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.LANCZOS))
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top : top + size, left : left + size].astype(np.float32) / 255.0


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear light [0, 1] (IEC 61966-2-1)."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light [0, 1] -> sRGB-encoded [0, 1]; input is clipped to [0, 1] first."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def noise_parameters(iso: int) -> tuple[float, float]:
    """(shot-noise gain a, read-noise std b) in units of full scale for an ISO-like level.

    Signal-dependent variance is ``a * x`` for linear raw value ``x``; read noise adds ``b**2``.
    """
    gain = iso / 100.0
    a = 1e-4 * gain
    b = float(np.hypot(5e-4, 1e-4 * gain))
    return a, b


def _bayer_masks(h: int, w: int) -> np.ndarray:
    """(3, H, W) float32 masks of the R, G, B sites of an RGGB mosaic."""
    m = np.zeros((3, h, w), dtype=np.float32)
    m[0, 0::2, 0::2] = 1
    m[1, 0::2, 1::2] = 1
    m[1, 1::2, 0::2] = 1
    m[2, 1::2, 1::2] = 1
    return m


def demosaic_bilinear(mosaic: np.ndarray) -> np.ndarray:
    """RGGB (H, W) mosaic -> (H, W, 3) by bilinear interpolation (normalised at the borders)."""
    h, w = mosaic.shape
    masks = _bayer_masks(h, w)
    out = np.empty((h, w, 3), dtype=np.float32)
    for c in range(3):
        k = _K_GREEN if c == 1 else _K_RED_BLUE
        num = convolve(mosaic * masks[c], k, mode="constant")
        den = convolve(masks[c], k, mode="constant")
        out[..., c] = num / den
    return out


def _capture(clean: np.ndarray, iso: int | None, rng: np.random.Generator | None) -> np.ndarray:
    """The simulated camera pipeline; ``iso=None`` runs it without noise."""
    linear = srgb_to_linear(np.clip(clean, 0.0, 1.0)) / WB_GAINS  # what the sensor saw
    h, w = linear.shape[:2]
    masks = _bayer_masks(h, w)
    mosaic = np.einsum("chw,hwc->hw", masks, linear).astype(np.float32)
    if iso is not None and rng is not None:
        a, b = noise_parameters(iso)
        shot = a * rng.poisson(mosaic / a).astype(np.float32)
        mosaic = shot + rng.normal(0.0, b, mosaic.shape).astype(np.float32)
    gains = np.einsum("chw,c->hw", masks, WB_GAINS)
    return linear_to_srgb(demosaic_bilinear((mosaic * gains).astype(np.float32)))


def add_camera_noise(clean: np.ndarray, *, iso: int, rng: np.random.Generator) -> np.ndarray:
    """Simulate a camera capture of ``clean`` (float32 sRGB (H, W, 3) in [0, 1]) at an ISO-like level.

    Returns float32 sRGB (H, W, 3) in [0, 1] with signal-dependent, spatially correlated noise. The
    same pipeline without noise is :func:`simulate_clean`; the two differ only by the noise.
    """
    return _capture(clean, iso, rng)


def simulate_clean(clean: np.ndarray) -> np.ndarray:
    """The noise-free output of the simulated camera (mosaic + bilinear demosaic), float32 (H, W, 3)."""
    return _capture(clean, None, None)


def make_clean_and_noisy(
    *, count: int = 4, seed: int = 0, size: int | None = 384
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(clean, noisy) float32 sRGB pairs, each (size, size, 3) in [0, 1]; no files written.

    ``clean`` is the noise-free output of the same simulated camera (so the pair differs by noise
    only, not by demosaicking blur). Image i uses ``SOURCES[i % len(SOURCES)]`` at
    ``ISO_LEVELS[i % len(ISO_LEVELS)]`` with the random stream ``default_rng([seed, i])``. The noisy image is
    before 8/16-bit quantisation.
    """
    pairs = []
    for i in range(count):
        scene = _fit(_load_source(SOURCES[i % len(SOURCES)]), size)
        rng = np.random.default_rng([seed, i])
        noisy = add_camera_noise(scene, iso=ISO_LEVELS[i % len(ISO_LEVELS)], rng=rng)
        pairs.append((simulate_clean(scene), noisy))
    return pairs


def make_noisy_samples(out_dir: Path, *, count: int = 4, seed: int = 0, size: int | None = 384) -> list[Path]:
    """Write ``count`` noisy demo photos into ``out_dir`` and return their paths.

    Names are ``<source>_iso<level>.jpg`` (JPEG quality 92); the last one (when count >= 2) is a
    16-bit PNG instead. Deterministic for a given (count, seed, size).
    """
    out_dir = Path(out_dir)
    paths: list[Path] = []
    for i, (_, noisy) in enumerate(make_clean_and_noisy(count=count, seed=seed, size=size)):
        stem = f"{SOURCES[i % len(SOURCES)]}_iso{ISO_LEVELS[i % len(ISO_LEVELS)]}"
        if i >= len(SOURCES):
            stem += f"_{i}"
        if count >= 2 and i == count - 1:
            path = out_dir / f"{stem}.png"
            write_image(path, noisy, bit_depth=16)
        else:
            path = out_dir / f"{stem}.jpg"
            write_image(path, noisy, quality=92)
        paths.append(path)
    return paths
