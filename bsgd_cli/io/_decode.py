"""Decoding with Pillow (PNG, JPEG, WebP, AVIF, JPEG XL, and TIFF variants tifffile cannot decode).

Pillow reduces 16-bit RGB(A) PNG and TIFF samples to 8 bits. For those the same stream is decoded
twice with byte-selecting raw modes (high bytes, then low bytes) and recombined, which keeps Pillow's
C decoders (PNG unfiltering, LZW, ...) and the full 16-bit precision.
"""

from __future__ import annotations

import io
import re
import struct
import sys
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from .imagedata import check_megapixels

# Formats handed to Pillow; anything else is refused rather than probed by every Pillow plugin.
PILLOW_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "GIF", "BMP", "PPM", "AVIF", "JXL")  # JPEG covers MPO
_OPEN_LOCK = threading.Lock()
_ORIENTATION_TAG = 0x0112
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, TypeError)


@dataclass
class Decoded:
    """Samples as stored in the file, before scaling to [0, 1] and orientation.

    array: (H, W) grey, or (H, W, C) with C = 2 grey+alpha, 3 RGB, 4 RGBA.
    scale: the value that maps to 1.0 for integer samples; None for floating point samples.
    The photo's EXIF, IPTC and XMP are read separately, by exiv2 (:mod:`._meta`).
    """

    array: np.ndarray
    scale: float | None
    channels_in: int
    bit_depth: int
    format: str
    icc_profile: bytes | None = None
    orientation: int | None = None  # as the container says; None: not said (the XMP's is used, else 1)
    premultiplied: bool = False
    warnings: list[str] = field(default_factory=list)


def damaged(path: Path, exc: BaseException) -> ImageReadError:
    """The error for a file whose data cannot be decoded."""
    reason = str(exc).strip() or type(exc).__name__
    return ImageReadError(
        f"{path}: cannot be decoded ({reason}); the file is damaged or incomplete, copy or export it again"
    )


def open_image(path: Path, expected: str | None = None):
    """Open with Pillow (header only). Pillow's own pixel-count guard is lifted while the header is
    read, because callers check the size against their own limit before decoding anything.

    ``expected``: the format the file's signature announced (AVIF, JPEG XL); a file Pillow then
    cannot open is damaged rather than unrecognised. The JPEG XL plugin decodes while opening and
    reports bad data as RuntimeError (or a Rust panic), which become the same one-line error.
    """
    from PIL import Image, UnidentifiedImageError

    with _OPEN_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            Image.init()
            return Image.open(path, formats=[f for f in PILLOW_FORMATS if f in Image.OPEN])
        except UnidentifiedImageError as exc:
            if expected:
                raise damaged(path, EOFError(f"its {expected} data cannot be parsed")) from exc
            raise ImageReadError(
                f"{path}: not a recognised image (the contents are not PNG, JPEG, TIFF, WebP, HEIC, AVIF or JPEG XL); "
                "check that it is an image and not a renamed document"
            ) from exc
        except _DECODE_ERRORS as exc:
            raise damaged(path, exc) from exc
        except Exception as exc:
            if expected:
                raise damaged(path, EOFError(f"the {expected} decoder refused its data")) from exc
            raise
        except BaseException as exc:  # pyo3's PanicException derives from BaseException
            if expected and type(exc).__name__ == "PanicException":
                raise damaged(path, EOFError(f"the {expected} decoder failed on its data")) from exc
            raise
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _load(im, path: Path) -> None:
    from PIL import Image

    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: too large to decode ({exc}); downscale the image first") from exc
    except _DECODE_ERRORS as exc:
        raise damaged(path, exc) from exc


def _tile_rawmode(im) -> str | None:
    tiles = getattr(im, "tile", None) or []
    if not tiles:
        return None
    args = tiles[0].args
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _decode_with_rawmode(path: Path, rawmode: str) -> np.ndarray:
    """Decode the first frame again, unpacking the stream with ``rawmode`` instead of Pillow's choice."""
    im = open_image(path)
    try:
        new_tiles = []
        for t in im.tile:
            args = rawmode if isinstance(t.args, str) else (rawmode, *tuple(t.args)[1:])
            new_tiles.append(t._replace(args=args))
        im.tile = new_tiles
        _load(im, path)
        return np.asarray(im)
    finally:
        im.close()


