"""Camera RAW decoding with LibRaw (rawpy), and Bayer-mosaic access for RAW-domain work.

``read_raw`` develops a RAW file to sRGB (camera white balance, no auto-brightening, 16-bit).
``read_bayer`` returns the undeveloped colour-filter mosaic normalised by the black and white levels.
Packing the mosaic into planes is :mod:`bsgd_cli.raw.bayer`'s (numpy only).
rawpy is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageReadError
from ._meta import read_metadata
from .imagedata import ImageData, check_input_file, check_megapixels

BAYER_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")
RAW_COLOUR_SPACE = "sRGB (LibRaw, camera white balance)"


@dataclass
class BayerData:
    """An undeveloped RAW mosaic, in sensor orientation (the file's flip is not applied).

    Attributes:
        mosaic: float32 (H, W), ``(raw - black) / (white - black)`` per pixel, clipped to [0, 1].
        raw_values: uint16 (H, W), the stored sensor values of the visible area.
        cfa_pattern: colours of the repeating filter tile in reading order, e.g. "RGGB" or "GRBG";
            36 letters for a 6x6 X-Trans tile.
        black_level: for Bayer files one value per 2x2 tile position, in the order of ``cfa_pattern``;
            otherwise one per LibRaw colour index (R, G, B, G2).
        white_level: the sensor value of full scale.
        is_bayer: True for a 2x2 RGGB-family pattern; False for X-Trans and other layouts.
        source: the file read.
        camera_white_balance: the as-shot multipliers (R, G, B, G2) LibRaw reports.
        rgb_xyz_matrix: LibRaw's camera colour matrix (4x3; the first three rows are used).
        flip: LibRaw's orientation code (0 none, 3 rotate 180, 5 rotate 90 CCW, 6 rotate 90 CW).
    """

    mosaic: np.ndarray
    raw_values: np.ndarray
    cfa_pattern: str
    black_level: tuple[float, ...]
    white_level: int
    is_bayer: bool
    source: Path
    camera_white_balance: tuple[float, ...] = field(default_factory=tuple)
    rgb_xyz_matrix: np.ndarray | None = None
    flip: int = 0


def _libraw_error(path: Path, exc: BaseException) -> ImageReadError:
    import rawpy

    first = exc.args[0] if exc.args else ""
    reason = (first.decode("utf-8", "replace") if isinstance(first, bytes) else str(exc)).strip()
    reason = reason or type(exc).__name__
    if isinstance(exc, rawpy.LibRawFileUnsupportedError):
        return ImageReadError(
            f"{path}: not a RAW format LibRaw can read (unsupported camera or not a RAW file); "
            "convert it to DNG with Adobe DNG Converter, or export a TIFF"
        )
    if isinstance(exc, (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError, MemoryError)):
        return ImageReadError(f"{path}: too large to decode ({reason}); free memory or export a smaller TIFF")
    if isinstance(exc, (rawpy.LibRawIOError, rawpy.LibRawDataError, rawpy.LibRawError, OSError)):
        return ImageReadError(
            f"{path}: cannot be decoded ({reason}); the RAW file is damaged or incomplete, copy it again"
        )
    return ImageReadError(f"{path}: cannot be decoded ({reason}); copy it again or export a TIFF")


def _open(path: Path):
    """Open and unpack with rawpy; the header is read first so callers can check sizes."""
    import rawpy

    raw = rawpy.RawPy()
    try:
        raw.open_file(str(path))
    except Exception as exc:
        raw.close()
        raise _libraw_error(path, exc) from exc
    return raw


def develop(raw: Any, path: Path, mosaic: np.ndarray | None = None) -> np.ndarray:
    """Demosaic an open rawpy file the one way bsgd does: camera white balance, no auto-brightening,
    16-bit, sRGB. ``mosaic`` (the visible area, uint16) first replaces the sensor data. Returns
    float32 (H, W, 3) in [0, 1], upright; LibRaw failures become :class:`ImageReadError`."""
    import rawpy

    try:
        raw.unpack()
        if mosaic is not None:
            visible = raw.raw_image_visible
            if visible.shape != mosaic.shape:
                raise ImageReadError(f"{path}: the mosaic is {mosaic.shape}, the file's is {visible.shape}")
            visible[...] = mosaic
        rgb = raw.postprocess(
            use_camera_wb=True, no_auto_bright=True, output_bps=16, output_color=rawpy.ColorSpace.sRGB
        )
    except ImageReadError:
        raise
    except Exception as exc:
        raise _libraw_error(path, exc) from exc
    return (rgb / np.float32(65535)).astype(np.float32)


def read_raw(path: str | Path, *, max_megapixels: float = 200.0) -> ImageData:
    """Develop a camera RAW file to float32 sRGB (H, W, 3) in [0, 1], upright.

    LibRaw with the camera's white balance, no auto-brightening, 16-bit output, sRGB primaries and
    gamma. ``bit_depth`` is 16, ``format`` "raw", ``is_raw`` True. The size is checked from the
    header before the sensor data is unpacked. The camera's EXIF (with maker notes), IPTC and XMP
    are read by exiv2 (orientation reset to 1: LibRaw turns the pixels). Raises ImageReadError with
    what to do when LibRaw cannot read the file.
    """
    path = Path(path)
    check_input_file(path)
    raw = _open(path)
    try:
        sizes = raw.sizes
        check_megapixels(path, int(sizes.width), int(sizes.height), max_megapixels)
        pixels = develop(raw, path)
    finally:
        raw.close()
    metadata, _, notes = read_metadata(path)
    return ImageData(
        pixels=pixels,
        alpha=None,
        channels_in=3,
        bit_depth=16,
        format="raw",
        icc_profile=None,
        source=path,
        is_raw=True,
        colour_space=RAW_COLOUR_SPACE,
        warnings=notes,
        orientation=1,
        metadata=metadata,
    )


def read_bayer(path: str | Path, *, max_megapixels: float | None = None) -> BayerData:
    """Read the visible sensor mosaic of a RAW file without developing it (see :class:`BayerData`).

    Raises ImageReadError for files without a colour-filter mosaic (e.g. Foveon or linear DNG).
    """
    path = Path(path)
    check_input_file(path)
    raw = _open(path)
    try:
        if max_megapixels is not None:
            check_megapixels(path, int(raw.sizes.width), int(raw.sizes.height), max_megapixels)
        try:
            raw.unpack()
            values = np.array(raw.raw_image_visible, dtype=np.uint16)
            colours = np.array(raw.raw_colors_visible)
            pattern = raw.raw_pattern
            desc = raw.color_desc.decode("ascii", "replace")
            black = [float(b) for b in raw.black_level_per_channel]
            white = int(raw.white_level)
            wb = tuple(float(v) for v in raw.camera_whitebalance)
            matrix = np.array(raw.rgb_xyz_matrix, dtype=np.float32)
            flip = int(raw.sizes.flip)
        except Exception as exc:
            raise _libraw_error(path, exc) from exc
    finally:
        raw.close()
    if pattern is None or values.ndim != 2:
        raise ImageReadError(
            f"{path}: has no colour-filter mosaic (Foveon or linear RAW); use the developed image instead"
        )
    pattern = np.asarray(pattern)
    cfa = "".join(desc[int(i)] for i in pattern.ravel())
    is_bayer = pattern.shape == (2, 2) and cfa in BAYER_PATTERNS
    black_map = np.asarray(black, dtype=np.float32)[colours]
    span = np.maximum(np.float32(white) - black_map, np.float32(1.0))
    mosaic = np.clip((values.astype(np.float32) - black_map) / span, 0.0, 1.0)
    per_position = tuple(black[int(i)] for i in pattern.ravel()) if is_bayer else tuple(black)
    return BayerData(
        mosaic=mosaic.astype(np.float32),
        raw_values=values,
        cfa_pattern=cfa,
        black_level=per_position,
        white_level=white,
        is_bayer=is_bayer,
        source=path,
        camera_white_balance=wb,
        rgb_xyz_matrix=matrix,
        flip=flip,
    )
