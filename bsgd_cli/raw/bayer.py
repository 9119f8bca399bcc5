"""The camera's Bayer mosaic as 4 half-size planes (numpy only): packing, levels, augmentation.

Planes come in R, G1, G2, B order (G1 = the green sharing rows with red) whatever the file's 2x2
pattern (RGGB, GRBG, GBRG, BGGR); values are ``(raw - black) / (white - black)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from ..io.raw import BAYER_PATTERNS, BayerData

PLANES = ("R", "G1", "G2", "B")
"""Channel order of the packed planes (G1 is the green sharing rows with red)."""


class NotBayerError(ImageReadError):
    """A RAW file without a 2x2 Bayer colour-filter mosaic (X-Trans, Foveon, linear DNG)."""


def _positions(pattern: str) -> list[tuple[int, int]]:
    """(row, col) in the 2x2 tile of R, G1, G2, B (G1 = the first green in reading order)."""
    pattern = pattern.upper()
    if pattern not in BAYER_PATTERNS:
        raise ValueError(f"unsupported Bayer pattern {pattern!r}; expected one of {', '.join(BAYER_PATTERNS)}")
    greens = [i for i, c in enumerate(pattern) if c == "G"]
    order = [pattern.index("R"), greens[0], greens[1], pattern.index("B")]
    return [(i // 2, i % 2) for i in order]


def pack_bayer(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """(..., H, W) Bayer mosaic -> (..., H/2, W/2, 4) planes in R, G1, G2, B order. H and W must be even."""
    h, w = mosaic.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"the mosaic must have even height and width, got {h}x{w}; crop it first")
    return np.stack([mosaic[..., r::2, c::2] for r, c in _positions(pattern)], axis=-1)


def unpack_bayer(packed: np.ndarray, pattern: str) -> np.ndarray:
    """(..., H/2, W/2, 4) planes in R, G1, G2, B order -> (..., H, W) mosaic; inverse of pack_bayer."""
    if packed.shape[-1] != 4:
        raise ValueError(f"packed Bayer planes need 4 channels in the last axis, got shape {packed.shape}")
    *lead, h2, w2, _ = packed.shape
    out = np.empty((*lead, h2 * 2, w2 * 2), dtype=packed.dtype)
    for k, (r, c) in enumerate(_positions(pattern)):
        out[..., r::2, c::2] = packed[..., k]
    return out


def plane_levels(bayer: BayerData) -> tuple[np.ndarray, np.ndarray]:
    """(black, white - black) per packed plane, float32 arrays of 4 in R, G1, G2, B order."""
    blacks = list(bayer.black_level) if len(bayer.black_level) == 4 else [bayer.black_level[0]] * 4
    black = pack_bayer(np.asarray(blacks, dtype=np.float32).reshape(2, 2), bayer.cfa_pattern)[0, 0]
    span = np.maximum(np.float32(bayer.white_level) - black, np.float32(1.0))
    return black.astype(np.float32), span.astype(np.float32)


def _even(bayer: BayerData) -> np.ndarray:
    h, w = bayer.raw_values.shape
    return bayer.raw_values[: h - h % 2, : w - w % 2]


def normalise_planes(bayer: BayerData) -> np.ndarray:
    """Packed planes (H/2, W/2, 4) of ``bayer``, ``(raw - black) / (white - black)``; only > 1 is clipped."""
    if not bayer.is_bayer:
        raise NotBayerError(_not_bayer_message(bayer.source, bayer.cfa_pattern))
    black, span = plane_levels(bayer)
    packed = pack_bayer(_even(bayer), bayer.cfa_pattern).astype(np.float32)
    return np.minimum((packed - black) / span, np.float32(1.0)).astype(np.float32)


def _not_bayer_message(path: Path, pattern: str) -> str:
    kind = "X-Trans (6x6)" if len(pattern) == 36 else f"{pattern!r}"
    return (
        f"{path}: {kind} colour filter, not a 2x2 Bayer mosaic; the RAW domain handles Bayer sensors only "
        "(use an sRGB model on the developed image for this camera)"
    )


def augment_bayer(patch: np.ndarray, code: int, size: int) -> np.ndarray:
    """A flip of a (size+1, size+1, 4) packed patch that keeps the Bayer geometry -> (size, size, 4).

    Flipping packed planes directly would move each colour's sub-pixel position (R would end up
    right of its green). Instead the patch is unpacked to a mosaic, flipped there, and cropped one
    mosaic pixel so that red is back at the top-left (Liu et al. 2019, "Bayer-preserving
    augmentation"). Bit 0 of ``code`` flips left-right, bit 1 top-bottom (so 4 distinct results;
    the 90-degree rotations are left out because they swap the two greens' roles).
    """
    mosaic = unpack_bayer(patch, "RGGB")
    dy = dx = 0
    if code & 1:
        mosaic, dx = mosaic[:, ::-1], 1
    if code & 2:
        mosaic, dy = mosaic[::-1], 1
    side = 2 * size
    return pack_bayer(mosaic[dy : dy + side, dx : dx + side], "RGGB")
