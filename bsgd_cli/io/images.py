"""Reading and writing display-referred (sRGB-like) images: PNG, JPEG, TIFF, WebP, HEIC/HEIF, AVIF, JPEG XL.

Pixels travel as float32 RGB in [0, 1], shape (H, W, 3), upright. Camera RAW files are passed to
:mod:`bsgd_cli.io.raw`. EXIF, IPTC and XMP are read and written by exiv2 (:mod:`._meta`); HEIC, AVIF
and JPEG XL need optional plugins (:mod:`._modern`). Nothing here prints; decode notes come back in
``ImageData.warnings``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from ..errors import ImageReadError, ImageWriteError
from ._atomic import atomic_write
from ._decode import Decoded, decode_with_pillow
from ._meta import Metadata, apply_orientation, read_metadata, write_metadata
from ._modern import (
    decode_heif,
    encode_heif,
    encode_with_pillow,
    heif_depth,
    missing_plugin,
    plugin_available,
    quantise_heif,
    sniff,
)
from ._png import encode_png
from ._quantise import clean_unit, quantise_rows
from ._tiff import decode_tiff, encode_tiff
from .imagedata import (
    RAW_EXTENSIONS,
    SRGB_EXTENSIONS,
    ImageData,
    cannot_open,
    check_input_file,
    is_image_path,
    is_raw_path,
)
from .paths import find_images
from .raw import read_raw

__all__ = [
    "RAW_EXTENSIONS",
    "SRGB_EXTENSIONS",
    "ImageData",
    "find_images",
    "is_image_path",
    "is_raw_path",
    "read_image",
    "write_image",
]

_WRITE_FORMATS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".tif": "tiff", ".tiff": "tiff", ".webp": "webp",
    ".heic": "heif", ".heif": "heif", ".hif": "heif", ".avif": "avif", ".jxl": "jxl",
}
_EXTENSION_FORMATS = {".heic": "heif", ".heif": "heif", ".hif": "heif", ".avif": "avif", ".jxl": "jxl"}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _icc_description(icc: bytes) -> str:
    try:
        desc = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.profile_description
        return f"embedded ICC profile ({desc.strip()})" if desc and desc.strip() else "embedded ICC profile"
    except Exception:  # an unreadable profile is still carried over as bytes
        return "embedded ICC profile"


def _finish(dec: Decoded, path: Path, metadata: Metadata | None, tagged_orientation: int | None) -> ImageData:
    """Scale to float32 [0, 1], sanitise floats, split alpha, expand grey, apply orientation."""
    notes = list(dec.warnings)
    orientation = dec.orientation if dec.orientation is not None else (tagged_orientation or 1)
    arr = dec.array
    if dec.scale is not None:  # one float32 array, scaled in place (a 50 MP photo: 600 MB, not three)
        x = arr.astype(np.float32)
        if dec.scale != 1.0:
            np.divide(x, np.float32(dec.scale), out=x)
    else:
        x = np.array(arr, dtype=np.float32)
        bad = ~np.isfinite(x)
        if bad.any():
            notes.append(f"{int(bad.sum())} NaN/Inf sample(s) replaced (NaN and -Inf by 0, +Inf by 1)")
            x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)
        lo, hi = float(x.min(initial=0.0)), float(x.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            notes.append(f"values outside [0, 1] (from {lo:.4g} to {hi:.4g}) were clipped")
    if x.ndim == 2:
        x = x[:, :, None]
    n = x.shape[2]
    colour = x[..., :1] if n in (1, 2) else x[..., :3]
    alpha = x[..., n - 1] if n in (2, 4) else None
    if dec.premultiplied and alpha is not None:
        colour = np.divide(colour, alpha[..., None], out=np.zeros_like(colour), where=alpha[..., None] > 0)
    colour = np.clip(colour, 0.0, 1.0, out=colour)  # x is this function's own array
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    colour = apply_orientation(np.ascontiguousarray(colour, dtype=np.float32), orientation)
    if alpha is not None:
        alpha = apply_orientation(np.clip(alpha, 0.0, 1.0).astype(np.float32), orientation)
    return ImageData(
        pixels=colour,
        alpha=alpha,
        channels_in=dec.channels_in,
        bit_depth=dec.bit_depth,
        format=dec.format,
        icc_profile=dec.icc_profile,
        source=path,
        is_raw=False,
        colour_space=_icc_description(dec.icc_profile) if dec.icc_profile else "sRGB",
        warnings=notes,
        orientation=orientation,
        metadata=metadata,
    )


def read_image(path: str | Path, *, max_megapixels: float = 200.0) -> ImageData:
    """Decode an image file into float32 RGB [0, 1] pixels, shape (H, W, 3), upright.

    PNG (1/8/16-bit, grey, palette, alpha), JPEG (incl. CMYK), TIFF (8/16-bit, float; first page),
    WebP, HEIC/HEIF (8/10/12-bit), AVIF (8-bit), JPEG XL, and camera RAW by extension. The size is
    checked against ``max_megapixels`` from the header before any pixel is decoded (JPEG XL: after).
    EXIF, IPTC and XMP come in ``metadata`` (read by exiv2). Raises ImageReadError for missing, empty,
    truncated, unrecognised, too large or unsupported files, and for a format whose plugin is not
    installed; the message names the file and says what to do.
    """
    path = Path(path)
    check_input_file(path)
    if is_raw_path(path):
        return read_raw(path, max_megapixels=max_megapixels)
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise cannot_open(path, exc) from exc
    dec = _decode(path, head, max_megapixels)
    metadata, orientation, notes = read_metadata(path)
    dec.warnings.extend(notes)
    return _finish(dec, path, metadata, orientation)


def _decode(path: Path, head: bytes, max_megapixels: float) -> Decoded:
    if head[:4] in _TIFF_MAGIC:
        return decode_tiff(path, max_megapixels)
    modern = sniff(head)
    if modern is None and head[4:8] == b"ftyp":  # an ISO-BMFF brand we do not know: trust the extension
        modern = _EXTENSION_FORMATS.get(path.suffix.lower())
    if modern is not None and not plugin_available(modern):
        raise ImageReadError(missing_plugin(path, modern, "reading"))
    if modern == "heif":
        return decode_heif(path, max_megapixels)
    return decode_with_pillow(path, max_megapixels, {"avif": "AVIF", "jxl": "JPEG XL"}.get(modern or ""))


# ----------------------------------------------------------------------------------------- writing


def _output_depth(fmt: str, bit_depth: int | None, like: ImageData | None, grey: bool) -> int:
    wanted = bit_depth if bit_depth is not None else (like.bit_depth if like is not None else None)
    if fmt in ("jpeg", "webp", "avif"):
        return 8
    if fmt == "heif":
        return heif_depth(wanted)
    if fmt == "png" or (fmt == "jxl" and grey):
        return 16 if wanted is not None and wanted > 8 else 8
    if fmt == "jxl":
        return 8
    if wanted is None:
        return 16
    return 8 if wanted <= 8 else 16 if wanted <= 16 else 32


def _channels(pixels: np.ndarray, like: ImageData | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour (H, W) grey or (H, W, 3), alpha (H, W) or None) as float32."""
    x = np.asarray(pixels)
    if x.dtype.kind != "f":
        raise ValueError(f"pixels must be floating point in [0, 1], got {x.dtype}")
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if not (x.ndim == 2 or (x.ndim == 3 and x.shape[2] in (3, 4))):
        raise ValueError(f"pixels must have shape (H, W), (H, W, 3) or (H, W, 4), got {x.shape}")
    alpha = None
    if x.ndim == 3 and x.shape[2] == 4:
        x, alpha = x[..., :3], x[..., 3]
    elif like is not None and like.alpha is not None:
        if like.alpha.shape != x.shape[:2]:
            raise ValueError(f"pixels {x.shape[:2]} and the input's alpha {like.alpha.shape} differ in size")
        alpha = like.alpha
    if x.ndim == 3 and like is not None and like.is_grey:
        x = x.mean(axis=2)
    return x.astype(np.float32, copy=False), alpha


