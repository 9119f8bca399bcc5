"""The spectral Wiener refinement (bsgd_cli/wiener.py) and its place in denoise_array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from bsgd_cli.checkpoint import load_model
from bsgd_cli.cli import app
from bsgd_cli.config import SamplerConfig, SamplerOverrides, TilingConfig, WienerConfig, from_dict, to_dict
from bsgd_cli.engine.denoise import denoise_array, wiener_pass
from bsgd_cli.engine.wiener import (
    _block_dct,
    _block_idct_sum,
    _dct_basis,
    _padding,
    estimate_noise,
    largest_patch,
    wiener_refine,
)
from bsgd_cli.errors import ConfigError

from .conftest import CPU, noisy_image


def _textured(height: int, width: int, seed: int = 0, colour: bool = True) -> np.ndarray:
    """Fine stripes, an edge and a smooth ramp: detail a smoothing pilot loses.

    colour: the stripes run in opposite phase in R and B (colour detail); else in R, G and B alike.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    stripes = 0.15 * np.sin(xx * 1.3 + rng.uniform(0, 3)) * (yy > height / 2)
    edge = 0.2 * (xx > width / 3)
    base = 0.3 + 0.3 * yy / height
    if not colour:
        return np.stack([base + stripes + edge] * 3, axis=-1).astype(np.float32)
    return np.stack([base + stripes + edge, base + edge, base - stripes], axis=-1).astype(np.float32)


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]


def _dct_filters(size: int) -> torch.Tensor:
    """Reference: the 2-D DCT basis as (size*size, 1, size, size) conv filters, index ky * size + kx."""
    basis = _dct_basis(size)
    return (basis[:, None, :, None] * basis[None, :, None, :]).reshape(size * size, 1, size, size)


def _dct_power(noise: np.ndarray, size: int = 16) -> torch.Tensor:
    """Oracle: mean square of the true noise's DCT coefficients per (channel, frequency)."""
    planes = _tensor(noise.astype(np.float32))[0][:, None]
    return F.conv2d(planes, _dct_filters(size), stride=size).flatten(2).square().mean(-1)


@pytest.mark.parametrize("size, stride", [(8, 2), (16, 4), (32, 8), (16, 5)])
def test_separable_block_dct_equals_the_2d_transform(size: int, stride: int) -> None:
    planes = torch.rand(2, 1, 70, 83, generator=torch.Generator().manual_seed(size))
    reference = F.conv2d(planes, _dct_filters(size), stride=stride)
    assert torch.allclose(_block_dct(planes, size, stride), reference, atol=1e-4)
    # Orthonormal: a block's coefficients keep its energy.
    block = planes[:, :, :size, :size]
    energy = _block_dct(block, size, size).square().sum(dim=1).flatten()
    assert torch.allclose(energy, block.square().sum(dim=(1, 2, 3)), rtol=1e-4)


@pytest.mark.parametrize("size, stride", [(16, 4), (32, 8), (16, 5), (8, 3), (4, 4)])
def test_block_idct_sum_is_the_overlap_added_inverse(size: int, stride: int) -> None:
    planes = torch.rand(2, 1, 61, 77, generator=torch.Generator().manual_seed(stride))
    coefficients = _block_dct(planes, size, stride)
    rows, cols = coefficients.shape[-2:]
    reference = F.conv_transpose2d(coefficients, _dct_filters(size), stride=stride)
    summed = _block_idct_sum(coefficients, size, stride)
    assert summed.shape == reference.shape
    assert torch.allclose(summed, reference, atol=1e-4)
    count = F.conv_transpose2d(torch.ones(1, 1, rows, cols), torch.ones(1, 1, size, size), stride=stride)
    covered = planes[..., : reference.shape[-2], : reference.shape[-1]]
    assert torch.allclose(summed / count, covered, atol=1e-4)  # perfect reconstruction where blocks cover


def test_pilot_equal_to_input_is_the_identity() -> None:
    image = torch.rand(2, 3, 45, 70)
    assert torch.allclose(wiener_refine(image, image.clone()), image, atol=1e-5)


