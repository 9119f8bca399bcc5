"""HEIC/HEIF, AVIF and JPEG XL through optional plugins, with a clear error when one is missing.

- HEIC/HEIF: pillow-heif (libheif with libde265 and x265), 8 bits and 10/12 bits in and out. libheif
  applies the file's rotation and mirror boxes, so decoded pixels are upright.
- AVIF: Pillow's own codec (Pillow >= 11.3 wheels), else pillow-avif-plugin. Both work in 8 bits, so a
  10/12-bit AVIF is read reduced to 8 bits. Pillow reports the file's rotation boxes as EXIF orientation.
- JPEG XL: pillow-jxl-plugin (libjxl). Colour in 8 bits, grey in 8 or 16 bits (the plugin has no 16-bit
  RGB mode). libjxl applies the codestream orientation. The plugin cannot embed an ICC profile, and it
  decodes the whole file when opening it, so the megapixel limit is checked after decoding.
Metadata: exiv2 cannot write these containers, so the encoders embed the EXIF block, XMP packet and
(where they can) ICC profile handed to them (see :mod:`._meta`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from ._decode import Decoded, damaged
from ._quantise import quantise_rows
from .imagedata import check_megapixels

# format -> (import name, PyPI package, bsgd-cli extra, name for messages)
PLUGINS: dict[str, tuple[str, str, str, str]] = {
    "heif": ("pillow_heif", "pillow-heif", "heif", "HEIC/HEIF"),
    "avif": ("pillow_avif", "pillow-avif-plugin", "avif", "AVIF"),
    "jxl": ("pillow_jxl", "pillow-jxl-plugin", "jxl", "JPEG XL"),
}
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")
_JXL_MAGIC = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")


def sniff(head: bytes) -> str | None:
    """"heif", "avif" or "jxl" from a file's first 64 bytes; None for other formats."""
    if head.startswith(_JXL_MAGIC):
        return "jxl"
    if head[4:8] != b"ftyp":
        return None
    size = int.from_bytes(head[:4], "big")
    brands = [head[i : i + 4] for i in range(8, min(size, len(head)), 4) if i != 12]  # major, then compatible
    if b"avif" in brands or b"avis" in brands:
        return "avif"
    return "heif" if any(b in _HEIF_BRANDS for b in brands) else None


def missing_plugin(path: Path, fmt: str, action: str) -> str:
    """The one-line message for a format whose plugin is not installed."""
    _, package, extra, name = PLUGINS[fmt]
    return f"{path}: {action} {name} needs the {package} package; install it with: pip install 'bsgd-cli[{extra}]'"


def plugin_available(fmt: str) -> bool:
    """True when the codec for ``fmt`` can be loaded (registering the Pillow plugin where there is one)."""
    if fmt == "avif":
        from PIL import features

        if features.check("avif"):
            return True
    try:
        importlib.import_module(PLUGINS[fmt][0])
    except ImportError:
        return False
    return True


def decode_heif(path: Path, max_megapixels: float) -> Decoded:
    """Decode the primary image of a HEIC/HEIF file at its own bit depth (8, 10 or 12)."""
    import pillow_heif

    try:
        heif = pillow_heif.open_heif(path, convert_hdr_to_8bit=False)
        check_megapixels(path, heif.size[0], heif.size[1], max_megapixels)
        depth = int(heif.info.get("bit_depth") or 8)
        array = np.asarray(heif)
    except ImageReadError:
        raise
    except (OSError, ValueError, RuntimeError, SyntaxError) as exc:
        raise damaged(path, exc) from exc
    notes = [f"has {len(heif)} images; only the primary one is used"] if len(heif) > 1 else []
    if array.dtype == np.uint16:  # pillow-heif shifts 10/12-bit samples up to 16 bits
        array = array >> (16 - depth)
    channels = 1 if array.ndim == 2 else array.shape[2]
    return Decoded(
        array=array,
        scale=float(2**depth - 1),
        channels_in=channels,
        bit_depth=depth,
        format="heif",
        icc_profile=heif.info.get("icc_profile") or None,
        orientation=1,
        warnings=notes,
    )


def heif_depth(wanted: int | None) -> int:
    """HEIC holds 8, 10 or 12 bits: 8 stays 8, 10 stays 10, deeper sources get 12."""
    if wanted is None or wanted <= 8:
        return 8
    return 10 if wanted <= 10 else 12


def quantise_heif(x: np.ndarray, depth: int) -> np.ndarray:
    """Samples for pillow-heif: uint8 for 8 bits; else uint16 holding the ``depth``-bit value in its top bits."""
    if depth == 8:
        return quantise_rows(x, 255.0, np.uint8)
    samples = quantise_rows(x, float(2**depth - 1), np.uint16)
    samples <<= 16 - depth
    return samples


def encode_heif(
    path: Path,
    samples: np.ndarray,
    *,
    depth: int,
    quality: int,
    icc: bytes | None,
    exif: bytes | None,
    xmp: bytes | None,
) -> None:
    """Write (H, W[, C]) samples from :func:`quantise_heif` as HEIC (HEVC; 4:4:4 chroma at quality >= 90)."""
    import pillow_heif

    channels = 1 if samples.ndim == 2 else samples.shape[2]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels] + (";16" if samples.dtype == np.uint16 else "")
    heif = pillow_heif.from_bytes(
        mode=mode, size=(samples.shape[1], samples.shape[0]), data=np.ascontiguousarray(samples).tobytes()
    )
    if depth > 8:
        heif.info["bit_depth"] = depth
    kwargs: dict = {"quality": quality, "chroma": 444 if quality >= 90 else 420}
    if icc:
        kwargs["icc_profile"] = icc
    if exif:
        kwargs["exif"] = exif
    if xmp:
        kwargs["xmp"] = xmp
    heif.save(path, **kwargs)


def encode_with_pillow(
    path: Path, samples: np.ndarray, fmt: str, *, quality: int, icc: bytes | None, exif: bytes | None, xmp: bytes | None
) -> None:
    """Write uint8 (or, for grey JPEG XL, uint16) samples as AVIF or JPEG XL through Pillow."""
    from PIL import Image

    image = Image.fromarray(samples if samples.dtype == np.uint8 else samples.astype(np.uint16))
    kwargs: dict = {"quality": quality}
    if exif:
        kwargs["exif"] = exif
    if xmp:
        kwargs["xmp"] = xmp
    if fmt == "avif":
        kwargs["subsampling"] = "4:4:4" if quality >= 90 else "4:2:0"
        if icc:
            kwargs["icc_profile"] = icc
        image.save(path, format="AVIF", **kwargs)
    else:
        kwargs["lossless"] = quality == 100
        image.save(path, format="JXL", **kwargs)