def _quantise(x: np.ndarray, depth: int) -> np.ndarray:
    if depth == 32:
        return clean_unit(x)
    return quantise_rows(x, 255.0 if depth == 8 else 65535.0, np.uint8 if depth == 8 else np.uint16)


def _icc_for(icc: bytes | None, grey: bool) -> bytes | None:
    """The profile only when its colour space matches the output (a grey profile on RGB is wrong)."""
    if not icc or len(icc) < 128:
        return None
    space = icc[16:20]
    return icc if space == (b"GRAY" if grey else b"RGB ") else None


def _pillow_save(tmp: Path, samples: np.ndarray, fmt: str, quality: int, icc: bytes | None) -> None:
    im = Image.fromarray(samples)
    kw: dict = {"icc_profile": icc} if icc else {}
    if fmt == "jpeg":
        im.save(tmp, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2, **kw)
    elif fmt == "webp":
        im.save(tmp, format="WEBP", quality=quality, exact=True, **kw)
    else:
        im.save(tmp, format="PNG", compress_level=6, **kw)


def _encode(
    tmp: Path,
    fmt: str,
    samples: np.ndarray,
    *,
    depth: int,
    quality: int,
    has_alpha: bool,
    icc: bytes | None,
    metadata: Metadata | None,
) -> None:
    """Encode ``samples`` into ``tmp``; EXIF, IPTC and XMP by exiv2, or by the encoder where exiv2 cannot."""
    if fmt in ("heif", "avif", "jxl"):
        exif = metadata.exif_block(orientation_tag=fmt != "avif") if metadata else None
        xmp = metadata.xmp_packet(with_iptc=True) if metadata else None
        if fmt == "heif":
            encode_heif(tmp, samples, depth=depth, quality=quality, icc=icc, exif=exif, xmp=xmp)
        else:
            encode_with_pillow(tmp, samples, fmt, quality=quality, icc=icc, exif=exif, xmp=xmp)
        return
    if fmt == "tiff":
        encode_tiff(tmp, samples, has_alpha=has_alpha, icc_profile=icc)
    elif fmt == "png" and depth == 16:
        encode_png(tmp, samples, icc_profile=icc)
    else:
        _pillow_save(tmp, samples, fmt, quality, icc)
    if metadata is not None:
        write_metadata(tmp, metadata, iptc_as_xmp=fmt == "webp")


