"""Metadata helpers: EXIF orientation, XMP orientation, EXIF blocks inside TIFF files.

EXIF blocks are TIFF-structured byte strings, optionally prefixed with ``Exif\\0\\0``. The orientation
is patched in place (no re-serialisation), so maker notes and other offsets survive byte for byte.
"""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np

EXIF_PREFIX = b"Exif\x00\x00"
ORIENTATION_TAG = 0x0112
EXIF_IFD_TAG = 0x8769
GPS_IFD_TAG = 0x8825
INTEROP_IFD_TAG = 0xA005
# IFD0 tags that describe the picture (not its storage) and are worth carrying over.
DESCRIPTIVE_IFD0_TAGS: tuple[int, ...] = (270, 271, 272, 305, 306, 315, 33432)

_XMP_ORIENTATION_ATTR = re.compile(rb"(tiff:Orientation\s*=\s*[\"'])\s*\d\s*([\"'])")
_XMP_ORIENTATION_ELEM = re.compile(rb"(<tiff:Orientation>)\s*\d\s*(</tiff:Orientation>)")


def _orientation_entry(exif: bytes) -> tuple[int, str, int] | None:
    """Locate the IFD0 orientation entry: (byte offset of its value, endian, value) or None."""
    start = len(EXIF_PREFIX) if exif.startswith(EXIF_PREFIX) else 0
    head = exif[start : start + 4]
    if head == b"II*\x00":
        endian = "<"
    elif head == b"MM\x00*":
        endian = ">"
    else:
        return None
    try:
        (ifd,) = struct.unpack_from(endian + "I", exif, start + 4)
        (count,) = struct.unpack_from(endian + "H", exif, start + ifd)
        for i in range(count):
            entry = start + ifd + 2 + 12 * i
            tag, typ, n = struct.unpack_from(endian + "HHI", exif, entry)
            if tag == ORIENTATION_TAG and typ == 3 and n >= 1:
                (value,) = struct.unpack_from(endian + "H", exif, entry + 8)
                return entry + 8, endian, int(value)
    except struct.error:
        return None
    return None


def exif_orientation(exif: bytes | None) -> int:
    """The EXIF orientation (1-8) stored in an EXIF block; 1 when absent or invalid."""
    if not exif:
        return 1
    found = _orientation_entry(exif)
    if found is None or not 1 <= found[2] <= 8:
        return 1
    return found[2]


def exif_with_upright_orientation(exif: bytes | None) -> bytes | None:
    """Return the EXIF block with its orientation set to 1 (patched in place, all else unchanged)."""
    if not exif:
        return None
    found = _orientation_entry(exif)
    if found is None:
        return exif
    offset, endian, _ = found
    out = bytearray(exif)
    out[offset : offset + 2] = struct.pack(endian + "H", 1)
    return bytes(out)


def xmp_with_upright_orientation(xmp: bytes | None) -> bytes | None:
    """Return the XMP packet with any ``tiff:Orientation`` set to 1."""
    if not xmp:
        return None
    xmp = _XMP_ORIENTATION_ATTR.sub(rb"\g<1>1\g<2>", xmp)
    return _XMP_ORIENTATION_ELEM.sub(rb"\g<1>1\g<2>", xmp)


def exif_without_prefix(exif: bytes) -> bytes:
    """Strip the JPEG-style ``Exif\\0\\0`` prefix (PNG eXIf and TIFF want the bare TIFF structure)."""
    return exif[len(EXIF_PREFIX) :] if exif.startswith(EXIF_PREFIX) else exif


def exif_with_prefix(exif: bytes) -> bytes:
    """Add the ``Exif\\0\\0`` prefix that JPEG APP1 segments need."""
    return exif if exif.startswith(EXIF_PREFIX) else EXIF_PREFIX + exif


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W) or (H, W, C) array stored with EXIF ``orientation`` into upright pixels.

    Matches Pillow's ``ImageOps.exif_transpose``: 2 mirror, 3 rotate 180, 4 flip, 5 transpose,
    6 rotate 90 clockwise, 7 transverse, 8 rotate 90 anticlockwise.
    """
    if orientation == 2:
        out = arr[:, ::-1]
    elif orientation == 3:
        out = arr[::-1, ::-1]
    elif orientation == 4:
        out = arr[::-1]
    elif orientation == 5:
        out = arr.swapaxes(0, 1)
    elif orientation == 6:
        out = np.rot90(arr, k=-1)
    elif orientation == 7:
        out = arr[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        out = np.rot90(arr, k=1)
    else:
        return arr
    return np.ascontiguousarray(out)


def exif_from_tiff_file(path: Path) -> bytes | None:
    """Build an EXIF block (with prefix, orientation 1) from a TIFF-structured file's IFD0.

    Carries the descriptive IFD0 tags (camera make/model, date, artist...) and the Exif and GPS
    sub-directories; storage tags (strips, tiles, sizes) are left out. Works for TIFF and for
    TIFF-based RAW files (DNG, NEF, CR2, ARW...). Returns None when nothing useful is found.
    """
    from PIL import Image

    with open(path, "rb") as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        head = fp.read(4)
        if head not in (b"II*\x00", b"MM\x00*"):
            return None
        fp.seek(0)
        try:
            full = Image.Exif()
            full.load_from_fp(fp)
            out = Image.Exif()
            out.endian = full.endian
            for tag in DESCRIPTIVE_IFD0_TAGS:
                value = full.get(tag)
                if isinstance(value, str) and value.strip() and not (tag == 270 and value.startswith('{"shape"')):
                    out[tag] = value  # (tifffile's JSON shape description is not a caption)
            for tag in (EXIF_IFD_TAG, GPS_IFD_TAG):
                sub = full.get_ifd(tag)
                if sub:
                    sub = {k: v for k, v in sub.items() if k != INTEROP_IFD_TAG}
                    out[tag] = sub
            if not set(out) - {305}:  # nothing but the name of the program that wrote the file
                return None
            out[ORIENTATION_TAG] = 1
            return out.tobytes()
        except Exception:  # unusual EXIF must never stop an image from loading
            return None


def split_exif_for_tiff(exif: bytes | None) -> tuple[dict[int, str], dict[int, Any], dict[int, Any]]:
    """Split an EXIF block into (ascii IFD0 tags, Exif sub-IFD dict, GPS sub-IFD dict) for a TIFF writer."""
    from PIL import Image

    if not exif:
        return {}, {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            e = Image.Exif()
            e.load(exif_with_prefix(exif))
            ifd0 = {t: e[t] for t in DESCRIPTIVE_IFD0_TAGS if isinstance(e.get(t), str) and e.get(t)}
            sub = {k: v for k, v in e.get_ifd(EXIF_IFD_TAG).items() if k != INTEROP_IFD_TAG}
            gps = dict(e.get_ifd(GPS_IFD_TAG))
            return ifd0, sub, gps
        except Exception:  # unreadable EXIF is dropped, never fatal
            return {}, {}, {}


def serialise_ifd(entries: dict[int, Any], offset: int, *, group: int, little_endian: bool = True) -> bytes:
    """Serialise one TIFF sub-directory (Exif or GPS ``group``) whose first byte sits at file ``offset``."""
    from PIL import TiffImagePlugin

    head = b"II\x2a\x00\x08\x00\x00\x00" if little_endian else b"MM\x00\x2a\x00\x00\x00\x08"
    ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=head, group=group)
    for tag, value in entries.items():
        ifd[tag] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ifd.tobytes(offset)
