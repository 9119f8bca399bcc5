"""Tiled processing of large images with overlapping, smoothly blended tiles.

``plan_tiles`` lays equal-sized tiles over an image (so they batch) with at least ``overlap``
pixels shared between neighbours; ``apply_tiled`` runs a function over them and blends the results
with weights that ramp up (cubically) across each overlap. Accumulation is in float64 over one band of
tile rows at a time, so memory stays proportional to the image width, and identity in gives the
input back bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..events import Progress, ProgressFn


@dataclass(frozen=True)
class Tile:
    """One tile: ``index`` in row-major order, top-left ``(y, x)``, size ``(height, width)``."""

    index: int
    y: int
    x: int
    height: int
    width: int


@dataclass(frozen=True)
class TilePlan:
    height: int
    width: int
    tile_height: int
    tile_width: int
    overlap: int
    tiles: tuple[Tile, ...]


def _positions(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    count = max(count, 2)
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _snug(length: int, tile: int, overlap: int, multiple: int) -> int:
    """The smallest side (a multiple of ``multiple``, at most ``tile``) needing no more tiles than ``tile``.

    A 1200-pixel side in 512-pixel tiles takes 3 tiles either way; 424-pixel tiles cover it with
    1.06x overlap work instead of 1.28x.
    """
    if length <= tile:
        return length
    count = max(2, math.ceil((length - overlap) / (tile - overlap)))
    side = math.ceil((length + (count - 1) * overlap) / count)
    side = min(tile, math.ceil(side / multiple) * multiple)
    return side if side > 2 * overlap else tile


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> TilePlan:
    """Equal tiles of at most ``tile`` pixels a side (rounded down to ``multiple``) covering H x W.

    Each side is shrunk to the smallest multiple of ``multiple`` that needs no more tiles (less work
    in the overlaps); tiles never exceed the image.
    """
    if height < 1 or width < 1:
        raise ConfigError(f"cannot tile an empty image ({height}x{width})")
    if tile < max(16, multiple):
        raise ConfigError(f"tile {tile} is too small; use at least {max(16, multiple)} pixels")
    tile = max(multiple, tile // multiple * multiple)
    if not 0 <= overlap < tile // 2:
        raise ConfigError(f"overlap {overlap} must be at least 0 and less than half the tile ({tile})")
    tile_h, tile_w = _snug(height, tile, overlap, multiple), _snug(width, tile, overlap, multiple)
    tiles: list[Tile] = []
    for y in _positions(height, tile_h, overlap):
        for x in _positions(width, tile_w, overlap):
            tiles.append(Tile(len(tiles), y, x, tile_h, tile_w))
    return TilePlan(height, width, tile_h, tile_w, overlap, tuple(tiles))


def _ramp(size: int, overlap: int, at_start: bool, at_end: bool, cut: bool = False) -> np.ndarray:
    weights = np.ones(size, dtype=np.float64)
    if overlap > 0:
        if cut:
            # A hard seam in the middle of the overlap: each pixel comes whole from the tile in which
            # it lies at least overlap // 2 pixels from the edge.
            ramp = (np.arange(overlap) >= overlap // 2).astype(np.float64)
        else:
            # Cubed: a tile's outermost pixels, computed without their outer context, weigh little
            # (a linear ramp left visible seams along tile edges; docs/NOTES.md).
            ramp = ((np.arange(overlap, dtype=np.float64) + 0.5) / overlap) ** 3
        if not at_start:
            weights[:overlap] = np.minimum(weights[:overlap], ramp)
        if not at_end:
            weights[size - overlap :] = np.minimum(weights[size - overlap :], ramp[::-1])
    return weights


def blend_weights(tile: Tile, plan: TilePlan, cut: bool = False) -> np.ndarray:
    """(height, width) float64 weights in [0, 1]: 1 inside, ramping down across shared borders.

    cut: 0 or 1 instead of a ramp, the seam in the middle of each overlap. Every pixel still gets
    weight 1 from at least one tile (tests/test_tiling.py).
    """
    wy = _ramp(tile.height, plan.overlap, tile.y == 0, tile.y + tile.height >= plan.height, cut)
    wx = _ramp(tile.width, plan.overlap, tile.x == 0, tile.x + tile.width >= plan.width, cut)
    return wy[:, None] * wx[None, :]


TileFn = Callable[[np.ndarray, Sequence[Tile]], np.ndarray]


def apply_tiled(
    fn: TileFn,
    image: np.ndarray,
    plan: TilePlan,
    *,
    batch: int = 1,
    progress: ProgressFn | None = None,
    out: np.ndarray | None = None,
    cut: bool = False,
) -> np.ndarray:
    """Run ``fn`` over the tiles of ``image`` and blend the results.

    Args:
        fn: maps a (B, th, tw, C) float32 stack of tiles and their :class:`Tile` records to a stack
            of the same shape.
        image: (H, W, C) float32.
        plan: from :func:`plan_tiles` for this image's size.
        batch: tiles per call of ``fn``.
        progress: gets a ``tiles`` event (tiles done, tiles total) after every call of ``fn``.
        out: an (H, W, C) float32 array to write the result into. It may be an array that ``fn``
            reads by tile position (a second input): rows are written only once every tile that
            covers them has been computed, because tiles run in raster order.
        cut: take each pixel from one tile, cutting in the middle of the overlaps, instead of blending.
            For a ``fn`` that is exact at least ``plan.overlap // 2`` pixels from a tile's edge (the
            Wiener step), the result is then the whole-image result.
    Returns:
        (H, W, C) float32 (``out`` when given).
    """
    height, width, channels = image.shape
    if (height, width) != (plan.height, plan.width):
        raise ConfigError(f"tile plan is for {plan.height}x{plan.width}, image is {height}x{width}")
    if out is not None and (out.shape != image.shape or out.dtype != np.float32):
        raise ConfigError(f"out must be float32 of shape {image.shape}, got {out.dtype} {out.shape}")
    output = np.empty((height, width, channels), dtype=np.float32) if out is None else out
    band_height = plan.tile_height
    accumulated = np.zeros((band_height, width, channels), dtype=np.float64)
    weight_sum = np.zeros((band_height, width), dtype=np.float64)
    band_start = 0

    def flush(until: int) -> None:
        nonlocal band_start
        rows = until - band_start
        if rows <= 0:
            return
        output[band_start:until] = (accumulated[:rows] / weight_sum[:rows, :, None]).astype(np.float32)
        accumulated[: band_height - rows] = accumulated[rows:].copy()
        accumulated[band_height - rows :] = 0.0
        weight_sum[: band_height - rows] = weight_sum[rows:].copy()
        weight_sum[band_height - rows :] = 0.0
        band_start = until

    tiles = plan.tiles
    for first in range(0, len(tiles), batch):
        chunk = tiles[first : first + batch]
        stack = np.stack([image[t.y : t.y + t.height, t.x : t.x + t.width] for t in chunk])
        results = fn(stack, chunk)
        if results.shape != stack.shape:
            raise RuntimeError(f"tile function returned shape {results.shape} for input {stack.shape}")
        for tile, result in zip(chunk, results, strict=True):
            flush(tile.y)
            weights = blend_weights(tile, plan, cut)
            rows = slice(tile.y - band_start, tile.y - band_start + tile.height)
            cols = slice(tile.x, tile.x + tile.width)
            accumulated[rows, cols] += weights[:, :, None] * result.astype(np.float64)
            weight_sum[rows, cols] += weights
        if progress is not None:
            progress(Progress("tiles", done=min(first + batch, len(tiles)), total=len(tiles)))
    flush(height)
    return output
