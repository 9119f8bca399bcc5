"""Tests for bsgd_cli.viz.samples: deterministic demo photos with realistic synthetic camera noise."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skimage")

from bsgd_cli.errors import BsgdError
from bsgd_cli.io import read_image
from bsgd_cli.viz.samples import (
    ISO_LEVELS,
    add_camera_noise,
    demosaic_bilinear,
    linear_to_srgb,
    make_clean_and_noisy,
    make_noisy_samples,
    noise_parameters,
    simulate_clean,
    srgb_to_linear,
)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def test_pairs_shape_range_and_determinism() -> None:
    pairs = make_clean_and_noisy(count=3, seed=7, size=96)
    again = make_clean_and_noisy(count=3, seed=7, size=96)
    other = make_clean_and_noisy(count=3, seed=8, size=96)
    for (clean, noisy), (c2, n2), (_, n3) in zip(pairs, again, other, strict=True):
        assert clean.shape == noisy.shape == (96, 96, 3)
        assert clean.dtype == noisy.dtype == np.float32
        assert 0 <= noisy.min() and noisy.max() <= 1
        assert np.array_equal(clean, c2) and np.array_equal(noisy, n2)
        assert not np.array_equal(noisy, n3)
        assert 22 < psnr(clean, noisy) < 45
        assert abs(float((noisy - clean).mean())) < 0.01  # noise, not a colour shift


def test_noise_is_realistic() -> None:
    rng = np.random.default_rng(0)
    levels = np.linspace(0.05, 0.95, 8, dtype=np.float32)
    flat = np.repeat(levels[None, :, None], 64, axis=0).repeat(16, axis=1)  # 8 grey bands
    flat = np.repeat(flat, 3, axis=2)
    clean = simulate_clean(flat)
    noisy = add_camera_noise(flat, iso=3200, rng=rng)
    resid_lin = srgb_to_linear(noisy) - srgb_to_linear(clean)
    band_std = [resid_lin[8:-8, 16 * i + 4 : 16 * i + 12, 1].std() for i in range(8)]
    assert band_std[-1] > 2 * band_std[0]  # shot noise grows with the signal (in linear light)
    r = resid_lin[8:-8, :, 1]
    corr = np.corrcoef(r[:, :-1].ravel(), r[:, 1:].ravel())[0, 1]
    assert corr > 0.2  # demosaicking correlates neighbouring pixels
    std_rgb = resid_lin[8:-8].reshape(-1, 3).std(axis=0)
    assert std_rgb[0] > std_rgb[1] and std_rgb[2] > std_rgb[1]  # white balance amplifies red and blue
    a_lo, b_lo = noise_parameters(min(ISO_LEVELS))
    a_hi, b_hi = noise_parameters(max(ISO_LEVELS))
    assert a_hi > a_lo and b_hi > b_lo


def test_gamma_and_demosaic_helpers() -> None:
    x = np.linspace(0, 1, 101, dtype=np.float32)
    assert np.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)
    flat = np.full((10, 12), 0.3, dtype=np.float32)
    assert np.allclose(demosaic_bilinear(flat), 0.3, atol=1e-6)


def test_make_noisy_samples_writes_files(tmp_path: Path) -> None:
    paths = make_noisy_samples(tmp_path / "a", count=3, seed=1, size=64)
    again = make_noisy_samples(tmp_path / "b", count=3, seed=1, size=64)
    assert [p.suffix for p in paths] == [".jpg", ".jpg", ".png"]
    assert all(p.parent == tmp_path / "a" and p.is_file() for p in paths)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    png = read_image(paths[-1])
    assert png.bit_depth == 16 and png.pixels.shape == (64, 64, 3)
    assert read_image(paths[0]).bit_depth == 8
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]


def test_size_none_keeps_the_original() -> None:
    (clean, noisy), = make_clean_and_noisy(count=1, size=None)
    assert clean.shape == (512, 512, 3) == noisy.shape  # astronaut


def test_missing_scikit_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(BsgdError, match="pip install scikit-image"):
        make_noisy_samples(tmp_path, count=1)
