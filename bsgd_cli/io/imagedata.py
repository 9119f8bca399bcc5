"""The decoded-image record shared by every reader, plus file-type helpers.

Kept free of heavy imports so that :mod:`bsgd_cli.io.raw`, :mod:`bsgd_cli.io.images` and the
path-discovery code can all use it without import cycles.
"""

from __future__ import annotations

import errno
import os
import stat
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


OTHER_IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    "." + e for e in "gif bmp heic heif avif jxl jp2 j2k psd ico pbm pgm ppm pnm svg exr hdr".split()
)
"""Image formats bsgd does not read: named one by one when skipped, so none goes unnoticed."""


def special_kind(mode: int) -> str | None:
    """'a named pipe (FIFO)', 'a socket', 'a character device', 'a block device'; None for a file or folder."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return None


def os_error_advice(exc: OSError) -> str:
    """What to do about an error met while looking at or reading an input (follows its reason)."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "check its permissions"
    if exc.errno == errno.ENAMETOOLONG:
        return "the path is longer than this system allows; move it higher up or shorten folder names"
    if exc.errno == errno.ELOOP:
        return "a loop of symbolic links; fix the links"
    if exc.errno == errno.EIO:
        return "the disk or the file may be damaged; copy it again"
    return "check the path"


def cannot_open(path: Path, exc: OSError) -> ImageReadError:
    """The error for an input that the system refuses to open or look at."""
    return ImageReadError(f"{path}: cannot be opened ({exc.strerror or exc}); {os_error_advice(exc)}")


def describe_not_regular(path: Path, mode: int) -> str:
    """Why ``path`` (whose ``stat`` mode, links followed, is ``mode``) is not an image file."""
    kind = special_kind(mode) or "not a regular file"
    if os.path.islink(path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"{path}: a symbolic link to {kind} ({target}), not an image file; it was not read"
    return f"{path}: {kind}, not an image file; it was not read"


def check_input_file(path: Path) -> None:
    """Raise ImageReadError unless ``path`` is an existing, non-empty regular file.

    Looks with ``stat`` only: a named pipe, a device or a socket (or a link to one) is never opened,
    so nothing can hang on it or read a device.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageReadError(f"{path}: broken symbolic link; fix the link or remove it from the inputs") from None
        raise ImageReadError(f"{path}: file not found; check the path and spelling") from None
    except OSError as exc:
        raise cannot_open(path, exc) from exc
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(
            f"{path}: is a folder, not an image file; pass the folder as an input to process the images in it"
        )
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(describe_not_regular(path, info.st_mode))
    if info.st_size == 0:
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
