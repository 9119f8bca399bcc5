"""Photo metadata through exiv2 (the ``exiv2`` package, python-exiv2): EXIF with maker notes and GPS,
IPTC-IIM, XMP. The ICC profile travels with the pixels (the decoders and encoders handle it, because it
decides how the samples are read), and pixel orientation is applied here.

What exiv2 does: it reads EXIF/IPTC/XMP from every format bsgd reads (JPEG, PNG, TIFF, WebP, HEIC/HEIF,
AVIF, JPEG XL, camera RAW), keeps maker notes as the camera wrote them (it knows their layouts and
re-encodes their offsets), and writes all three into JPEG, PNG, TIFF and WebP outputs. What a read
gives is held as an Exiv2 sidecar (``.exv``) blob in :class:`Metadata`, so it is plain bytes that can
cross threads, with the orientation already reset to 1 (bsgd writes upright pixels).

What it cannot do, kept here:
- exiv2 writes no metadata into HEIC/AVIF/JPEG XL files (its BMFF support reads only), so for those
  the encoders embed the EXIF block and the XMP packet themselves; the EXIF block comes out of the
  sidecar's APP1 segment (the Python binding does not expose exiv2's ``ExifParser::encode``).
- IPTC-IIM has no place in HEIF, AVIF, JPEG XL or WebP; there the IPTC Core fields are written as
  XMP (the standard IPTC-in-XMP properties) by :data:`IPTC_TO_XMP`, because the binding does not
  expose exiv2's ``copyIptcToXmp`` either.
- A TIFF or RAW source's IFD0 also describes its own storage (strip offsets, bit depth, DNG tags);
  those tags, and the further images of such files, are left out of what is carried.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# exiv2 reports through the "exiv2" logger; without a handler Python would print warnings to stderr.
logging.getLogger("exiv2").addHandler(logging.NullHandler())
_EXIV2_LOCK = threading.Lock()  # one exiv2 call at a time: its XMP toolkit keeps global state

ORIENTATION_KEY = "Exif.Image.Orientation"
XMP_ORIENTATION_KEY = "Xmp.tiff.Orientation"
# IFD0 tags that describe how a TIFF stores its pixels, not the photo; never carried to another file.
_STORAGE_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 317, 320, 322, 323,
     324, 325, 330, 338, 339, 340, 341, 347, 513, 514, 529, 530, 531, 532, 700, 33723, 34377, 34665, 34675,
     34853, 40965}
)
_DNG_TAGS = range(50706, 52600)  # DNGVersion .. the last DNG 1.7 tag: a TIFF carrying them reads as a DNG
_KEPT_GROUPS = ("Image", "Photo", "GPSInfo", "Iop", "Thumbnail")
IPTC_TO_XMP: dict[str, tuple[str, str]] = {
    # IPTC-IIM dataset -> (XMP property, kind): the IPTC Core mapping (IPTC Photo Metadata Standard).
    "Iptc.Application2.ObjectName": ("Xmp.dc.title", "lang"),
    "Iptc.Application2.Caption": ("Xmp.dc.description", "lang"),
    "Iptc.Application2.Copyright": ("Xmp.dc.rights", "lang"),
    "Iptc.Application2.Keywords": ("Xmp.dc.subject", "bag"),
    "Iptc.Application2.Byline": ("Xmp.dc.creator", "bag"),
    "Iptc.Application2.SuppCategory": ("Xmp.photoshop.SupplementalCategories", "bag"),
    "Iptc.Application2.Headline": ("Xmp.photoshop.Headline", "text"),
    "Iptc.Application2.City": ("Xmp.photoshop.City", "text"),
    "Iptc.Application2.ProvinceState": ("Xmp.photoshop.State", "text"),
    "Iptc.Application2.CountryName": ("Xmp.photoshop.Country", "text"),
    "Iptc.Application2.CountryCode": ("Xmp.iptc.CountryCode", "text"),
    "Iptc.Application2.SubLocation": ("Xmp.iptc.Location", "text"),
    "Iptc.Application2.Credit": ("Xmp.photoshop.Credit", "text"),
    "Iptc.Application2.Source": ("Xmp.photoshop.Source", "text"),
    "Iptc.Application2.Writer": ("Xmp.photoshop.CaptionWriter", "text"),
    "Iptc.Application2.BylineTitle": ("Xmp.photoshop.AuthorsPosition", "text"),
    "Iptc.Application2.SpecialInstructions": ("Xmp.photoshop.Instructions", "text"),
    "Iptc.Application2.TransmissionReference": ("Xmp.photoshop.TransmissionReference", "text"),
    "Iptc.Application2.Category": ("Xmp.photoshop.Category", "text"),
    "Iptc.Application2.Urgency": ("Xmp.photoshop.Urgency", "text"),
}


def _exiv2():
    import exiv2

    return exiv2


@dataclass(frozen=True)
class Metadata:
    """EXIF (maker notes, GPS), IPTC and XMP of one photo, orientation reset to 1.

    sidecar: the Exiv2 sidecar (``.exv``) bytes holding them, as exiv2 wrote them.
    """

    sidecar: bytes = field(repr=False)

    def _open(self):
        image = _exiv2().ImageFactory.open(self.sidecar)
        image.readMetadata()
        return image

    def exif_block(self, *, orientation_tag: bool = True) -> bytes | None:
        """The EXIF block (TIFF-structured, without the ``Exif\\0\\0`` prefix) for encoders, or None.

        ``orientation_tag=False`` leaves the (upright) orientation tag out: Pillow's AVIF encoder moves
        that tag into the container and re-serialises the block, which would move maker-note offsets.
        """
        sidecar = self.sidecar
        if not orientation_tag:
            with _EXIV2_LOCK:
                image = self._open()
                exif = image.exifData()
                found = exif.findKey(_exiv2().ExifKey(ORIENTATION_KEY))
                if found != exif.end():
                    exif.erase(found)
                sidecar = _exv_bytes(exif=exif)
        payload = _jpeg_segment(sidecar, 0xE1, b"Exif\x00\x00")
        return payload[6:] if payload else None

    def xmp_packet(self, *, with_iptc: bool) -> bytes | None:
        """The XMP packet; ``with_iptc`` adds the IPTC fields as IPTC Core XMP (where XMP lacks them)."""
        with _EXIV2_LOCK:
            image = self._open()
            xmp = image.xmpData()
            if with_iptc:
                _iptc_into_xmp(image.iptcData(), xmp)
            if not len(xmp):
                return None
            packet_holder = _exv_bytes(xmp=xmp)  # kept alive: exiv2 reads the buffer in place
            holder = _exiv2().ImageFactory.open(packet_holder)
            holder.readMetadata()
            return str(holder.xmpPacket()).encode("utf-8")


def _jpeg_segment(blob: bytes, marker: int, signature: bytes) -> bytes | None:
    """The payload of the first JPEG-style segment ``marker`` starting with ``signature`` (exv blobs
    are JPEG-structured after their 7-byte ``\\xff\\x01Exiv2`` header)."""
    pos = 7 if blob.startswith(b"\xff\x01Exiv2") else 2
    while pos + 4 <= len(blob) and blob[pos] == 0xFF:
        kind = blob[pos + 1]
        if kind in (0xD9, 0xDA):  # end of image, start of scan
            return None
        length = int.from_bytes(blob[pos + 2 : pos + 4], "big")
        payload = blob[pos + 4 : pos + 2 + length]
        if kind == marker and payload.startswith(signature):
            return payload
        pos += 2 + length
    return None


def _iptc_into_xmp(iptc, xmp) -> None:
    """Copy the IPTC Core fields into ``xmp`` where it does not have them already (XMP wins)."""
    values: dict[str, list[str]] = {}
    for datum in iptc:
        key = str(datum.key())
        if key in IPTC_TO_XMP:
            values.setdefault(key, []).append(str(datum.toString()))
    for key, texts in values.items():
        prop, kind = IPTC_TO_XMP[key]
        if xmp.findKey(_exiv2().XmpKey(prop)) != xmp.end():
            continue
        if kind == "lang":
            xmp[prop] = f'lang="x-default" {texts[0]}'
        elif kind == "bag":
            for text in texts:
                xmp[prop] = text  # assigning to an array property appends
        else:
            xmp[prop] = texts[0]


def _carried(datum, tiff_based: bool) -> bool:
    group = str(datum.groupName())
    if group == "Image":
        tag = int(datum.tag())
        return tag not in _STORAGE_TAGS and tag not in _DNG_TAGS
    if group == "Thumbnail":
        return not tiff_based  # IFD1 of a TIFF or RAW file is another image, not a thumbnail
    return group in _KEPT_GROUPS or bool(_exiv2().ExifTags.isMakerGroup(group))


def _orientation(value: str | None) -> int | None:
    try:
        number = int(str(value).split()[0])
    except (TypeError, ValueError, IndexError):
        return None
    return number if 1 <= number <= 8 else None


def read_metadata(path: Path) -> tuple[Metadata | None, int | None, list[str]]:
    """(metadata, orientation, notes) of ``path``: EXIF/IPTC/XMP as exiv2 reads them.

    ``orientation`` is EXIF's, else XMP's ``tiff:Orientation``, else None; the carried copy has it
    set to 1 (the EXIF thumbnail is dropped when it was not 1, as it would now be turned). Metadata
    that exiv2 cannot read never stops an image from loading: it is left out with a note.
    """
    try:
        exiv2 = _exiv2()
        with _EXIV2_LOCK:
            source, _data = _open_file(path)
            source.readMetadata()
            tiff_based = str(source.mimeType()) not in ("image/jpeg", "image/png", "image/webp") and not (
                str(source.mimeType()).startswith(("image/heic", "image/heif", "image/avif", "image/jxl"))
            )
            exif = exiv2.ExifData()
            for datum in source.exifData():
                if _carried(datum, tiff_based):
                    exif.add(datum)
            iptc, xmp = source.iptcData(), source.xmpData()
            if not (len(exif) or len(iptc) or len(xmp)):
                return None, None, []
            found = _find(exif, ORIENTATION_KEY)
            orientation = _orientation(found) or _orientation(_find(xmp, XMP_ORIENTATION_KEY))
            if found is not None:
                exif[ORIENTATION_KEY] = exiv2.UShortValue(1)
            if _find(xmp, XMP_ORIENTATION_KEY) is not None:
                xmp[XMP_ORIENTATION_KEY] = "1"
            if orientation not in (None, 1):
                exiv2.ExifThumb(exif).erase()
            sidecar = _exv_bytes(exif=exif, iptc=iptc, xmp=xmp)
    except ImportError:
        return None, None, ["its metadata was not read: the exiv2 package is missing; reinstall bsgd-cli"]
    except Exception as exc:  # unreadable metadata must never stop an image from loading
        return None, None, [f"its metadata could not be read ({exc}); the output will have none"]
    return Metadata(sidecar), orientation, []


def camera_name(path: Path) -> str | None:
    """"Make Model" from a photo's EXIF (any format exiv2 reads, camera RAW included), or None."""
    try:
        with _EXIV2_LOCK:
            source, _data = _open_file(path)
            source.readMetadata()
            make, model = (_find(source.exifData(), f"Exif.Image.{key}") for key in ("Make", "Model"))
    except Exception:  # no camera name is an answer, not an error
        return None
    parts = [part.strip() for part in (make, model) if part and part.strip()]
    if len(parts) == 2 and parts[1].lower().startswith(parts[0].lower()):
        parts = parts[1:]  # "Canon" + "Canon EOS 5D" -> "Canon EOS 5D"
    return " ".join(parts) or None


