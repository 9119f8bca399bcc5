"""A small PNG encoder for what Pillow cannot write: 16-bit RGB, RGBA and grey+alpha.

Rows are Paeth-filtered (vectorised: encoding only needs the unfiltered neighbours) and deflated in
blocks, so memory stays bounded for large images. It writes the ICC profile (iCCP); EXIF, IPTC and XMP
are added afterwards by exiv2, as for every PNG bsgd writes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
_ROWS_PER_BLOCK = 256


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _paeth_rows(rows: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Paeth-filter a block of byte rows (n, stride) given the row above the block (stride,)."""
    x = rows.astype(np.int16)
    up = np.vstack([prev[None].astype(np.int16), x[:-1]])
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    upleft = np.zeros_like(x)
    upleft[:, bpp:] = up[:, :-bpp]
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    filtered = ((x - pred) & 0xFF).astype(np.uint8)
    return np.hstack([np.full((x.shape[0], 1), 4, np.uint8), filtered])


def encode_png(
    path: Path,
    data: np.ndarray,
    *,
    icc_profile: bytes | None = None,
    level: int = 6,
) -> None:
    """Write ``data`` (uint8 or uint16; shape (H, W) or (H, W, C) with C in 1-4) as a PNG file."""
    if data.ndim == 2:
        data = data[:, :, None]
    h, w, c = data.shape
    if data.dtype == np.uint16:
        depth, raw = 16, data.astype(">u2")
    elif data.dtype == np.uint8:
        depth, raw = 8, data
    else:
        raise ValueError(f"PNG needs uint8 or uint16 samples, got {data.dtype}")
    bpp = c * depth // 8
    rows = np.ascontiguousarray(raw).view(np.uint8).reshape(h, w * bpp)
    with open(path, "wb") as fh:
        fh.write(_SIGNATURE)
        fh.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, _COLOUR_TYPE[c], 0, 0, 0)))
        if icc_profile:
            fh.write(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
        comp = zlib.compressobj(level)
        prev = np.zeros(w * bpp, np.uint8)
        for start in range(0, h, _ROWS_PER_BLOCK):
            block = rows[start : start + _ROWS_PER_BLOCK]
            out = comp.compress(_paeth_rows(block, prev, bpp).tobytes())
            if out:
                fh.write(_chunk(b"IDAT", out))
            prev = block[-1]
        fh.write(_chunk(b"IDAT", comp.flush()))
        fh.write(_chunk(b"IEND", b""))
