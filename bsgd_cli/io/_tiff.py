"""TIFF reading and writing with tifffile (8/16-bit integer and 32-bit float samples).

Compressions tifffile cannot decode without the optional ``imagecodecs`` package (LZW, JPEG,
PackBits...) fall back to Pillow, which keeps 16-bit precision through :mod:`._decode`.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from ._decode import Decoded, damaged, decode_with_pillow
from ._meta import (
    EXIF_IFD_TAG,
    GPS_IFD_TAG,
    exif_from_tiff_file,
    serialise_ifd,
    split_exif_for_tiff,
)
from .imagedata import check_megapixels

# tifffile reports oddities through logging; without this, Python's last-resort handler would print
# them to stderr. Applications that configure logging still receive them.
logging.getLogger("tifffile").addHandler(logging.NullHandler())

# tifffile refuses to write the Exif/GPS pointer tags, so neighbouring codes (which keep the
# directory sorted once renamed) hold their place until the sub-IFDs are appended.
_PLACEHOLDER = {EXIF_IFD_TAG: EXIF_IFD_TAG - 1, GPS_IFD_TAG: GPS_IFD_TAG - 1}
_MINISWHITE, _MINISBLACK, _RGB, _PALETTE, _SEPARATED = 0, 1, 2, 3, 5
_TAG_XMP, _TAG_ICC, _TAG_ORIENTATION = 700, 34675, 274


def _tag(page, code: int):
    tag = page.tags.get(code)
    return None if tag is None else tag.value


def _to_bytes(value) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, np.ndarray):
        return value.tobytes()
    return bytes(value) or None


def _pillow_fallback(path: Path, max_megapixels: float, why: str) -> Decoded:
    dec = decode_with_pillow(path, max_megapixels)
    dec.format = "tiff"
    dec.warnings.append(f"decoded with Pillow ({why})")
    if not dec.exif:
        dec.exif = exif_from_tiff_file(path)
    return dec


def _scale_for(arr: np.ndarray, bps: int, path: Path) -> tuple[np.ndarray, float | None, int]:
    """(array, scale, bit_depth) from the stored sample type and BitsPerSample."""
    if arr.dtype == bool:
        return arr.astype(np.uint8), 1.0, 8
    if arr.dtype.kind == "f":
        return arr, None, 32
    if arr.dtype.kind == "u":
        bits = min(bps, arr.dtype.itemsize * 8) if bps else arr.dtype.itemsize * 8
        depth = 8 if bits <= 8 else 16 if bits <= 16 else 32
        return arr, float(2**bits - 1), depth
    raise ImageReadError(
        f"{path}: {arr.dtype} samples (signed or complex) are not supported; "
        "export it as an 8/16-bit unsigned or a 32-bit float TIFF"
    )


def decode_tiff(path: Path, max_megapixels: float) -> Decoded:
    """Decode the first page of a TIFF file (size checked from the header before decoding)."""
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # tifffile raises several types for malformed headers
        raise damaged(path, exc) from exc
    notes: list[str] = []
    with tif:
        try:
            page = tif.pages.first
            _ = (page.imagewidth, page.photometric, page.axes)
        except Exception as exc:
            raise damaged(path, exc if str(exc) not in ("", "0") else EOFError("no image in the file")) from exc
        check_megapixels(path, int(page.imagewidth), int(page.imagelength), max_megapixels)
        if len(tif.pages) > 1:
            notes.append(f"has {len(tif.pages)} pages; only the first is used")
        end = max((o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)), default=0)
        if end > path.stat().st_size:
            raise damaged(path, EOFError("the image data runs past the end of the file"))
        photometric = int(page.photometric)
        if photometric not in (_MINISWHITE, _MINISBLACK, _RGB, _PALETTE, _SEPARATED):
            return _pillow_fallback(path, max_megapixels, f"photometric {photometric}")
        try:
            arr = page.asarray(maxworkers=1)
        except Exception as exc:
            if "imagecodecs" in str(exc):
                return _pillow_fallback(path, max_megapixels, f"{getattr(page.compression, 'name', page.compression)} compression")
            raise damaged(path, exc) from exc
        if "S" in page.axes and page.axes.index("S") < page.axes.index("Y"):
            arr = np.moveaxis(arr, page.axes.index("S"), -1)
        arr = arr.reshape(int(page.imagelength), int(page.imagewidth), -1)
        extras = tuple(int(e) for e in (page.extrasamples or ()))
        icc = _to_bytes(_tag(page, _TAG_ICC))
        xmp = _to_bytes(_tag(page, _TAG_XMP))
        orientation = int(_tag(page, _TAG_ORIENTATION) or 1)
        colormap = page.colormap if photometric == _PALETTE else None
        bps = int(page.bitspersample)

    arr, scale, depth = _scale_for(arr, bps, path)
    is_float = scale is None
    x = arr.astype(np.float32) if is_float else (arr / np.float32(scale)).astype(np.float32)
    alpha_kind = extras[0] if extras else 0  # 1 associated (premultiplied), 2 unassociated
    n_colour = {_MINISWHITE: 1, _MINISBLACK: 1, _RGB: 3, _PALETTE: 1, _SEPARATED: 4}[photometric]
    if x.shape[2] < n_colour:
        raise ImageReadError(f"{path}: {x.shape[2]} samples a pixel do not fit its colour type; re-export it")
    colour = x[..., :n_colour]
    alpha = x[..., n_colour : n_colour + 1] if x.shape[2] > n_colour and alpha_kind in (1, 2) else None
    ignored = x.shape[2] - n_colour - (alpha is not None)
    if ignored:
        notes.append(f"{ignored} extra sample channel(s) ignored")
    channels_in = 1 if n_colour == 1 else 3
    if photometric == _MINISWHITE:
        colour = 1.0 - colour
    elif photometric == _PALETTE:
        assert colormap is not None
        colour = colormap.T[arr[..., 0]].astype(np.float32) / np.float32(65535)
        channels_in = 3
    elif photometric == _SEPARATED:
        colour = (1.0 - colour[..., :3]) * (1.0 - colour[..., 3:4])
        icc = None
        notes.append("converted from CMYK to RGB without colour management; colours may shift")
    if alpha is not None:
        colour = np.concatenate([colour, alpha], axis=-1)
        channels_in += 1
    return Decoded(
        array=colour if colour.shape[2] > 1 else colour[..., 0],
        scale=None if is_float else 1.0,
        channels_in=channels_in,
        bit_depth=depth,
        format="tiff",
        exif=exif_from_tiff_file(path),
        icc_profile=icc,
        xmp=xmp,
        orientation=orientation if 1 <= orientation <= 8 else 1,
        premultiplied=alpha_kind == 1 and alpha is not None,
        warnings=notes,
    )


def encode_tiff(
    path: Path,
    samples: np.ndarray,
    *,
    has_alpha: bool,
    icc_profile: bytes | None,
    exif: bytes | None,
    xmp: bytes | None,
) -> None:
    """Write (H, W[, C]) uint8/uint16/float32 samples as a deflate-compressed TIFF with metadata.

    The EXIF block becomes IFD0 text tags (make, model, date...) plus real Exif and GPS sub-IFDs.
    """
    import tifffile

    grey = samples.ndim == 2 or samples.shape[2] <= 2
    ifd0, exif_sub, gps = split_exif_for_tiff(exif)
    description = ifd0.pop(270, None)
    software = ifd0.pop(305, None) or "bsgd"
    extratags: list[tuple] = [(code, 2, 0, text, True) for code, text in sorted(ifd0.items())]
    if xmp:
        extratags.append((_TAG_XMP, 1, len(xmp), xmp, True))
    for tag, entries in ((EXIF_IFD_TAG, exif_sub), (GPS_IFD_TAG, gps)):
        if entries:
            extratags.append((_PLACEHOLDER[tag], 4, 1, 0, True))  # code and offset patched below
    tifffile.imwrite(
        path,
        samples,
        byteorder="<",
        photometric="minisblack" if grey else "rgb",
        extrasamples=("unassalpha",) if has_alpha else None,
        compression="zlib",
        predictor=samples.dtype.kind != "f",  # the float predictor needs imagecodecs
        iccprofile=icc_profile or None,
        description=description,
        software=software,
        metadata=None,
        extratags=extratags,
    )
    subs = [(t, e) for t, e in ((EXIF_IFD_TAG, exif_sub), (GPS_IFD_TAG, gps)) if e]
    if not subs:
        return
    offsets: dict[int, int] = {}
    with open(path, "r+b") as fh:
        for tag, entries in subs:
            fh.seek(0, 2)
            pos = fh.tell()
            if pos % 2:
                fh.write(b"\x00")
                pos += 1
            fh.write(serialise_ifd(entries, pos, group=tag))
            offsets[tag] = pos
    with tifffile.TiffFile(path) as tif:
        entries_at = {tag: tif.pages.first.tags[_PLACEHOLDER[tag]].offset for tag in offsets}
    with open(path, "r+b") as fh:
        for tag, entry in entries_at.items():
            fh.seek(entry)
            fh.write(struct.pack("<HHI", tag, 4, 1))  # code, LONG, count 1 (still in sorted order)
            fh.write(struct.pack("<I", offsets[tag]))
