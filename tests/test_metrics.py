"""Metrics: AP-BSN-style PSNR on uint8, and the two named SSIM conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bsgd_cli.benchmark.metrics import psnr_uint8, ssim_gaussian, ssim_skimage, to_uint8
from bsgd_cli.errors import BsgdError


def _pair(seed: int = 0, shape: tuple[int, int, int] = (48, 40, 3)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    clean = (128 + 90 * np.sin(yy / 5.0)[..., None] * np.cos(xx / 7.0)[..., None] * np.ones(shape)).astype(np.uint8)
    noisy = np.clip(clean / 255.0 + rng.normal(0, 0.05, shape), 0, 1).astype(np.float32)
    return clean, noisy


def test_psnr_matches_a_written_out_computation() -> None:
    clean, noisy = _pair()
    quantised = np.floor(np.clip(noisy.astype(np.float64), 0, 1) * 255 + 0.5)
    mse = np.mean((clean.astype(np.float64) - quantised) ** 2)
    expected = 10 * np.log10(255.0**2 / mse)
    assert psnr_uint8(clean, noisy) == pytest.approx(expected, abs=1e-9)
    assert psnr_uint8(clean, quantised.astype(np.uint8)) == pytest.approx(expected, abs=1e-9)


def test_to_uint8_rounds_half_up_and_clips() -> None:
    values = np.array([-0.2, 0.0, 0.49 / 255, 0.5 / 255, 1.5 / 255, 254.49 / 255, 1.0, 1.7, np.nan])
    assert to_uint8(values).tolist() == [0, 0, 0, 1, 2, 254, 255, 255, 0]


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3))))
def test_uint8_round_trip_through_float32(image: np.ndarray) -> None:
    assert np.array_equal(to_uint8(image.astype(np.float32) / 255.0), image)


def test_psnr_of_identical_images_is_infinite_and_shapes_must_match() -> None:
    clean, _ = _pair()
    assert math.isinf(psnr_uint8(clean, clean))
    with pytest.raises(BsgdError, match="shape"):
        psnr_uint8(clean, clean[:-1])


def test_ssim_of_identical_images_is_one_in_both_conventions() -> None:
    clean, _ = _pair()
    assert ssim_skimage(clean, clean) == pytest.approx(1.0)
    assert ssim_gaussian(clean, clean) == pytest.approx(1.0)


def test_ssim_conventions_are_the_named_skimage_settings() -> None:
    from skimage.metrics import structural_similarity

    clean, noisy = _pair(1)
    noisy_u8 = to_uint8(noisy)
    uniform = structural_similarity(clean, noisy_u8, channel_axis=-1, data_range=255)
    gaussian = structural_similarity(clean, noisy_u8, channel_axis=-1, data_range=255, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert ssim_skimage(clean, noisy) == pytest.approx(uniform)  # float input is quantised first
    assert ssim_gaussian(clean, noisy_u8) == pytest.approx(gaussian)
    assert 0 < uniform < 1 and uniform != pytest.approx(gaussian, abs=1e-6)