def write_image(
    path: str | Path,
    pixels: np.ndarray,
    *,
    like: ImageData | None = None,
    bit_depth: int | None = None,
    quality: int = 95,
) -> None:
    """Write float pixels in [0, 1] atomically; the format comes from the extension.

    pixels: (H, W, 3) RGB, (H, W, 4) RGBA, or (H, W) / (H, W, 1) grey. With ``like`` (the decoded
    input) the output keeps its greyness, alpha, bit depth, EXIF with maker notes and GPS
    (orientation reset to 1), IPTC, XMP and ICC profile where the format can hold them (IPTC goes
    into the XMP for WebP, HEIC, AVIF and JPEG XL; JPEG XL cannot take the ICC profile).
    ``bit_depth`` (8, 16, 32) overrides and is clipped to the format: JPEG/WebP/AVIF 8; PNG 8/16;
    HEIC 8/10/12; JPEG XL 8 (grey 8/16); TIFF 8/16/32-float (default 16 without ``like``). JPEG
    drops alpha; WebP and AVIF store grey as RGB. Lossy formats use 4:4:4 chroma at quality >= 90.
    Missing parent folders are created. Raises ImageWriteError naming the path and what to do
    (for a format whose plugin is missing: the package to install).
    """
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageWriteError(
            f"{path}: cannot write '{path.suffix or '(no extension)'}' files; "
            "use .png, .jpg, .tif, .webp, .heic, .avif or .jxl"
        )
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1-100, got {quality}")
    if fmt in ("heif", "avif", "jxl"):
        if not plugin_available(fmt):
            raise ImageWriteError(missing_plugin(path, fmt, "writing"))
    colour, alpha = _channels(pixels, like)
    grey = colour.ndim == 2
    if fmt in ("webp", "avif") and grey:
        colour, grey = np.repeat(colour[..., None], 3, axis=2), False
    if fmt == "jpeg":
        alpha = None
    depth = _output_depth(fmt, bit_depth, like, grey)
    stack = colour if alpha is None else np.dstack([colour, alpha])
    if fmt == "heif":
        samples = quantise_heif(stack, depth)
    else:
        samples = _quantise(stack, depth)
    icc = _icc_for(like.icc_profile, grey) if like is not None and fmt != "jxl" else None
    metadata = like.metadata if like is not None else None
    atomic_write(
        path,
        lambda tmp: _encode(
            tmp, fmt, samples, depth=depth, quality=quality, has_alpha=alpha is not None, icc=icc, metadata=metadata
        ),
    )


def is_supported_output(path: str | Path) -> bool:
    """True when :func:`write_image` can write this extension."""
    return Path(path).suffix.lower() in _WRITE_FORMATS
