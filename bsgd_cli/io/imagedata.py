"""The decoded-image record shared by every reader, plus file-type helpers.

Kept free of heavy imports so that :mod:`bsgd_cli.io.raw`, :mod:`bsgd_cli.io.images` and the
path-discovery code can all use it without import cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from ._meta import Metadata

SRGB_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".webp", ".heic", ".heif", ".hif", ".avif", ".jxl"}
)
"""Extensions read by :func:`bsgd_cli.io.images.read_image` as display-referred (sRGB-like) images."""

RAW_EXTENSIONS: frozenset[str] = frozenset(
    "." + e
    for e in (
        "dng cr2 cr3 nef nrw arw srf sr2 raf orf rw2 pef kdc dcr mrw 3fr erf srw x3f iiq raw rwl".split()
    )
)
"""Camera RAW extensions, decoded with LibRaw through rawpy (:mod:`bsgd_cli.io.raw`)."""

PARTIAL_SUFFIX = ".partial"
"""Marker in the names of our own temporary files (``.name.XXXX.partial.ext``)."""


def is_raw_path(path: str | Path) -> bool:
    """True when the file name has a camera RAW extension (case-insensitive)."""
    return Path(path).suffix.lower() in RAW_EXTENSIONS


def is_image_path(path: str | Path) -> bool:
    """True when the file name has an extension bsgd reads (sRGB formats or RAW), case-insensitive.

    Only the name is looked at; the file need not exist. Our own ``.partial`` temporaries are excluded.
    """
    p = Path(path)
    if is_partial_name(p.name):
        return False
    suffix = p.suffix.lower()
    return suffix in SRGB_EXTENSIONS or suffix in RAW_EXTENSIONS


def is_partial_name(name: str) -> bool:
    """True for the temporary names written by the atomic writer (``.x.jpg.ab12.partial.jpg``)."""
    return name.startswith(".") and PARTIAL_SUFFIX + "." in name


@dataclass
class ImageData:
    """A decoded image with what is needed to write the result back faithfully.

    Attributes:
        pixels: float32 array, shape (H, W, 3), RGB in [0, 1], upright (EXIF orientation applied).
            Grey inputs are expanded to three equal channels.
        alpha: float32 (H, W) in [0, 1] when the file had an alpha channel, else None. Not premultiplied.
        channels_in: channels the file had: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA (palette and CMYK
            files count as 3, or 4 with transparency).
        bit_depth: 8, 10, 12 (HEIC), 16, or 32 (floating point); taken from the file's header, never
            from pixel values.
        format: "png", "jpeg", "tiff", "webp", "heif", "avif", "jxl", "raw", or Pillow's lower-case
            name for other formats.
        icc_profile: embedded ICC profile bytes, or None (None after a CMYK conversion).
        source: the path that was read.
        is_raw: True for camera RAW files decoded by LibRaw.
        colour_space: a description such as "sRGB" or "embedded ICC profile".
        warnings: human-readable notes about the decode (clipped values, dropped frames...).
        orientation: the EXIF/TIFF orientation (1-8) found in the file and applied to ``pixels``.
        metadata: EXIF (with maker notes and GPS), IPTC and XMP as exiv2 read them, orientation reset
            to 1; None when the file had none. ``exif`` and ``xmp`` give its blocks as bytes.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    channels_in: int
    bit_depth: int
    format: str
    icc_profile: bytes | None
    source: Path
    is_raw: bool = False
    colour_space: str = "sRGB"
    warnings: list[str] = field(default_factory=list)
    orientation: int = 1
    metadata: Metadata | None = None

    @property
    def exif(self) -> bytes | None:
        """The EXIF block (TIFF-structured, no ``Exif\\0\\0`` prefix, orientation 1), or None."""
        return self.metadata.exif_block() if self.metadata is not None else None

    @property
    def xmp(self) -> bytes | None:
        """The XMP packet (orientation 1), or None."""
        return self.metadata.xmp_packet(with_iptc=False) if self.metadata is not None else None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def is_grey(self) -> bool:
        """True when the file was greyscale (with or without alpha)."""
        return self.channels_in in (1, 2)


def check_input_file(path: Path) -> None:
    """Raise ImageReadError unless ``path`` is an existing, non-empty regular file."""
    if not path.exists():
        if path.is_symlink():
            raise ImageReadError(f"{path}: broken symbolic link; fix the link or remove it from the inputs")
        raise ImageReadError(f"{path}: file not found; check the path and spelling")
    if path.is_dir():
        raise ImageReadError(
            f"{path}: is a folder, not an image file; pass the folder as an input to process the images in it"
        )
    if not path.is_file():
        raise ImageReadError(f"{path}: not a regular file; pass an image file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from exc
    if size == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes); copy or export it again")


def check_megapixels(path: Path, width: int, height: int, max_megapixels: float) -> None:
    """Raise ImageReadError when width x height exceeds ``max_megapixels`` (checked before decoding)."""
    mp = width * height / 1e6
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{path}: the header gives an empty size {width}x{height}; the file is corrupt")
    if mp > max_megapixels:
        raise ImageReadError(
            f"{path}: {width}x{height} is {mp:.1f} megapixels, over the limit of {max_megapixels:g}; "
            "raise the megapixel limit if this is intended, or downscale the image first"
        )