def _open_file(path: Path):
    """(exiv2 image, the bytes it was opened from or None). exiv2 takes file names as UTF-8, so a
    name that is not valid UTF-8 is opened from its contents in memory (keep the bytes alive)."""
    exiv2 = _exiv2()
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        data = Path(path).read_bytes()
        return exiv2.ImageFactory.open(data), data
    return exiv2.ImageFactory.open(str(path)), None


def _find(data, key: str) -> str | None:
    for datum in data:
        if str(datum.key()) == key:
            return str(datum.toString())
    return None


def _exv_bytes(*, exif=None, iptc=None, xmp=None) -> bytes:
    """An Exiv2 sidecar holding the given exiv2 metadata containers (call with the lock held)."""
    exiv2 = _exiv2()
    holder = exiv2.ImageFactory.create(exiv2.ImageType.exv)
    if exif is not None:
        holder.setExifData(exif)
    if iptc is not None:
        holder.setIptcData(iptc)
    if xmp is not None:
        holder.setXmpData(xmp)
    holder.writeMetadata()
    return _io_bytes(holder.io())


def _io_bytes(io) -> bytes:
    io.open()
    try:
        return bytes(io.mmap())
    finally:
        io.munmap()
        io.close()


def write_metadata(path: Path, metadata: Metadata, *, iptc_as_xmp: bool) -> None:
    """Write EXIF, IPTC and XMP into the JPEG, PNG, TIFF or WebP file at ``path`` (pixels and ICC
    profile untouched). ``iptc_as_xmp`` for formats without an IPTC-IIM block (WebP): the IPTC
    fields go into the XMP. Raises exiv2.Exiv2Error when exiv2 cannot write them."""
    with _EXIV2_LOCK:
        carried = metadata._open()
        target, in_memory = _open_file(path)
        target.readMetadata()
        xmp = carried.xmpData()
        if iptc_as_xmp:
            _iptc_into_xmp(carried.iptcData(), xmp)
        else:
            target.setIptcData(carried.iptcData())
        target.setExifData(carried.exifData())
        target.setXmpData(xmp)
        target.writeMetadata()
        if in_memory is not None:
            Path(path).write_bytes(_io_bytes(target.io()))


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
