"""The guided sampler's limit cases, seeds, masks, schedule maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bsgd_cli.config import SamplerConfig
from bsgd_cli.diffusion.guidance import blind_spot_guidance
from bsgd_cli.diffusion.sampling import replacement_masks, sample_bsgd
from bsgd_cli.diffusion.schedule import alpha_bar, ddim_times, signal_and_noise
from bsgd_cli.engine.denoise import denoise_tensor, tile_generator

from .conftest import noisy_image


def _gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def test_schedule_endpoints_and_monotone() -> None:
    for kind in ("cosine", "linear"):
        t = torch.linspace(0, 1, 101, dtype=torch.float64)
        abar = alpha_bar(t, kind)
        assert abar.dtype == torch.float64
        assert abar[0] == 1.0
        assert torch.all(abar[1:] <= abar[:-1])
        assert abar[-1] < 1e-3
        a, s = signal_and_noise(t, kind)
        assert torch.allclose(a**2 + s**2, torch.ones_like(a))


def test_ddim_times() -> None:
    flat = [value for pair in ddim_times(0.4, 4) for value in pair]
    assert flat == pytest.approx([0.4, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1, 0.0])
    assert ddim_times(0.4, 4)[-1][1] == 0.0
    assert ddim_times(0.0, 1) == [(0.0, 0.0)]


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None]


def test_w1_one_step_from_zero_equals_blind_spot_branch(tiny) -> None:
    x = _as_tensor(noisy_image(32, 40))
    bsgd = SamplerConfig(mode="bsgd", guidance=1.0, steps=1, t_start=0.0, runs=1)
    with torch.no_grad():
        guided = denoise_tensor(tiny.model, x, bsgd, _gens(1))
        plain = denoise_tensor(tiny.model, x, SamplerConfig(mode="bsn"), _gens(1))
    assert torch.allclose(guided, plain, atol=1e-6)


def test_w0_returns_close_to_input() -> None:
    """With an ideal diffusion branch (x0 = z at t = 0, exact inversion) w = 0 gives back the input."""
    noisy = torch.rand(1, 3, 16, 16) * 2 - 1

    def diffusion_x0(z, t):  # the denoiser of noisy images: the ideal x0 of z_t when data = this image
        return noisy.expand_as(z)

    def blind_spot_x0(z, t):
        return torch.zeros_like(z)

    out = sample_bsgd(
        blind_spot_guidance(diffusion_x0, blind_spot_x0, 0.0), noisy,
        generators=_gens(1), steps=4, t_start=0.3, runs=2, replace_prob=0.2,
    )
    assert torch.allclose(out, noisy, atol=1e-6)


def test_w0_with_real_model_stays_near_input(tiny) -> None:
    x = _as_tensor(noisy_image(32, 32))
    with torch.no_grad():
        out = denoise_tensor(tiny.model, x, SamplerConfig(guidance=0.0, steps=1, t_start=0.0, runs=1), _gens(1))
    assert torch.allclose(out, x, atol=1e-6)  # at t = 0 the diffusion x0 is the input itself


def test_guidance_is_linear_in_w() -> None:
    z = torch.randn(1, 3, 8, 8)
    t = torch.zeros(1)
    a, b = torch.randn_like(z), torch.randn_like(z)
    for w in (0.5, 0.8, 1.5):
        guided = blind_spot_guidance(lambda z, t: a, lambda z, t: b, w)(z, t)
        assert torch.allclose(guided, a + w * (b - a))


@pytest.mark.slow
def test_same_seed_same_output_and_different_seeds_differ(tiny) -> None:
    x = _as_tensor(noisy_image(24, 24))
    cfg = SamplerConfig(guidance=0.8, steps=3, t_start=0.3, runs=2)
    with torch.no_grad():
        first = denoise_tensor(tiny.model, x, cfg, [tile_generator(7, 0, 0)])
        again = denoise_tensor(tiny.model, x, cfg, [tile_generator(7, 0, 0)])
        other = denoise_tensor(tiny.model, x, cfg, [tile_generator(8, 0, 0)])
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.slow
def test_batch_items_are_independent_of_batching(tiny) -> None:
    x = torch.cat([_as_tensor(noisy_image(24, 24, seed=s)) for s in range(3)])
    cfg = SamplerConfig(guidance=0.7, steps=2, t_start=0.3, runs=2)
    with torch.no_grad():
        together = denoise_tensor(tiny.model, x, cfg, [tile_generator(1, 0, i) for i in range(3)])
        alone = torch.cat([denoise_tensor(tiny.model, x[i : i + 1], cfg, [tile_generator(1, 0, i)]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_complementary_masks_partition() -> None:
    masks = replacement_masks((2, 3, 16, 16), 4, 0.1, "complementary", _gens(2), "cpu")
    total = sum(m.int() for m in masks)
    assert torch.all(total == 1)


def test_iid_masks_have_probability_p() -> None:
    masks = replacement_masks((1, 3, 128, 128), 3, 0.16, "iid", _gens(1), "cpu")
    for mask in masks:
        assert abs(mask.float().mean().item() - 0.16) < 0.01


@pytest.mark.parametrize("mode", ["bsn", "bsn-r3", "bsgd", "fast"])
def test_every_mode_runs_and_keeps_range(tiny, mode: str) -> None:
    x = _as_tensor(noisy_image(20, 28))
    with torch.no_grad():
        out = denoise_tensor(tiny.model, x, SamplerConfig(mode=mode, steps=2, runs=2, r3_runs=2), _gens(1))
    assert out.shape == x.shape
    assert float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.parametrize("t", [0.01, 0.05, 0.3, 0.7])
def test_time_for_ratio_inverts_the_schedule(t: float) -> None:
    from bsgd_cli.diffusion.schedule import time_for_ratio

    a, s = signal_and_noise(t)
    assert time_for_ratio(float(s / a)) == pytest.approx(t, abs=1e-9)
    assert time_for_ratio(0.0) == 0.0


def test_the_measured_start_keeps_its_floor_and_cap() -> None:
    from bsgd_cli.engine.start import T_START_CAP, start_time

    fixed = SamplerConfig(t_start=0.05)
    assert start_time(fixed, 0.2, "cosine") == 0.05  # t_start_noise 0: every image at t_start
    scaled = SamplerConfig(t_start=0.05, t_start_noise=2.0)
    assert start_time(scaled, None, "cosine") == 0.05  # nothing measured
    assert start_time(scaled, 1 / 255, "cosine") == 0.05  # mild noise: the floor
    strong = start_time(scaled, 30 / 255, "cosine")
    a, s = signal_and_noise(strong)
    assert 0.05 < strong < T_START_CAP and float(s / a) == pytest.approx(2.0 * 2.0 * 30 / 255, rel=1e-6)
    assert start_time(scaled, 0.9, "cosine") == T_START_CAP


def test_a_start_asked_for_is_used_for_every_image() -> None:
    from bsgd_cli.config import SamplerOverrides

    stored = SamplerConfig(t_start=0.05, t_start_noise=2.0)
    assert SamplerOverrides(t_start=0.1).apply(stored).t_start_noise == 0.0
    assert SamplerOverrides(guidance=0.3).apply(stored).t_start_noise == 2.0


def test_bsgd_starts_later_on_strong_noise_only(default_model) -> None:
    """With the embedded model's student as the noise meter: a photo-like image with strong noise
    starts later than t_start (so its result changes), the same image without noise does not."""
    from dataclasses import replace

    from bsgd_cli.engine.denoise import denoise_array, inference_net, measured_start
    from bsgd_cli.engine.runtime import resolve_runtime
    from bsgd_cli.engine.tiling import plan_tiles

    runtime = resolve_runtime("cpu", "fp32")
    fixed = replace(default_model.sampler, mode="bsgd", refine="none", t_start=0.05, t_start_noise=0.0)
    scaled = replace(fixed, t_start_noise=2.0)
    yy, xx = np.mgrid[0:96, 0:96] / 96.0
    clean = np.stack([0.5 + 0.3 * np.sin(6 * xx), 0.4 + 0.2 * yy, 0.6 - 0.2 * xx * yy], axis=-1).astype(np.float32)
    strong = np.clip(clean + np.random.default_rng(0).normal(0, 0.12, clean.shape), 0, 1).astype(np.float32)
    net = inference_net(default_model, runtime.device, "bsgd")
    plan = plan_tiles(96, 96, 512, 32, net.size_multiple())
    starts = [measured_start(default_model, net, image, plan, scaled, runtime=runtime, seed=0, image_index=0,
                             batch=1).t_start for image in (clean, strong)]
    assert starts[0] == 0.05 and starts[1] > 0.15, starts
    for image, same in ((clean, True), (strong, False)):
        outputs = [denoise_array(default_model, image, sampler=s, runtime=runtime) for s in (fixed, scaled)]
        assert np.array_equal(outputs[0], outputs[1]) == same
