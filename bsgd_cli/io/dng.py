"""Writing Bayer mosaics as DNG files (uncompressed 16-bit CFA in IFD0) that LibRaw and Adobe read.

Used to save denoised RAW-domain results. Camera tags (make, model, colour matrices, white balance,
baseline exposure, crop) can be copied from the original file with ``template``.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from ._atomic import atomic_write

_CFA_CODES = {"R": 0, "G": 1, "B": 2}
# XYZ (D65) -> linear sRGB: the default "camera" when no matrix or template is given.
XYZ_TO_SRGB = np.array(
    [[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560], [0.0556434, -0.2040259, 1.0572252]]
)
# Tags copied from a template's IFD0 when present (colour calibration and camera identity).
TEMPLATE_TAGS = (
    271, 272, 274, 50708, 50721, 50722, 50723, 50724, 50727, 50728, 50729, 50730, 50731, 50732,
    50734, 50778, 50779, 50936, 50964, 50965, 50940, 50941,
)
_CROP_TAGS = (50719, 50720)  # DefaultCropOrigin, DefaultCropSize: copied only if they fit


def _srational(values: Sequence[float]) -> tuple[int, ...]:
    out: list[int] = []
    for v in values:
        f = Fraction(float(v)).limit_denominator(10000)
        out += [f.numerator, f.denominator]
    return tuple(out)


def _crop_numbers(value) -> tuple[float, ...]:
    flat = tuple(float(v) for v in np.ravel(value))
    return flat if len(flat) == 2 else (flat[0] / max(flat[1], 1.0), flat[2] / max(flat[3], 1.0))


def _template_tags(template: Path, height: int, width: int) -> list[tuple]:
    """Copy TEMPLATE_TAGS (and the default crop, when it fits) from the first IFD of a RAW file."""
    import tifffile

    tags: list[tuple] = []
    with tifffile.TiffFile(template) as tif:
        page = tif.pages.first
        wanted = list(TEMPLATE_TAGS)
        origin, size = page.tags.get(_CROP_TAGS[0]), page.tags.get(_CROP_TAGS[1])
        if origin is not None and size is not None:
            (x0, y0), (cw, ch) = _crop_numbers(origin.value), _crop_numbers(size.value)
            if x0 + cw <= width and y0 + ch <= height:
                wanted += _CROP_TAGS
        for code in wanted:
            tag = page.tags.get(code)
            if tag is None:
                continue
            value, dtype = tag.value, int(tag.dtype)
            if isinstance(value, str):
                count = 0
            elif isinstance(value, (bytes, tuple, list)):
                count = len(value) // 2 if dtype in (5, 10) else len(value)
            else:
                value, count = int(value), 1
            tags.append((code, dtype, count, value, True))
    return tags


def write_dng(
    path: str | Path,
    mosaic_uint16: np.ndarray,
    *,
    cfa_pattern: str,
    black_level: float | Sequence[float],
    white_level: int,
    color_matrix: np.ndarray | None = None,
    template: Path | None = None,
    as_shot_neutral: Sequence[float] | None = None,
) -> None:
    """Write an (H, W) uint16 Bayer mosaic as a DNG, atomically.

    cfa_pattern: "RGGB", "GRBG", "GBRG" or "BGGR". black_level: one value, or four per 2x2 tile
    position in the pattern's order. white_level: sensor full scale. color_matrix: DNG ColorMatrix1,
    3x3 XYZ(D65) -> camera; defaults to the template's matrices, else to XYZ -> linear sRGB (so the
    mosaic is treated as sRGB-primaries data). template: the original RAW file, whose camera tags
    (make, model, matrices, as-shot white balance, baseline exposure, crop) are copied.
    as_shot_neutral: the camera's (R, G, B) neutral, replacing the template's (default (1, 1, 1)).
    Raises ValueError for bad arguments and ImageWriteError when the file cannot be written.
    """
    import tifffile

    path = Path(path)
    mosaic = np.asarray(mosaic_uint16)
    if mosaic.ndim != 2 or mosaic.dtype != np.uint16:
        raise ValueError(f"the mosaic must be a 2-D uint16 array, got {mosaic.dtype} {mosaic.shape}")
    pattern = cfa_pattern.upper()
    if len(pattern) != 4 or sorted(pattern) != ["B", "G", "G", "R"]:
        raise ValueError(f"unsupported CFA pattern {cfa_pattern!r}; expected RGGB, GRBG, GBRG or BGGR")
    blacks = [float(b) for b in np.ravel(black_level)]
    if len(blacks) not in (1, 4):
        raise ValueError(f"black_level needs 1 or 4 values, got {len(blacks)}")
    h, w = mosaic.shape
    tags: list[tuple] = [
        (33421, 3, 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, 1, 4, bytes(_CFA_CODES[c] for c in pattern), True),  # CFAPattern
        (50706, 1, 4, b"\x01\x04\x00\x00", True),  # DNGVersion 1.4
        (50707, 1, 4, b"\x01\x01\x00\x00", True),  # DNGBackwardVersion 1.1
        (50710, 1, 3, b"\x00\x01\x02", True),  # CFAPlaneColor
        (50711, 3, 1, 1, True),  # CFALayout: rectangular
        (50717, 4, 1, int(white_level), True),  # WhiteLevel
    ]
    if len(blacks) == 4 and len(set(blacks)) > 1:
        tags.append((50713, 3, 2, (2, 2), True))  # BlackLevelRepeatDim
        tags.append((50714, 5, 4, _srational(blacks), True))
    else:
        tags.append((50714, 5, 1, _srational(blacks[:1]), True))
    copied = _template_tags(Path(template), h, w) if template is not None else []
    have = {t[0] for t in copied}
    if color_matrix is not None:
        copied = [t for t in copied if t[0] not in (50721, 50722, 50778, 50779, 50964, 50965)]
        matrix = np.asarray(color_matrix, dtype=np.float64).reshape(3, 3)
        copied += [(50721, 10, 9, _srational(matrix.ravel().tolist()), True), (50778, 3, 1, 21, True)]
    elif 50721 not in have:
        copied += [(50721, 10, 9, _srational(XYZ_TO_SRGB.ravel().tolist()), True), (50778, 3, 1, 21, True)]
    have = {t[0] for t in copied}
    if 50708 not in have:
        copied.append((50708, 2, 0, "bsgd", True))  # UniqueCameraModel (required)
    if as_shot_neutral is not None:
        copied = [t for t in copied if t[0] not in (50728, 50729)]
        copied.append((50728, 5, 3, _srational(list(as_shot_neutral)[:3]), True))
    elif 50728 not in have:
        copied.append((50728, 5, 3, (1, 1, 1, 1, 1, 1), True))  # AsShotNeutral
    tags += copied

    def encode(tmp: Path) -> None:
        tifffile.imwrite(
            tmp,
            mosaic,
            byteorder="<",
            photometric=32803,  # CFA
            subfiletype=0,
            software="bsgd",
            metadata=None,
            extratags=sorted(tags, key=lambda t: t[0]),
        )

    atomic_write(path, encode)