def test_noise_estimate_matches_white_noise_power() -> None:
    rng = np.random.default_rng(1)
    clean = noisy_image(512, 512)  # any image: the pilot is the clean image here
    noise = rng.normal(0, 0.03, clean.shape).astype(np.float32)
    estimate = estimate_noise(clean + noise, clean)  # white noise stays white in the opponent planes
    assert estimate is not None
    luminance, colour = estimate  # 16x16 blocks for luminance, 32x32 for the two colour planes
    assert luminance.shape == (1, 256) and colour.shape == (2, 1024)
    for spectrum, spread in ((luminance, 0.25), (colour, 0.45)):  # about 4 k and 1 k blocks per frequency
        relative = spectrum / 0.03**2
        assert abs(float(relative.mean()) - 1) < 0.03  # unbiased on average
        assert float((relative - 1).abs().max()) < spread


def test_noise_estimate_follows_correlated_noise_spectrum() -> None:
    # Demosaicing-like correlation: blurred white noise has far less power at high frequencies.
    rng = np.random.default_rng(2)
    white = torch.from_numpy(rng.normal(0, 0.05, (1, 3, 520, 520)).astype(np.float32))
    kernel = torch.tensor([0.25, 0.5, 0.25])
    kernel2d = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3).contiguous()
    correlated = F.conv2d(white, kernel2d, groups=3)[0].permute(1, 2, 0).numpy()[:512, :512]
    clean = np.full_like(correlated, 0.5)
    estimate = estimate_noise(clean + correlated, clean)
    assert estimate is not None
    # R, G, B independent with one spectrum: the same in the opponent planes, at either block size.
    # The oracle, on 256 blocks of 32x32, is itself noisy: hence the wider spread there.
    for spectrum, oracle, spread in (
        (estimate[0], _dct_power(correlated)[:1], 0.3),
        (estimate[1], _dct_power(correlated, 32)[1:], 0.6),
    ):
        assert bool((oracle[:, 1] > 5 * oracle[:, -1]).all())  # the test's premise: a strongly coloured spectrum
        relative = spectrum / oracle
        assert abs(float(relative.mean()) - 1) < 0.05
        assert float((relative - 1).abs().max()) < spread


def test_noise_shared_by_r_g_b_is_measured_in_the_luminance_plane_only() -> None:
    # Demosaicing correlates the channels; the extreme case, one noise field in R, G and B alike,
    # is pure luminance noise: the colour planes see none of it.
    rng = np.random.default_rng(7)
    clean = noisy_image(256, 256)
    shared = rng.normal(0, 0.03, clean.shape[:2] + (1,)).astype(np.float32)
    estimate = estimate_noise(clean + shared, clean)
    assert estimate is not None
    assert abs(float(estimate[0].mean()) / (3 * 0.03**2) - 1) < 0.1  # (1,1,1)/sqrt(3): 3x the power
    assert float(estimate[1].max()) < 1e-6 * float(estimate[0].mean()) + 1e-12