def _decode_16bit(path: Path, rawmode: str) -> np.ndarray:
    """Full-precision uint16 samples for an 'RGB;16x', 'RGBA;16x' or 'LA;16B' stream."""
    base, _, order = rawmode.partition(";16")
    if base == "LA":  # 4 bytes a pixel: read them as 8-bit RGBA = (grey hi, grey lo, alpha hi, alpha lo)
        b = _decode_with_rawmode(path, "RGBA").astype(np.uint16)
        return np.stack([(b[..., 0] << 8) | b[..., 1], (b[..., 2] << 8) | b[..., 3]], axis=-1)
    if order == "N":
        order = "L" if sys.byteorder == "little" else "B"
    first = _decode_with_rawmode(path, f"{base};16B").astype(np.uint16)  # byte 0 of each sample
    second = _decode_with_rawmode(path, f"{base};16L").astype(np.uint16)  # byte 1 of each sample
    hi, lo = (first, second) if order == "B" else (second, first)
    return (hi << 8) | lo


def _cmyk_to_rgb(im, icc: bytes | None, notes: list[str]):
    """CMYK -> RGB, through the embedded ICC profile when there is a usable one."""
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            out = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            notes.append("converted from CMYK to sRGB with the embedded ICC profile")
            return out
        except Exception:  # a broken profile falls back to the plain conversion below
            pass
    notes.append("converted from CMYK to RGB without colour management; colours may shift")
    return im.convert("RGB")


def _samples(
    im, path: Path, fmt: str, icc: bytes | None, notes: list[str]
) -> tuple[np.ndarray, float | None, int, int, bool]:
    """(array, scale, channels_in, bit_depth, icc_still_valid) for an opened Pillow image."""
    mode = im.mode
    rawmode = _tile_rawmode(im) or ""
    if re.fullmatch(r"(RGB|RGBA);16[BLN]|LA;16B", rawmode) and mode in ("RGB", "RGBA"):
        channels = {"RGB": 3, "RGBA": 4, "LA": 2}[rawmode.split(";")[0]]
        return _decode_16bit(path, rawmode), 65535.0, channels, 16, True
    _load(im, path)
    has_key = "transparency" in im.info
    if mode == "1":
        return np.asarray(im.convert("L")), 255.0, 1, 8, True
    if mode == "L" and not has_key:
        return np.asarray(im), 255.0, 1, 8, True
    if mode in ("L", "LA", "La"):
        return np.asarray(im.convert("LA")), 255.0, 2, 8, True
    if mode in ("P", "PA"):
        alpha = mode == "PA" or has_key or getattr(im.palette, "mode", "") == "RGBA"
        out = im.convert("RGBA" if alpha else "RGB")
        return np.asarray(out), 255.0, 4 if alpha else 3, 8, True
    if mode == "RGB" and not has_key:
        return np.asarray(im), 255.0, 3, 8, True
    if mode in ("RGB", "RGBA", "RGBa", "RGBX"):
        alpha = mode != "RGBX"
        out = im.convert("RGBA" if alpha else "RGB")
        return np.asarray(out), 255.0, 4 if alpha else 3, 8, True
    if mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(im, icc, notes)), 255.0, 3, 8, False
    if mode in ("YCbCr", "HSV"):
        return np.asarray(im.convert("RGB")), 255.0, 3, 8, False
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16), 65535.0, 1, 16, True
    if mode == "I":
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16), 65535.0, 1, 16, True
    if mode == "F":
        return np.asarray(im, dtype=np.float32), None, 1, 32, True
    raise ImageReadError(f"{path}: pixel mode {mode!r} is not supported; convert it to RGB or greyscale first")


def _orientation(im, fmt: str) -> int | None:
    """The EXIF orientation Pillow found (for AVIF: the file's rotation boxes); JPEG XL: 1, as
    libjxl has already turned the pixels by the codestream's orientation."""
    if fmt == "jxl":
        return 1
    try:
        value = im.getexif().get(_ORIENTATION_TAG)
    except Exception:  # unreadable EXIF must never stop an image from loading
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def decode_with_pillow(path: Path, max_megapixels: float, expected: str | None = None) -> Decoded:
    """Decode the first frame of ``path`` with Pillow, checking its size before any pixel is read
    (``expected``: see :func:`open_image`)."""
    im = open_image(path, expected)
    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_megapixels(path, im.size[0], im.size[1], max_megapixels)
            fmt = (im.format or "").lower()
            fmt = "jpeg" if fmt == "mpo" else fmt
            frames = getattr(im, "n_frames", 1)
            if frames > 1 and im.format != "MPO":
                notes.append(f"has {frames} frames; only the first is used")
            icc = im.info.get("icc_profile") or None
            array, scale, channels, depth, icc_valid = _samples(im, path, fmt, icc, notes)
            orientation = _orientation(im, fmt)
        notes.extend(str(w.message) for w in caught)
    finally:
        im.close()
    return Decoded(
        array=array,
        scale=scale,
        channels_in=channels,
        bit_depth=depth,
        format=fmt,
        icc_profile=icc if icc_valid else None,
        orientation=orientation,
        warnings=notes,
    )
