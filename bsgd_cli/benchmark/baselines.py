"""Classical baselines for ``bsgd benchmark``: OpenCV non-local means and (when installed) BM3D.

Each baseline maps a float32 HxWx3 RGB image in [0, 1] to a float32 HxWx3 image in [0, 1]. The noise level
is estimated blind, as the benchmark table in the design notes does: ``sigma`` = scikit-image's
``estimate_sigma(noisy, average_sigmas=True, channel_axis=-1)`` (Donoho's wavelet MAD estimator, averaged over
channels), in [0, 1] units, reimplemented in numpy (:func:`estimate_noise_sigma`) because skimage's version needs
PyWavelets. OpenCV and bm3d are imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.util import find_spec

import numpy as np

from bsgd_cli.benchmark.metrics import to_uint8
from bsgd_cli.errors import BsgdError

Denoiser = Callable[[np.ndarray], np.ndarray]


# Daubechies-2 analysis high-pass filter, bit for bit PyWavelets 1.9's ``Wavelet("db2").dec_hi``; the taps are
# summed in PyWavelets' order so that the coefficients (and the exact zeros skimage drops) come out identical.
_DB2_DEC_HI = np.array([-0.48296291314453416, 0.8365163037378079, -0.2241438680420134, -0.12940952255126037])
_MAD_TO_SIGMA = 0.6744897501960817  # scipy.stats.norm.ppf(0.75)


def _db2_highpass(signal: np.ndarray, axis: int) -> np.ndarray:
    """PyWavelets' ``dwt`` detail band along ``axis`` (mode "symmetric"): length (N + 3) // 2."""
    taps = len(_DB2_DEC_HI)
    moved = np.moveaxis(signal, axis, 0)
    padded = np.pad(moved, [(taps - 1, taps - 1)] + [(0, 0)] * (moved.ndim - 1), mode="symmetric")
    count = (moved.shape[0] + taps - 1) // 2
    band = np.zeros((count, *moved.shape[1:]))
    for j in range(taps):  # PyWavelets' order: sum += filter[j] * input[i - j], j = 0 .. 3
        band = band + _DB2_DEC_HI[j] * padded[taps - j : taps - j + 2 * count : 2]
    return np.moveaxis(band, 0, axis)


def estimate_noise_sigma(noisy_float01: np.ndarray) -> float:
    """Blind noise standard deviation of an HxWx3 float image in [0, 1], in the same [0, 1] units.

    Equals ``skimage.restoration.estimate_sigma(image, average_sigmas=True, channel_axis=-1)``: per channel,
    the median absolute finest diagonal db2 wavelet coefficient / 0.6745 (Donoho and Johnstone 1994), then the
    mean over channels. Computed here with numpy, so that PyWavelets (which skimage needs for it) is optional.
    """
    image = np.asarray(noisy_float01, dtype=np.float64)
    diagonal = np.abs(_db2_highpass(_db2_highpass(image, 0), 1)).reshape(-1, image.shape[2])
    sigmas = []
    for channel in diagonal.T:  # skimage ignores exactly-zero coefficients
        nonzero = channel[channel != 0]
        sigmas.append(float(np.median(nonzero)) / _MAD_TO_SIGMA if nonzero.size else 0.0)
    return float(np.mean(sigmas))


def nlm_denoise(noisy_float01: np.ndarray) -> np.ndarray:
    """OpenCV ``fastNlMeansDenoisingColored`` (Buades et al. 2005, in CIELAB) with a blind filter strength.

    Mapping: ``h = hColor = max(1, sigma * 255)``, i.e. the filter strength equals the estimated noise standard
    deviation on the 0-255 scale (OpenCV's rule of thumb), 7x7 patches, 21x21 search window. The input is
    quantised to uint8 (OpenCV's colour NLM needs 8-bit) and the result returned as float32 [0, 1].
    """
    try:
        import cv2
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise BsgdError("the nlm baseline needs OpenCV; install `opencv-python-headless`") from error
    strength = max(1.0, estimate_noise_sigma(noisy_float01) * 255.0)
    bgr = np.ascontiguousarray(to_uint8(noisy_float01)[..., ::-1])
    denoised = cv2.fastNlMeansDenoisingColored(bgr, None, strength, strength, 7, 21)
    return np.ascontiguousarray(denoised[..., ::-1]).astype(np.float32) / 255.0


def bm3d_denoise(noisy_float01: np.ndarray) -> np.ndarray:
    """BM3D for colour images (Dabov et al. 2007; the ``bm3d`` package's ``bm3d_rgb``, opponent colour space).

    ``sigma_psd`` is the blind estimate in [0, 1] units. Raises :class:`BsgdError` when ``bm3d`` is missing.
    """
    try:
        import bm3d
    except ImportError as error:
        raise BsgdError("the bm3d baseline needs the `bm3d` package; install it with `pip install bm3d`") from error
    sigma = max(1e-4, estimate_noise_sigma(noisy_float01))
    denoised = bm3d.bm3d_rgb(np.asarray(noisy_float01, dtype=np.float64), sigma)
    return np.clip(np.asarray(denoised, dtype=np.float32), 0.0, 1.0)


def _importable(module: str, *, really: bool = False) -> bool:
    """Whether ``module`` is installed; ``really`` imports it, to catch broken installs."""
    try:
        if really:
            import_module(module)
            return True
        return find_spec(module) is not None
    except Exception:  # a broken optional package must not break the benchmark
        return False


def available_baselines() -> dict[str, Denoiser]:
    """The baselines whose packages are installed, by name: ``nlm`` (OpenCV + scikit-image), ``bm3d``."""
    baselines: dict[str, Denoiser] = {}
    if _importable("skimage") and _importable("cv2"):
        baselines["nlm"] = nlm_denoise
    if _importable("skimage") and _importable("bm3d", really=True):
        baselines["bm3d"] = bm3d_denoise
    return baselines