def test_chroma_scale_smooths_colour_and_leaves_luminance() -> None:
    rng = np.random.default_rng(8)
    clean = _tensor(_textured(128, 128))
    noisy = clean + torch.from_numpy(rng.normal(0, 0.04, clean.shape).astype(np.float32))
    pilot = F.avg_pool2d(F.pad(noisy, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    plain = wiener_refine(noisy, pilot, WienerConfig(chroma_scale=1.0))
    colour_smooth = wiener_refine(noisy, pilot, WienerConfig(chroma_scale=100.0))
    luminance = lambda image: image.mean(dim=1)  # noqa: E731 - the (1,1,1) plane, up to a factor
    assert torch.allclose(luminance(plain), luminance(colour_smooth), atol=1e-5)
    colour = lambda image: image - image.mean(dim=1, keepdim=True)  # noqa: E731
    # With the colour noise taken as huge, only the block means of the colour planes are left.
    roughness = lambda image: float(colour(image).diff(dim=-1).abs().mean())  # noqa: E731
    assert roughness(colour_smooth) < 0.5 * roughness(plain)


def test_colour_planes_use_their_own_blocks_and_luminance_does_not_see_them() -> None:
    rng = np.random.default_rng(10)
    clean = _tensor(_textured(128, 160))
    noisy = clean + torch.from_numpy(rng.normal(0, 0.04, clean.shape).astype(np.float32))
    pilot = F.avg_pool2d(F.pad(noisy, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    large = wiener_refine(noisy, pilot)  # colour planes in 32x32 blocks every 8 px
    same = wiener_refine(noisy, pilot, WienerConfig(chroma_patch=16, chroma_stride=4))
    luminance = lambda image: image.mean(dim=1)  # noqa: E731
    assert torch.allclose(luminance(large), luminance(same), atol=1e-5)
    assert float((large - same).abs().max()) > 1e-3  # the colour planes did change
    # Each plane group keeps its own noise estimate; a mismatched estimate is refused with a reason.
    estimate = estimate_noise(noisy[0].permute(1, 2, 0).numpy(), pilot[0].permute(1, 2, 0).numpy())
    assert estimate is not None
    # The whole-image estimate (blocks spread over the image) is close to the one measured on all blocks.
    assert float((wiener_refine(noisy, pilot, noise=estimate) - large).abs().max()) < 2 / 255
    with pytest.raises(ConfigError, match="plane groups"):
        wiener_refine(noisy, pilot, WienerConfig(opponent=False), noise=estimate)
    with pytest.raises(ConfigError):
        WienerConfig(chroma_patch=8, chroma_stride=9)


def test_rgb_setting_filters_each_channel_alone() -> None:
    rng = np.random.default_rng(9)
    noisy = torch.from_numpy(rng.random((1, 3, 48, 40)).astype(np.float32))
    pilot = F.avg_pool2d(F.pad(noisy, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    settings = WienerConfig(opponent=False, chroma_scale=7.0)  # the colour factor has no planes to act on
    together = wiener_refine(noisy, pilot, settings)
    apart = torch.cat([wiener_refine(noisy[:, i : i + 1], pilot[:, i : i + 1], settings) for i in range(3)], dim=1)
    assert torch.allclose(together, apart, atol=1e-6)
    assert not torch.allclose(wiener_refine(noisy, pilot), together, atol=1e-3)  # opponent planes differ


@pytest.mark.parametrize(
    "colour, settings, versus_pilot",
    [
        (False, WienerConfig(), 0.7),
        (True, WienerConfig(chroma_scale=1.0, chroma_patch=16, chroma_stride=4), 0.7),
        # The defaults' strong colour prior (6x the noise, 32x32 blocks) keeps less of fine
        # colour-only stripes: still better than both, by less (0.88 of the pilot's error measured).
        (True, WienerConfig(), 0.95),
    ],
    ids=["luminance-detail-defaults", "colour-detail-plain-colour-planes", "colour-detail-defaults"],
)
def test_refinement_beats_both_a_blurred_pilot_and_the_input(
    colour: bool, settings: WienerConfig, versus_pilot: float
) -> None:
    # Like a blind-spot output: smooth, the stripes weakened but not gone, some noise left.
    rng = np.random.default_rng(3)
    clean = _textured(160, 192, colour=colour)
    noisy = clean + rng.normal(0, 0.04, clean.shape).astype(np.float32)
    pilot = F.avg_pool2d(F.pad(_tensor(noisy), (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    refined = wiener_refine(_tensor(noisy), pilot, settings)
    error = lambda image: float((image - _tensor(clean)).square().mean())  # noqa: E731
    assert error(refined) < versus_pilot * error(pilot)
    assert error(refined) < 0.7 * error(_tensor(noisy))


def test_offset_and_scale_equivariant_mean_kept_any_channel_count() -> None:
    rng = np.random.default_rng(4)
    noisy = torch.from_numpy(rng.random((1, 4, 40, 52)).astype(np.float32))
    pilot = F.avg_pool2d(F.pad(noisy, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    once = wiener_refine(noisy, pilot)
    assert once.shape == noisy.shape
    assert torch.allclose(wiener_refine(noisy * 2 - 1, pilot * 2 - 1), once * 2 - 1, atol=1e-4)
    clean = _tensor(_textured(96, 120))
    photo = clean + 0.03 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    refined = wiener_refine(photo, F.avg_pool2d(F.pad(photo, (1, 1, 1, 1), mode="reflect"), 3, stride=1))
    # No tonal shift; 0.3/255 at most from the 32x32 colour blocks mirrored at this small image's borders.
    assert torch.allclose(refined.mean(dim=(2, 3)), photo.mean(dim=(2, 3)), atol=5e-4)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (7, 300)])
def test_tiny_images_are_refined_or_left_alone_without_error(shape: tuple[int, int]) -> None:
    noisy = torch.rand(1, 3, *shape)
    refined = wiener_refine(noisy, noisy * 0.5)
    assert refined.shape == noisy.shape and torch.isfinite(refined).all()
    assert estimate_noise(noisy[0].permute(1, 2, 0).numpy(), noisy[0].permute(1, 2, 0).numpy()) is None


def test_settings_and_config_validation() -> None:
    with pytest.raises(ConfigError):
        WienerConfig(passes=0)
    with pytest.raises(ConfigError):
        WienerConfig(noise_scale=0)
    with pytest.raises(ConfigError):
        WienerConfig(chroma_scale=-1)
    with pytest.raises(ConfigError):
        WienerConfig(patch=8, stride=9)
    with pytest.raises(ConfigError):
        WienerConfig(chroma_patch=128)
    with pytest.raises(ConfigError):
        SamplerConfig(refine="median")  # type: ignore[arg-type]
    sampler = SamplerConfig(mode="bsn", refine="wiener", wiener=WienerConfig(passes=2, noise_scale=2.5))
    assert from_dict(SamplerConfig, to_dict(sampler)) == sampler
    # A file written before the settings were nested has flat wiener_* keys: read as they were.
    flat = {**{k: v for k, v in to_dict(sampler).items() if k != "wiener"}, "wiener_passes": 2, "wiener_noise": 2.5}
    assert from_dict(SamplerConfig, flat) == sampler
    # A file written before the refinement existed has no refine keys: it gets the defaults.
    old = {key: value for key, value in to_dict(sampler).items() if not key.startswith(("refine", "wiener"))}
    assert from_dict(SamplerConfig, old).refine == SamplerConfig().refine


def test_the_wiener_pass_in_cut_tiles_is_the_whole_image_pass() -> None:
    # Odd sides, several Wiener tiles, the result written into the pilot's own array as tiles go.
    image = np.clip(_textured(711, 533, seed=3) + np.random.default_rng(3).normal(0, 0.05, (711, 533, 3)), 0, 1)
    image = image.astype(np.float32)
    pilot = F.avg_pool2d(torch.from_numpy(image).permute(2, 0, 1)[None], 5, 1, 2, count_include_pad=False)
    pilot_array = pilot[0].permute(1, 2, 0).numpy().copy()
    settings = WienerConfig()
    noise = estimate_noise(image, pilot_array, settings)
    whole = wiener_refine(torch.from_numpy(image).permute(2, 0, 1)[None], pilot, settings, noise)
    expected = whole.clamp(0, 1)[0].permute(1, 2, 0).numpy()
    tiled = wiener_pass(image, pilot_array, settings, network_tile=400, device=torch.device("cpu"), strength=1.0)
    assert tiled is pilot_array  # written in place
    assert np.abs(tiled - expected).max() <= 1e-5


@pytest.mark.slow
def test_tiles_agree_with_one_pass_and_refine_none_is_the_network_alone(tiny_model_file: Path) -> None:
    model = load_model(tiny_model_file)
    image = noisy_image(521, 451, seed=5)  # odd sides: tiles start at odd offsets; the Wiener tiles are 384 px
    wiener = SamplerOverrides(mode="bsn", refine="wiener")
    whole = denoise_array(model, image, sampler=wiener, tiling=TilingConfig(tile=1024), runtime=CPU)
    tiled = denoise_array(model, image, sampler=wiener, tiling=TilingConfig(tile=96, overlap=24, batch=3), runtime=CPU)
    # Wiener tiles cut where every block is whole: exact; what is left is the network's own tiles (0.001 measured).
    assert np.abs(tiled - whole).max() <= 0.02 / 255
    plain = denoise_array(model, image, sampler=SamplerOverrides(mode="bsn", refine="none"), runtime=CPU)
    assert np.abs(plain - whole).mean() > 1e-3  # the refinement did something
    smoother = denoise_array(model, image, sampler=SamplerOverrides(mode="bsn", refine="wiener", wiener_noise=30.0),
                             runtime=CPU)
    roughness = lambda a: float(np.abs(np.diff(a, axis=1)).mean())  # noqa: E731
    assert roughness(smoother) < roughness(whole)


def test_cli_wiener_switch(tmp_path: Path, tiny_model_file: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    Image.fromarray((noisy_image(64, 80, 6) * 255 + 0.5).astype(np.uint8)).save(source / "a.png")
    model = load_model(tiny_model_file)
    pixels = np.asarray(Image.open(source / "a.png"), dtype=np.float32) / 255
    for flag, refine in (("--wiener", "wiener"), ("--no-wiener", "none")):
        result = CliRunner().invoke(
            app,
            [
                "denoise",
                str(source),
                "-o",
                str(tmp_path / flag),
                "--model",
                str(tiny_model_file),
                "--mode",
                "bsn",
                "--device",
                "cpu",
                flag,
                "-q",
            ],
        )
        assert result.exit_code == 0, result.output
        written = np.asarray(Image.open(tmp_path / flag / "a.png"), dtype=np.int16)
        sampler = SamplerOverrides(mode="bsn", refine=refine)  # type: ignore[arg-type]
        expected = np.floor(denoise_array(model, pixels, sampler=sampler, runtime=CPU) * 255 + 0.5)
        assert np.abs(written - expected).max() <= 1, flag  # the flag reached the library


def test_largest_block_follows_the_planes_filtered() -> None:
    # The Wiener pass sizes its tiles by this: RGB uses the colour planes' 32x32 blocks, other images not.
    assert largest_patch(WienerConfig(), 3) == 32
    assert largest_patch(WienerConfig(), 4) == 16  # packed Bayer: every plane alike
    assert largest_patch(WienerConfig(opponent=False), 3) == 16


@pytest.mark.parametrize("size, stride", [(16, 4), (32, 8), (8, 2), (24, 6)])
@pytest.mark.parametrize("length, offset", [(5, 0), (37, 3), (100, 0), (129, 17)])
def test_padding_puts_every_pixel_in_the_same_number_of_blocks(size, stride, length, offset) -> None:
    """The inverse divides by (size / stride)^2 instead of counting blocks: the padding must make that exact."""
    before, after = _padding(length, size, stride, offset)
    blocks = (before + length + after - size) // stride + 1
    counts = np.zeros(before + length + after)
    for block in range(blocks):
        counts[block * stride : block * stride + size] += 1
    assert np.all(counts[before : before + length] == size // stride)


def test_the_risk_estimate_tracks_the_true_error_on_gaussian_noise() -> None:
    """With white Gaussian noise of known power and a pilot made without the noisy image, SURE (factor 1)
    is unbiased: over one 256x256 image it lies within 3 % of the true squared error for weak, chosen and
    strong shrinkage, and it ranks them as the true error does."""
    from bsgd_cli.engine.wiener_choice import wiener_sure

    rng = np.random.default_rng(3)
    sigma = 0.05
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float64)
    texture = rng.normal(0, 0.08, (256, 256, 3))  # fine detail the shrinkage can lose
    clean = np.stack([0.5 + 0.3 * np.sin(xx / 9.0), 0.5 + 0.3 * np.cos(yy / 7.0), 0.5 + 0.2 * np.sin((xx + yy) / 11.0)],
                     axis=-1) + texture
    noisy = (clean + rng.normal(0, sigma, clean.shape)).astype(np.float32)
    pilot = (clean + rng.normal(0, 0.02, clean.shape)).astype(np.float32)  # independent of the noisy image's noise
    settings = WienerConfig()
    as_batch = lambda image: torch.from_numpy(image).permute(2, 0, 1)[None]  # noqa: E731
    noise = [torch.full((1, 256), sigma**2), torch.full((2, 1024), sigma**2)]  # white noise: the same power everywhere
    estimated, true = [], []
    for scale in (0.5, 1.0, 4.0):
        tried = WienerConfig(noise_scale=scale)
        with torch.inference_mode():
            out = wiener_refine(as_batch(noisy), as_batch(pilot), tried, noise)[0].permute(1, 2, 0).numpy()
        true.append(float(((out.astype(np.float64) - clean) ** 2).sum()) / (clean.size * sigma**2))
        estimated.append(wiener_sure(noisy, pilot, tried, noise, factor=1.0))
    assert settings.passes == 1
    for got, want in zip(estimated, true, strict=True):
        assert abs(got - want) < 0.03 * want, (estimated, true)
    assert np.argsort(estimated).tolist() == np.argsort(true).tolist()


def test_the_risk_sweep_filters_as_the_wiener_step_does() -> None:
    """The sweep takes the forward transforms once for every candidate scale: its residual at each
    scale is the one the Wiener step itself leaves, on an odd-sized image (border blocks) with the
    measured noise of real-looking colour noise."""
    from bsgd_cli.engine.wiener import sure_sweep

    rng = np.random.default_rng(5)
    clean = rng.uniform(0.2, 0.8, (1, 3, 1, 1)) + 0.1 * np.sin(np.arange(75) / 5.0)[None, None, :, None]
    noisy = torch.from_numpy((clean + rng.normal(0, 0.05, (1, 3, 75, 91))).astype(np.float32))
    pilot = torch.from_numpy(np.broadcast_to(clean, (1, 3, 75, 91)).astype(np.float32))
    settings = WienerConfig()
    noise = estimate_noise(noisy[0].permute(1, 2, 0).numpy(), pilot[0].permute(1, 2, 0).numpy(), settings)
    scales = [2.0, 5.0, 24.0]
    luminance, colour = sure_sweep(noisy, pilot, settings, noise, scales)
    swept = [(r1 + r2, d1 + d2) for (r1, d1), (r2, d2) in zip(luminance, colour, strict=True)]
    for scale, (residual, divergence) in zip(scales, swept, strict=True):
        out = wiener_refine(noisy, pilot, WienerConfig(noise_scale=scale), noise)
        assert residual == pytest.approx(float(((out.double() - noisy.double()) ** 2).sum()), rel=1e-5)
        assert divergence > 0
    assert [d for _r, d in swept] == sorted((d for _r, d in swept), reverse=True)  # stronger: fewer kept


def test_the_risk_estimate_needs_one_pass() -> None:
    from bsgd_cli.engine.wiener_choice import wiener_sure

    image = np.zeros((64, 64, 3), np.float32)
    with pytest.raises(ConfigError, match="one-pass"):
        wiener_sure(image, image, WienerConfig(passes=2), [torch.ones(1, 256), torch.ones(2, 1024)])


def test_the_strength_choice_uses_the_models_own_calibration_factor(tiny) -> None:
    """The risk estimate's factor is the one stored with the model's Wiener settings (a model stored
    without one keeps the factor calibrated for the first students), and it changes the estimate."""
    from dataclasses import replace

    from bsgd_cli.engine.wiener_choice import SURE_NOISE_FACTOR, choose_noise_scale

    rng = np.random.default_rng(3)
    images = [np.clip(0.5 + 0.2 * np.sin(np.arange(96) / 7.0)[None, :, None]
                      + rng.normal(0, 0.08, (96, 96, 3)), 0, 1).astype(np.float32) for _ in range(2)]
    assert tiny.sampler.wiener.sure_factor == SURE_NOISE_FACTOR == 8.0
    # first-release's file predates the field (its sampler JSON has no sure_factor): it loads with 8
    assert load_model("first-release").sampler.wiener.sure_factor == SURE_NOISE_FACTOR
    stored = replace(tiny, sampler=replace(tiny.sampler, wiener=replace(tiny.sampler.wiener, sure_factor=2.0)))
    own = choose_noise_scale(stored, images)
    asked = choose_noise_scale(tiny, images, factor=2.0)
    assert own.factor == 2.0 and own.risks == asked.risks and own.noise_scale == asked.noise_scale
    assert choose_noise_scale(tiny, images).risks != own.risks
    with pytest.raises(ConfigError):
        WienerConfig(sure_factor=0)


def test_a_mode_uses_its_own_stored_noise_scale_and_a_scale_asked_for_replaces_it() -> None:
    settings = WienerConfig(noise_scale=3.0, mode_noise_scale={"bsn": 8, "bsgd": 4.0})
    assert settings.for_mode("bsn").noise_scale == 8.0 and settings.for_mode("bsgd").noise_scale == 4.0
    assert settings.for_mode("fast").noise_scale == 3.0  # a mode not named uses the shared scale
    assert settings.for_mode("bsn").mode_noise_scale == {}  # resolved: nothing left to apply twice
    assert settings.with_noise_scale(5.0).for_mode("bsn").noise_scale == 5.0
    assert hash(settings) == hash(WienerConfig(noise_scale=3.0))  # still usable as a key; the map is not hashed
    sampler = SamplerConfig(mode="bsgd", wiener=settings)
    assert from_dict(SamplerConfig, to_dict(sampler)) == sampler  # stored in the model file and read back
    assert SamplerOverrides(mode="bsn").apply(sampler).wiener.for_mode("bsn").noise_scale == 8.0
    asked = SamplerOverrides(mode="bsn", wiener_noise=2.0).apply(sampler).wiener  # --wiener-noise 2
    assert asked.for_mode("bsn").noise_scale == 2.0 and asked.for_mode("bsgd").noise_scale == 2.0
    with pytest.raises(ConfigError, match="unknown mode 'median'"):
        WienerConfig(mode_noise_scale={"median": 4.0})
    with pytest.raises(ConfigError):
        WienerConfig(mode_noise_scale={"bsn": 0.0})
    with pytest.raises(ConfigError):
        WienerConfig(mode_noise_scale=[("bsn", 4.0)])  # type: ignore[arg-type]


def test_the_engine_runs_a_modes_own_wiener_scale(tiny) -> None:
    """A model storing bsn's own scale gives bsn exactly what the shared scale set to it gives, and other
    modes what the shared scale gives."""
    from dataclasses import replace

    image = noisy_image(72, 88, seed=11)
    own = replace(tiny, sampler=replace(tiny.sampler, refine="wiener",
                                        wiener=WienerConfig(noise_scale=3.0, mode_noise_scale={"bsn": 12.0})))
    shared = lambda scale: replace(tiny, sampler=replace(own.sampler, wiener=WienerConfig(noise_scale=scale)))  # noqa: E731
    for mode, scale in (("bsn", 12.0), ("fast", 3.0)):
        overrides = SamplerOverrides(mode=mode)  # type: ignore[arg-type]
        got = denoise_array(own, image, sampler=overrides, runtime=CPU)
        assert np.array_equal(got, denoise_array(shared(scale), image, sampler=overrides, runtime=CPU)), mode
    apart = denoise_array(shared(3.0), image, sampler=SamplerOverrides(mode="bsn"), runtime=CPU)
    assert np.abs(apart - denoise_array(own, image, sampler=SamplerOverrides(mode="bsn"), runtime=CPU)).max() > 1e-3


def test_a_stored_mode_scale_is_saved_and_listed(tiny, tmp_path: Path) -> None:
    from dataclasses import replace

    from bsgd_cli.catalogue import describe
    from bsgd_cli.checkpoint import save_model

    sampler = replace(tiny.sampler, refine="wiener", wiener=WienerConfig(noise_scale=3.0, mode_noise_scale={"bsgd": 4}))
    path = tmp_path / "own-scales.safetensors"
    save_model(path, tiny.model, sampler=sampler, info={})
    assert load_model(path).sampler.wiener.for_mode("bsgd").noise_scale == 4.0
    assert "wiener n=3.0 (bsgd 4) chroma" in describe(path)["sampler"]  # bsgd models
    from bsgd_cli.benchmark.evaluate import build_methods

    _methods, environment = build_methods(["bsgd", "fast"], model=path, runtime=CPU)  # results.json's record
    recorded = {mode: record["wiener"]["noise_scale"] for mode, record in environment["sampler"].items()}
    assert recorded == {"bsgd": 4.0, "fast": 3.0}
