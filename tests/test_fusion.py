"""The bsn mode's fusion with the pixel's own value (bsgd_cli/engine/fusion.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bsgd_cli.engine import fusion


def _fuse_whole(noisy: torch.Tensor, prediction: torch.Tensor, window: int, scale: float) -> torch.Tensor:
    as_hwc = lambda t: t[0].permute(1, 2, 0).numpy()  # noqa: E731
    noise = fusion.noise_power(as_hwc(noisy), as_hwc(prediction), window)
    return fusion.fuse(noisy, prediction, noise, window, scale)


def test_fusion_keeps_the_prediction_where_it_explains_the_image() -> None:
    """Pure noise around a right prediction: mostly the prediction. Detail the prediction missed (a
    bright square): the noisy pixels there come back. A perfect fit changes nothing."""
    generator = torch.Generator().manual_seed(0)
    clean = torch.zeros(1, 3, 64, 64)
    clean[..., 20:40, 20:40] = 0.5
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=generator)
    flat = torch.zeros_like(clean)  # a prediction that erased the square
    fused = _fuse_whole(noisy, flat, 7, 1.5)
    outside = (slice(None), slice(None), slice(48, 64), slice(48, 64))
    assert fused[outside].abs().max() < 0.05 * noisy[outside].abs().max()
    inside = (slice(None), slice(None), slice(24, 36), slice(24, 36))
    assert torch.allclose(fused[inside], noisy[inside], atol=0.02)
    assert torch.equal(_fuse_whole(noisy, noisy, 7, 1.5), noisy)


def test_the_weight_never_depends_on_the_pixels_own_residual() -> None:
    """Changing y at p moves the output at p linearly, by its weight, never through the weight."""
    generator = torch.Generator().manual_seed(1)
    noisy = torch.randn(1, 1, 32, 32, generator=generator)
    prediction = torch.zeros_like(noisy)
    noise = torch.tensor([1.0])
    base = fusion.fuse(noisy, prediction, noise, 5, 1.0)
    bumped = noisy.clone()
    bumped[0, 0, 10, 10] += 1e-2
    after = fusion.fuse(bumped, prediction, noise, 5, 1.0)
    weight = (base[0, 0, 10, 10] / noisy[0, 0, 10, 10]).item()
    assert (after - base)[0, 0, 10, 10].item() == pytest.approx(weight * 1e-2, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("band_rows", [7, 40, 1000])
def test_bands_give_the_whole_image_result(monkeypatch: pytest.MonkeyPatch, band_rows: int) -> None:
    """In-place, band by band (any band height of at least the halo) equals one whole-image pass."""
    rng = np.random.default_rng(2)
    noisy = rng.random((123, 57, 3)).astype(np.float32)
    pilot = (0.5 * noisy + 0.25 + rng.normal(0, 0.02, noisy.shape)).astype(np.float32)
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    whole = _fuse_whole(as_tensor(noisy), as_tensor(pilot), 7, 1.5)[0].permute(1, 2, 0).numpy()
    monkeypatch.setattr(fusion, "_BAND_ROWS", band_rows)
    banded = fusion.fusion_pass(noisy, pilot.copy(), 7, 1.5)
    assert np.array_equal(banded, whole)
