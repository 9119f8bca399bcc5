"""Tiling: identity is exact, tiled and untiled agree, results do not depend on batch or order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bsgd_cli.config import SamplerOverrides, TilingConfig
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.runtime import native_bf16, resolve_runtime
from bsgd_cli.engine.tiling import apply_tiled, blend_weights, kept_regions, plan_tiles
from bsgd_cli.errors import ConfigError

from .conftest import CPU, noisy_image


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 150), width=st.integers(1, 150), tile=st.sampled_from([16, 32, 48, 64]),
    overlap=st.integers(0, 7), batch=st.integers(1, 5),
)
def test_identity_through_tiler_is_exact(height, width, tile, overlap, batch) -> None:
    rng = np.random.default_rng(height * 1000 + width)
    image = rng.random((height, width, 3), dtype=np.float32)
    plan = plan_tiles(height, width, tile, overlap)
    out = apply_tiled(lambda stack, tiles: stack, image, plan, batch=batch)
    assert np.array_equal(out, image)


@settings(max_examples=30, deadline=None)
@given(height=st.integers(1, 300), width=st.integers(1, 300), tile=st.sampled_from([32, 64, 96]),
       overlap=st.integers(0, 15))
def test_plan_covers_image_with_overlap(height, width, tile, overlap) -> None:
    plan = plan_tiles(height, width, tile, overlap, multiple=16)
    covered = np.zeros((height, width), dtype=int)
    for t in plan.tiles:
        assert t.height == plan.tile_height and t.width == plan.tile_width
        covered[t.y : t.y + t.height, t.x : t.x + t.width] += 1
        assert np.all(blend_weights(t, plan) > 0)
    assert covered.min() >= 1
    if height > plan.tile_height:
        ys = sorted({t.y for t in plan.tiles})
        assert all(b - a <= plan.tile_height - overlap for a, b in zip(ys, ys[1:], strict=False))


@settings(max_examples=30, deadline=None)
@given(height=st.integers(1, 300), width=st.integers(1, 300), tile=st.sampled_from([32, 64, 96]),
       overlap=st.integers(0, 15))
def test_cut_seams_take_every_pixel_from_one_tile_far_from_its_edges(height, width, tile, overlap) -> None:
    plan = plan_tiles(height, width, tile, overlap)
    count = np.zeros((height, width), dtype=int)
    kept = kept_regions(plan)
    for t in plan.tiles:
        rows, cols = kept[t.index]
        count[rows, cols] += 1
        # The kept pixels lie in the tile, overlap // 2 from every edge it shares with another tile.
        margin = overlap // 2
        assert t.y <= rows.start and rows.stop <= t.y + t.height and t.x <= cols.start and cols.stop <= t.x + t.width
        if t.y > 0:
            assert rows.start - t.y >= margin
        if t.y + t.height < height:
            assert t.y + t.height - rows.stop >= margin
        if t.x > 0:
            assert cols.start - t.x >= margin
        if t.x + t.width < width:
            assert t.x + t.width - cols.stop >= margin
    assert np.all(count == 1)


def test_cut_seams_are_exact_for_a_function_wrong_only_near_tile_edges() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((203, 157, 2)).astype(np.float32)
    plan = plan_tiles(203, 157, 64, 12)

    def wrong_near_edges(stack: np.ndarray, tiles) -> np.ndarray:
        out = stack * 2.0
        out[:, :6] = out[:, -6:] = out[:, :, :6] = out[:, :, -6:] = -1.0  # within overlap // 2 of an edge
        return out

    expected = image * 2.0
    edges = np.zeros(image.shape[:2], dtype=bool)
    edges[:6], edges[-6:], edges[:, :6], edges[:, -6:] = True, True, True, True
    expected[edges] = -1.0  # the image's own borders have no other tile
    assert np.array_equal(apply_tiled(wrong_near_edges, image, plan, cut=True), expected)
    assert not np.allclose(apply_tiled(wrong_near_edges, image, plan), expected, atol=1e-3)  # a ramp blends


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, 3000), tile=st.sampled_from([64, 128, 512]), overlap=st.sampled_from([0, 8, 15]),
       multiple=st.sampled_from([1, 4, 10]))
def test_snug_tiles_are_no_more_and_no_larger(length, tile, overlap, multiple) -> None:
    plan = plan_tiles(length, 7, tile, overlap, multiple)
    full_tile = max(multiple, tile // multiple * multiple)
    count = 1 if length <= full_tile else max(2, -(-(length - overlap) // (full_tile - overlap)))
    assert len({t.y for t in plan.tiles}) == count  # as many tiles as full-size ones would need
    assert plan.tile_height <= full_tile
    if length > full_tile:
        assert plan.tile_height % multiple == 0
        ys = sorted({t.y for t in plan.tiles})
        assert ys[0] == 0 and ys[-1] + plan.tile_height == length
        assert all(a + plan.tile_height - b >= overlap for a, b in zip(ys, ys[1:], strict=False))
        smaller = plan.tile_height - multiple
        if smaller > 2 * overlap and smaller >= max(16, multiple):  # snug: one step smaller needs more tiles
            assert len({t.y for t in plan_tiles(length, 7, smaller, overlap, multiple).tiles}) > count


def test_snug_tiles_cut_overlap_work() -> None:
    plan = plan_tiles(1200, 1600, 512, 32)
    assert (plan.tile_height, plan.tile_width) == (422, 424)  # 3 x 4 tiles, as with 512, on 1.2x less area


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ConfigError):
        plan_tiles(100, 100, 8, 0)
    with pytest.raises(ConfigError):
        plan_tiles(100, 100, 64, 40)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["bsn", "bsgd"])
def test_tiled_and_untiled_agree_away_from_borders(tiny, mode: str) -> None:
    image = noisy_image(96, 112)
    kwargs = dict(sampler=SamplerOverrides(mode=mode, steps=2, runs=1, t_start=0.0), seed=3, runtime=CPU)
    whole = denoise_array(tiny, image, tiling=TilingConfig(tile=128, overlap=0), **kwargs)
    tiled = denoise_array(tiny, image, tiling=TilingConfig(tile=64, overlap=24), **kwargs)
    # The tiny net's receptive field is a few pixels; away from tile borders the two agree.
    assert np.abs(whole - tiled).max() < 1 / 255
    assert whole.shape == image.shape


@pytest.mark.slow
def test_result_does_not_depend_on_tile_batch(tiny) -> None:
    image = noisy_image(80, 80)
    kwargs = dict(sampler=SamplerOverrides(mode="bsgd", steps=2, runs=2, t_start=0.3), seed=11, runtime=CPU)
    one = denoise_array(tiny, image, tiling=TilingConfig(tile=48, overlap=8, batch=1), **kwargs)
    four = denoise_array(tiny, image, tiling=TilingConfig(tile=48, overlap=8, batch=4), **kwargs)
    assert np.allclose(one, four, atol=1e-5)


def test_strength_blends_with_input(tiny) -> None:
    image = noisy_image(32, 32)
    zero = denoise_array(tiny, image, sampler=SamplerOverrides(mode="bsn", strength=0.0), runtime=CPU)
    assert np.allclose(zero, image)


@pytest.mark.skipif(not native_bf16(torch.device("cpu")), reason="this CPU has no native bf16: auto runs fp32 here")
def test_bf16_and_fp32_agree_within_tolerance(tiny) -> None:
    """bf16 autocast on the CPU stays within 4/255 of fp32 on every pixel (99th percentile within 1/255)."""
    image = noisy_image(64, 64)
    sampler = SamplerOverrides(mode="bsgd", steps=2, runs=1, t_start=0.05)
    full = denoise_array(tiny, image, sampler=sampler, seed=2, runtime=resolve_runtime("cpu", "fp32"))
    half = denoise_array(tiny, image, sampler=sampler, seed=2, runtime=resolve_runtime("cpu", "bf16"))
    difference = np.abs(full - half)
    assert difference.max() > 0  # bf16 really ran (a silently ignored autocast would give 0)
    assert np.percentile(difference, 99) < 0.5 / 255  # measured 0.05/255
    assert difference.max() < 1 / 255  # measured 0.09/255


def test_strength_is_a_linear_blend_of_the_full_result(tiny) -> None:
    image = noisy_image(80, 72)
    kwargs = dict(runtime=CPU, tiling=TilingConfig(tile=48, overlap=8))
    full = denoise_array(tiny, image, sampler=SamplerOverrides(mode="bsn", strength=1.0), **kwargs)
    partial = denoise_array(tiny, image, sampler=SamplerOverrides(mode="bsn", strength=0.4), **kwargs)
    assert np.allclose(partial, 0.4 * full + 0.6 * image, atol=1e-6)
    assert not np.allclose(partial, full, atol=1e-3)
