"""Image quality metrics with the conventions of the self-supervised denoising literature.

Conventions (state them in every report):

* **PSNR** is computed on uint8 images, data range 255, averaged per image/block by the caller. A float result
  in [0, 1] is first quantised AP-BSN style: clip to [0, 1], multiply by 255, add 0.5, floor (round half up).
* **SSIM "skimage-uniform"**: :func:`skimage.metrics.structural_similarity` with ``channel_axis=-1``,
  ``data_range=255`` and its defaults (7x7 uniform window, sample covariance), averaged over the channels.
* **SSIM "gaussian"**: the same function with ``gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False`` (Wang et al. 2004's 11x11 Gaussian window), averaged over the channels.

SIDD's official MATLAB scorer and AP-BSN compute SSIM differently again (a 3-D / whole-colour-volume variant);
on SIDD its numbers differ from both conventions here by up to 0.04, so compare SSIM only within a convention.

scikit-image is imported lazily (it is in the ``bench`` extra); PSNR needs numpy alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bsgd_cli.errors import BsgdError

PSNR_CONVENTION = "uint8 (clip, *255, +0.5, floor), data range 255, mean over images"
SSIM_SKIMAGE = "skimage-uniform"
SSIM_GAUSSIAN = "gaussian"


def to_uint8(image_float01: np.ndarray) -> np.ndarray:
    """Quantise a float image in [0, 1] (any shape) to uint8, AP-BSN style.

    ``floor(clip(x, 0, 1) * 255 + 0.5)``, computed in float64; NaN becomes 0. Same shape, dtype uint8.
    """
    values = np.nan_to_num(np.asarray(image_float01, dtype=np.float64), nan=0.0)
    return np.floor(np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return to_uint8(array)
    raise BsgdError(f"metrics expect uint8 or float [0, 1] images, got dtype {array.dtype}; convert the image first")


def _check_pair(reference: np.ndarray, test: np.ndarray) -> None:
    if reference.shape != test.shape:
        raise BsgdError(
            f"metric inputs differ in shape: reference {reference.shape} vs test {test.shape}; "
            "crop or resize them to the same size"
        )


def psnr_uint8(reference_u8: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB between a uint8 reference and a uint8 or float [0, 1] test image (same shape, e.g. HxWx3).

    Float input is quantised with :func:`to_uint8`. ``10 * log10(255**2 / mse)`` with the MSE over all values
    in float64; identical images give ``inf``.
    """
    reference = _as_uint8(reference_u8).astype(np.float64)
    quantised = _as_uint8(test).astype(np.float64)
    _check_pair(reference, quantised)
    mse = float(np.mean((reference - quantised) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))


def _structural_similarity() -> Any:
    try:
        from skimage.metrics import structural_similarity
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise BsgdError(
            "SSIM needs scikit-image, which is not installed; install it with "
            "`pip install 'bsgd-cli[bench]'` (or `pip install scikit-image`)"
        ) from error
    return structural_similarity


def ssim_skimage(ref_u8: np.ndarray, test_u8: np.ndarray) -> float:
    """SSIM, convention "skimage-uniform": 7x7 uniform window, sample covariance, data range 255.

    Inputs HxWx3 (or HxW) uint8, or float [0, 1] which is quantised with :func:`to_uint8`; both at least 7x7.
    Returns the mean SSIM over pixels and channels, in [-1, 1] (1 for identical images).
    """
    reference, test = _as_uint8(ref_u8), _as_uint8(test_u8)
    _check_pair(reference, test)
    structural_similarity = _structural_similarity()
    channel_axis = -1 if reference.ndim == 3 else None
    return float(structural_similarity(reference, test, channel_axis=channel_axis, data_range=255))


def ssim_gaussian(ref_u8: np.ndarray, test_u8: np.ndarray) -> float:
    """SSIM, convention "gaussian": Gaussian window sigma 1.5, population covariance, data range 255.

    This is Wang et al.'s original setting as exposed by scikit-image, per channel and averaged. SIDD / AP-BSN
    style 3-D SSIM differs from it (and from :func:`ssim_skimage`) by up to 0.04. Inputs as in
    :func:`ssim_skimage`; images must be at least 11x11.
    """
    reference, test = _as_uint8(ref_u8), _as_uint8(test_u8)
    _check_pair(reference, test)
    structural_similarity = _structural_similarity()
    channel_axis = -1 if reference.ndim == 3 else None
    return float(
        structural_similarity(
            reference,
            test,
            channel_axis=channel_axis,
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )
