"""TIFF reading and writing with tifffile (8/16-bit integer and 32-bit float samples).

Compressions tifffile cannot decode without the optional ``imagecodecs`` package (LZW, JPEG,
PackBits...) fall back to Pillow, which keeps 16-bit precision through :mod:`._decode`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from ._decode import Decoded, damaged, decode_with_pillow
from .imagedata import check_megapixels

# tifffile reports oddities through logging; without this, Python's last-resort handler would print
# them to stderr. Applications that configure logging still receive them.
logging.getLogger("tifffile").addHandler(logging.NullHandler())

_MINISWHITE, _MINISBLACK, _RGB, _PALETTE, _SEPARATED = 0, 1, 2, 3, 5
_TAG_ICC, _TAG_ORIENTATION = 34675, 274


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
                return _pillow_fallback(
                    path, max_megapixels, f"{getattr(page.compression, 'name', page.compression)} compression"
                )
            raise damaged(path, exc) from exc
        if "S" in page.axes and page.axes.index("S") < page.axes.index("Y"):
            arr = np.moveaxis(arr, page.axes.index("S"), -1)
        arr = arr.reshape(int(page.imagelength), int(page.imagewidth), -1)
        extras = tuple(int(e) for e in (page.extrasamples or ()))
        icc = _to_bytes(_tag(page, _TAG_ICC))
        orientation = _tag(page, _TAG_ORIENTATION)
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
        icc_profile=icc,
        orientation=int(orientation) if orientation is not None and 1 <= int(orientation) <= 8 else None,
        premultiplied=alpha_kind == 1 and alpha is not None,
        warnings=notes,
    )


def encode_tiff(path: Path, samples: np.ndarray, *, has_alpha: bool, icc_profile: bytes | None) -> None:
    """Write (H, W[, C]) uint8/uint16/float32 samples as a deflate-compressed TIFF with its ICC profile.

    EXIF (as IFD0 tags plus Exif and GPS sub-IFDs), IPTC and XMP are added afterwards by exiv2.
    """
    import tifffile

    grey = samples.ndim == 2 or samples.shape[2] <= 2
    tifffile.imwrite(
        path,
        samples,
        byteorder="<",
        photometric="minisblack" if grey else "rgb",
        extrasamples=("unassalpha",) if has_alpha else None,
        compression="zlib",
        predictor=samples.dtype.kind != "f",  # the float predictor needs imagecodecs
        iccprofile=icc_profile or None,
        software="bsgd",
        metadata=None,
    )
