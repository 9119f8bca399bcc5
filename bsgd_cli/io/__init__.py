"""Image input and output: sRGB files (PNG, JPEG, TIFF, WebP, HEIC/HEIF, AVIF, JPEG XL), camera RAW, DNG,
their metadata (EXIF, IPTC, XMP through exiv2), and input discovery.

Importing this package does not import rawpy, exiv2, the format plugins or torch; each loads on first use.
"""

from __future__ import annotations

from ._meta import camera_name
from .dng import write_dng
from .images import (
    RAW_EXTENSIONS,
    SRGB_EXTENSIONS,
    ImageData,
    find_images,
    is_image_path,
    is_raw_path,
    is_supported_output,
    read_image,
    write_image,
)
from .raw import BayerData, read_bayer, read_raw

__all__ = [
    "RAW_EXTENSIONS",
    "SRGB_EXTENSIONS",
    "BayerData",
    "camera_name",
    "ImageData",
    "find_images",
    "is_image_path",
    "is_raw_path",
    "is_supported_output",
    "read_bayer",
    "read_image",
    "read_raw",
    "write_dng",
    "write_image",
]
