"""Tiled processing of large images with overlapping, smoothly blended tiles.

``plan_tiles`` lays equal-sized tiles over an image (so they batch) with at least ``overlap``
pixels shared between neighbours; ``apply_tiled`` runs a function over them and blends the results
with weights that ramp up (cubically) across each overlap, or (``cut``) takes each pixel from one tile,
cutting in the middle of the overlaps. Either way one band of tile rows at a time is held, so memory
stays proportional to the image width; blending accumulates in float64, and identity in gives the
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


def _ramp(size: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    weights = np.ones(size, dtype=np.float64)
    if overlap > 0:
        # Cubed: a tile's outermost pixels, computed without their outer context, weigh little
        # (a linear ramp left visible seams along tile edges; docs/NOTES.md).
        ramp = ((np.arange(overlap, dtype=np.float64) + 0.5) / overlap) ** 3
        if not at_start:
            weights[:overlap] = np.minimum(weights[:overlap], ramp)
        if not at_end:
            weights[size - overlap :] = np.minimum(weights[size - overlap :], ramp[::-1])
    return weights


def blend_weights(tile: Tile, plan: TilePlan) -> np.ndarray:
    """(height, width) float64 weights in (0, 1]: 1 inside, ramping down across shared borders."""
    wy = _ramp(tile.height, plan.overlap, tile.y == 0, tile.y + tile.height >= plan.height)
    wx = _ramp(tile.width, plan.overlap, tile.x == 0, tile.x + tile.width >= plan.width)
    return wy[:, None] * wx[None, :]


def _seams(starts: list[int], size: int, length: int) -> dict[int, tuple[int, int]]:
    """Per tile start along one axis, the [first, end) it keeps: neighbours meet in the middle of their overlap."""
    middles = [(start + previous + size) // 2 for previous, start in zip(starts, starts[1:], strict=False)]
    bounds = [0, *middles, length]
    return {start: (bounds[i], bounds[i + 1]) for i, start in enumerate(starts)}


def kept_regions(plan: TilePlan) -> dict[int, tuple[slice, slice]]:
    """Per tile index, the rows and columns (image coordinates) it gives a cut result: every pixel comes
    from exactly one tile, at least ``plan.overlap // 2`` pixels from each edge that tile shares with another."""
    rows = _seams(sorted({t.y for t in plan.tiles}), plan.tile_height, plan.height)
    cols = _seams(sorted({t.x for t in plan.tiles}), plan.tile_width, plan.width)
    return {t.index: (slice(*rows[t.y]), slice(*cols[t.x])) for t in plan.tiles}


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
    band = _CutBand(output, plan) if cut else _BlendBand(output, plan)
    tiles = plan.tiles
    for first in range(0, len(tiles), batch):
        chunk = tiles[first : first + batch]
        stack = np.stack([image[t.y : t.y + t.height, t.x : t.x + t.width] for t in chunk])
        results = fn(stack, chunk)
        if results.shape != stack.shape:
            raise RuntimeError(f"tile function returned shape {results.shape} for input {stack.shape}")
        for tile, result in zip(chunk, results, strict=True):
            band.flush(tile.y)
            band.add(tile, result)
        if progress is not None:
            progress(Progress("tiles", done=min(first + batch, len(tiles)), total=len(tiles)))
    band.flush(height)
    return output


class _BlendBand:
    """The rows not yet written: a band of tile rows whose blended sums (float64) are still growing."""

    def __init__(self, output: np.ndarray, plan: TilePlan) -> None:
        self.output, self.plan, self.start = output, plan, 0
        self.sums = np.zeros((plan.tile_height, *output.shape[1:]), dtype=np.float64)
        self.weights = np.zeros(self.sums.shape[:2], dtype=np.float64)

    def flush(self, until: int) -> None:
        """Write rows [start, until) to the output and move the band down to ``until``."""
        rows = until - self.start
        if rows <= 0:
            return
        self.output[self.start : until] = (self.sums[:rows] / self.weights[:rows, :, None]).astype(np.float32)
        for array in (self.sums, self.weights):
            array[: len(array) - rows] = array[rows:].copy()
            array[len(array) - rows :] = 0.0
        self.start = until

    def add(self, tile: Tile, result: np.ndarray) -> None:
        weights = blend_weights(tile, self.plan)
        rows = slice(tile.y - self.start, tile.y - self.start + tile.height)
        cols = slice(tile.x, tile.x + tile.width)
        self.sums[rows, cols] += weights[:, :, None] * result.astype(np.float64)
        self.weights[rows, cols] += weights


class _CutBand:
    """The rows not yet written, cut instead of blended: each tile's kept region is copied in (float32)."""

    def __init__(self, output: np.ndarray, plan: TilePlan) -> None:
        self.output, self.start, self.kept = output, 0, kept_regions(plan)
        self.rows = np.empty((plan.tile_height, *output.shape[1:]), dtype=np.float32)

    def flush(self, until: int) -> None:
        """Write rows [start, until) to the output and move the band down to ``until``."""
        rows = until - self.start
        if rows <= 0:
            return
        self.output[self.start : until] = self.rows[:rows]
        self.rows[: len(self.rows) - rows] = self.rows[rows:].copy()
        self.start = until

    def add(self, tile: Tile, result: np.ndarray) -> None:
        rows, cols = self.kept[tile.index]
        self.rows[rows.start - self.start : rows.stop - self.start, cols] = result[
            rows.start - tile.y : rows.stop - tile.y, cols.start - tile.x : cols.stop - tile.x
        ]
