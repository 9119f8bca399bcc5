"""HEIC, AVIF, JPEG XL and metadata round trips, read back by readers independent of the writer.

Fixtures are tiny images made here: pixels by Pillow / pillow-heif / tifffile, metadata by exiv2.
Outputs are checked with another library than the one that wrote the field: Pillow, tifffile and
pillow-heif for what exiv2 wrote (JPEG, PNG, TIFF, WebP); exiv2 and Pillow's EXIF parser for what the
HEIC/AVIF/JPEG XL encoders embedded; the standard library's XML parser for XMP; and small parsers
below for IPTC-IIM datasets, a Canon maker note and ISO-BMFF boxes.
"""

from __future__ import annotations

import functools
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, IptcImagePlugin
from typer.testing import CliRunner

from bsgd_cli.cli import app
from bsgd_cli.errors import ImageReadError, ImageWriteError
from bsgd_cli.io import read_image, write_image

exiv2 = pytest.importorskip("exiv2")
pillow_heif = pytest.importorskip("pillow_heif")
pytest.importorskip("pillow_jxl")

CAPTION, KEYWORDS, LABEL, OWNER = "Night market, Taipei", ["street", "night"], "bsgd-label", "Jane Roe"
GPS_LAT = (25.0, 2.0, 30.0)
NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "tiff": "http://ns.adobe.com/tiff/1.0/",
}


def pixels(h: int = 24, w: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([xx / w, yy / h, 0.5 + 0.4 * np.sin((xx + yy) / 5.0)], axis=-1).astype(np.float32)


@functools.cache
def icc_profile() -> bytes:
    """One profile for the whole run (Pillow stamps the creation time into it)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def tag(
    path: Path, *, make: str = "Canon", model: str = "Canon EOS R6", iptc: bool = True, orientation: int | None = None
) -> None:
    """Write EXIF (with GPS, and a Canon maker note for a Canon), IPTC and XMP into ``path`` with exiv2."""
    image = exiv2.ImageFactory.open(str(path))
    image.readMetadata()
    exif = image.exifData()
    exif["Exif.Image.Make"] = make
    exif["Exif.Image.Model"] = model
    if make == "Canon":
        exif["Exif.Canon.OwnerName"] = OWNER  # exiv2 builds the Canon maker note
    exif["Exif.GPSInfo.GPSLatitudeRef"] = "N"
    exif["Exif.GPSInfo.GPSLatitude"] = "25/1 2/1 30/1"
    if orientation is not None:
        exif["Exif.Image.Orientation"] = exiv2.UShortValue(orientation)
    if iptc:
        data = image.iptcData()
        data["Iptc.Application2.Caption"] = CAPTION
        for word in KEYWORDS:
            value = exiv2.Value.create(exiv2.TypeId.string)
            value.read(word)
            data.add(exiv2.IptcKey("Iptc.Application2.Keywords"), value)
    image.xmpData()["Xmp.xmp.Label"] = LABEL
    image.writeMetadata()


def exif_made_by_exiv2(**kwargs) -> bytes:
    """A bare EXIF block written by exiv2 (into a tiny JPEG, taken out by Pillow) for encoders' exif=."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        carrier = Path(folder) / "c.jpg"
        Image.new("RGB", (8, 8)).save(carrier)
        tag(carrier, iptc=False, **kwargs)
        block = Image.open(carrier).info["exif"]
    return block[6:] if block.startswith(b"Exif\x00\x00") else block


def jpeg_source(tmp_path: Path, orientation: int | None = None) -> Path:
    src = tmp_path / "src.jpg"
    Image.fromarray((pixels() * 255).astype(np.uint8)).save(src, quality=95, icc_profile=icc_profile())
    tag(src, orientation=orientation)
    return src


# ------------------------------------------------------------------------------ independent readers


def iim_datasets(data: bytes) -> dict[int, list[str]]:
    """IPTC-IIM record-2 datasets found in ``data`` (0x1C, record, dataset, 2-byte size, value)."""
    out: dict[int, list[str]] = {}
    pos = data.find(b"\x1c\x02")
    while 0 <= pos < len(data) - 5 and data[pos] == 0x1C:
        record, dataset, size = data[pos + 1], data[pos + 2], int.from_bytes(data[pos + 3 : pos + 5], "big")
        if record == 2:
            out.setdefault(dataset, []).append(data[pos + 5 : pos + 5 + size].decode("utf-8"))
        pos += 5 + size
    return out


def canon_owner(tiff: bytes, makernote: bytes) -> str | None:
    """OwnerName (tag 9) from a Canon maker note, whose offsets count from the TIFF header at tiff[0]."""
    endian = "<" if tiff[:2] == b"II" else ">"
    if not makernote or tiff.find(makernote) < 0:
        return None
    (count,) = struct.unpack_from(endian + "H", makernote, 0)
    for i in range(count):
        number, kind, n, value = struct.unpack_from(endian + "HHII", makernote, 2 + 12 * i)
        if number == 9 and kind == 2:
            return tiff[value : value + n].split(b"\x00")[0].decode()
    return None


def bmff_box(data: bytes, kind: bytes) -> bytes | None:
    """The payload of the first top-level ISO-BMFF box ``kind`` (JPEG XL containers)."""
    pos = 0
    while pos + 8 <= len(data):
        size, name = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if name == kind:
            return data[pos + 8 : pos + size]
        pos += max(size, 8)
    return None


def xmp_fields(packet: bytes) -> dict[str, object]:
    root = ET.fromstring(packet.rstrip(b"\x00 \n").decode("utf-8"))
    out: dict[str, object] = {}
    for desc in root.iter(f"{{{NS['rdf']}}}Description"):
        for name, value in desc.attrib.items():
            out[name.split("}")[-1]] = value
        for child in desc:
            items = [li.text for li in child.iter(f"{{{NS['rdf']}}}li")]
            out[child.tag.split("}")[-1]] = items if items else child.text
    return out


def exif_fields(block: bytes) -> dict[str, object]:
    exif = Image.Exif()
    exif.load(block if block.startswith(b"Exif") else b"Exif\x00\x00" + block)
    tiff = block[6:] if block.startswith(b"Exif") else block
    return {
        "make": exif.get(0x010F),
        "model": exif.get(0x0110),
        "orientation": exif.get(0x0112, 1),
        "gps": tuple(float(v) for v in exif.get_ifd(0x8825).get(2, ())),
        "owner": canon_owner(tiff, exif.get_ifd(0x8769).get(0x927C, b"")),
    }


def read_back(path: Path) -> dict[str, object]:
    """Make/model/GPS/maker note, IPTC caption and keywords, XMP label, ICC and bit depth of ``path``,
    each read by a library other than the one that wrote it."""
    suffix = path.suffix.lower()
    data = path.read_bytes()
    found: dict[str, object] = {}
    xmp: bytes | None = None
    if suffix == ".tif":
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            tags = {t.code: t.value for t in page.tags}
            exif_ifd = tags.get(34665, {})
            gps = tags.get(34853, {}).get("GPSLatitude", ())
            found.update(
                make=tags.get(271), model=tags.get(272), orientation=tags.get(274, 1),
                gps=tuple(gps[i] / gps[i + 1] for i in range(0, len(gps), 2)),
                owner=canon_owner(data, exif_ifd.get("MakerNote", b"")),
                icc=bytes(tags.get(34675, b"")), depth=int(page.bitspersample),
            )
            iptc = iim_datasets(bytes(np.asarray(tags.get(33723, b"")).tobytes()))
            xmp = bytes(tags.get(700, b""))
    elif suffix in (".jpg", ".png", ".webp", ".avif"):
        im = Image.open(path)
        im.load()
        block = im.info.get("exif") or bytes.fromhex("".join(im.info.get("Raw profile type exif", "").split("\n")[3:]))
        found.update(exif_fields(block))
        found.update(icc=im.info.get("icc_profile"), depth=8)
        if suffix == ".png":
            found["depth"] = data[24]  # IHDR bit depth
            raw = im.info.get("Raw profile type iptc", "")
            iptc = iim_datasets(bytes.fromhex("".join(raw.split("\n")[3:])))
        else:
            iptc = {
                k[1]: [v] if isinstance(v, bytes) else v for k, v in (IptcImagePlugin.getiptcinfo(im) or {}).items()
            }
            iptc = {k: [x.decode() if isinstance(x, bytes) else x for x in v] for k, v in iptc.items()}
        xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp", "").encode()
    else:  # .heic (pillow-heif wrote it: exiv2 and Pillow read it) and .jxl (the plugin wrote it)
        meta = exiv2.ImageFactory.open(str(path))
        meta.readMetadata()
        holder = exiv2.ImageFactory.create(exiv2.ImageType.jpeg)
        holder.setExifData(meta.exifData())
        holder.writeMetadata()
        io = holder.io()
        io.open()
        blob = bytes(io.mmap())
        start = blob.index(b"Exif\x00\x00")
        found.update(exif_fields(blob[start : start - 2 + int.from_bytes(blob[start - 2 : start], "big")]))
        xmp = str(meta.xmpPacket()).encode() or None
        if suffix == ".jxl":
            found.update(icc=None, depth=16 if Image.open(path).mode == "I;16" else 8)
            xmp = bmff_box(data, b"xml ") or xmp
        else:
            heif = pillow_heif.open_heif(path, convert_hdr_to_8bit=False)
            found.update(icc=heif.info.get("icc_profile"), depth=heif.info["bit_depth"])
            assert exif_fields(heif.info["exif"])["make"] == found["make"]  # pillow-heif agrees
        iptc = {}
    fields = xmp_fields(xmp) if xmp else {}
    found["label"] = fields.get("Label")
    found["xmp_orientation"] = fields.get("Orientation")
    found["caption"] = (iptc.get(120) or [None])[0] if iptc else ((fields.get("description") or [None])[0])
    found["keywords"] = iptc.get(25) if iptc else fields.get("subject")
    return found


# --------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    ("ext", "depth", "has_icc"),
    [
        ("jpg", 8, True),
        ("png", 16, True),
        ("tif", 16, True),
        ("webp", 8, True),
        ("heic", 12, True),
        ("avif", 8, True),
        ("jxl", 8, False),
    ],
)
def test_metadata_survives_every_format(tmp_path: Path, ext: str, depth: int, has_icc: bool) -> None:
    like = read_image(jpeg_source(tmp_path, orientation=6))
    assert like.orientation == 6 and like.pixels.shape == (32, 24, 3)  # turned upright
    out = tmp_path / f"out.{ext}"
    write_image(out, like.pixels, like=like, bit_depth=16)
    got = read_back(out)
    assert (got["make"], got["model"], got["owner"]) == ("Canon", "Canon EOS R6", OWNER)
    assert got["gps"] == GPS_LAT and got["orientation"] == 1
    assert got["caption"] == CAPTION and got["keywords"] == KEYWORDS
    assert got["label"] == LABEL and got["depth"] == depth
    assert (got["icc"] == icc_profile()) if has_icc else not got["icc"]
    back = read_image(out)
    assert back.pixels.shape == (32, 24, 3) and back.orientation == 1


def test_heic_10_bit_round_trip_keeps_depth(tmp_path: Path) -> None:
    samples = np.round(pixels(16, 24) * 1023).astype(np.uint16)
    src = tmp_path / "phone.heic"
    heif = pillow_heif.from_bytes(mode="RGB;16", size=(24, 16), data=(samples << 6).tobytes())
    heif.info["bit_depth"] = 10
    heif.save(
        src,
        quality=-1,
        chroma=444,
        exif=exif_made_by_exiv2(make="Apple", model="iPhone 15 Pro"),
        icc_profile=icc_profile(),
    )
    like = read_image(src)
    assert like.bit_depth == 10 and like.format == "heif" and like.icc_profile == icc_profile()
    reference = np.asarray(pillow_heif.open_heif(src, convert_hdr_to_8bit=False)) >> 6
    assert np.abs(like.pixels - reference / 1023.0).max() < 1e-6  # exact 10-bit samples, not 8
    write_image(tmp_path / "out.heic", like.pixels, like=like, quality=100)
    got = read_back(tmp_path / "out.heic")
    assert got["depth"] == 10 and got["make"] == "Apple" and got["icc"] == icc_profile()
    error = np.abs(read_image(tmp_path / "out.heic").pixels - like.pixels)
    assert error.mean() < 4 / 1023 and error.max() < 0.03  # lossy HEVC at 10 bits


def test_grey_16_bit_jpeg_xl(tmp_path: Path) -> None:
    grey = pixels()[..., 2]
    write_image(tmp_path / "g.jxl", grey, bit_depth=16, quality=100)
    assert Image.open(tmp_path / "g.jxl").mode == "I;16"
    img = read_image(tmp_path / "g.jxl")
    assert img.bit_depth == 16 and img.channels_in == 1 and np.abs(img.pixels[..., 0] - grey).max() < 1 / 65535 + 1e-6


def test_avif_orientation_from_the_container(tmp_path: Path) -> None:
    upright = (pixels(16, 28) * 255).astype(np.uint8)
    stored = np.ascontiguousarray(np.rot90(upright, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "r.avif", quality=100, subsampling="4:4:4", exif=exif.tobytes())
    img = read_image(tmp_path / "r.avif")
    assert img.orientation == 6 and img.pixels.shape == (16, 28, 3)
    assert np.abs(img.pixels - upright / 255.0).mean() < 0.02
    write_image(tmp_path / "out.avif", img.pixels, like=img)
    out = Image.open(tmp_path / "out.avif")
    assert out.size == (28, 16) and out.getexif().get(0x0112, 1) == 1


def test_xmp_orientation_is_reset(tmp_path: Path) -> None:
    src = jpeg_source(tmp_path)
    image = exiv2.ImageFactory.open(str(src))
    image.readMetadata()
    image.xmpData()["Xmp.tiff.Orientation"] = "8"
    image.writeMetadata()
    like = read_image(src)  # no EXIF orientation: the XMP one is used
    assert like.orientation == 8 and like.pixels.shape == (32, 24, 3)
    write_image(tmp_path / "out.png", like.pixels, like=like)
    assert read_back(tmp_path / "out.png")["xmp_orientation"] == "1"


def test_tiff_storage_tags_are_not_carried(tmp_path: Path) -> None:
    import tifffile

    src = tmp_path / "src.tif"
    tifffile.imwrite(src, (pixels() * 65535).astype(np.uint16), photometric="rgb", metadata=None)
    tag(src)
    like = read_image(src)
    write_image(tmp_path / "out.jpg", like.pixels, like=like)
    exif = Image.open(tmp_path / "out.jpg").getexif()
    assert exif.get(0x010F) == "Canon" and 258 not in exif and 273 not in exif  # no BitsPerSample, StripOffsets


@pytest.mark.parametrize(
    ("ext", "module", "package", "extra"),
    [("heic", "pillow_heif", "pillow-heif", "heif"), ("jxl", "pillow_jxl", "pillow-jxl-plugin", "jxl")],
)
def test_missing_plugin_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str, module: str, package: str, extra: str
) -> None:
    path = tmp_path / f"photo.{ext}"
    write_image(path, pixels())
    monkeypatch.setitem(__import__("sys").modules, module, None)  # as if not installed
    with pytest.raises(ImageReadError) as read_error:
        read_image(path)
    with pytest.raises(ImageWriteError) as write_error:
        write_image(tmp_path / f"new.{ext}", pixels())
    for message in (str(read_error.value), str(write_error.value)):
        assert "\n" not in message and package in message and f"pip install 'bsgd-cli[{extra}]'" in message
    assert str(path) in str(read_error.value) and not (tmp_path / f"new.{ext}").exists()


def test_sniff_brands() -> None:
    from bsgd_cli.io._modern import sniff

    def ftyp(major: bytes, *compatible: bytes) -> bytes:
        body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
        return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body

    assert sniff(ftyp(b"heic", b"mif1", b"heic")) == "heif"
    assert sniff(ftyp(b"mif1", b"avif", b"miaf")) == "avif"
    assert sniff(ftyp(b"avif", b"mif1")) == "avif"
    assert sniff(b"\xff\x0a\x00") == "jxl" and sniff(b"\x00\x00\x00\x0cJXL \r\n\x87\n") == "jxl"
    assert sniff(ftyp(b"isom", b"mp41")) is None and sniff(b"\x89PNG\r\n\x1a\n") is None


def test_denoise_keeps_phone_formats_and_their_metadata(tmp_path: Path, tiny_model_file: Path) -> None:
    """The acceptance folder of the formats work: an iPhone-style HEIC (EXIF + ICC), an AVIF, a JPEG with IPTC and
    XMP, and a 16-bit TIFF with GPS come out denoised, in their own formats, every field intact."""
    import tifffile

    photos = tmp_path / "photos"
    photos.mkdir()
    phone_exif = exif_made_by_exiv2(make="Apple", model="iPhone 15 Pro")
    rgb8 = (pixels() * 255).astype(np.uint8)
    heif = pillow_heif.from_bytes(mode="RGB", size=(32, 24), data=rgb8.tobytes())
    heif.save(photos / "IMG_0001.HEIC", quality=90, exif=phone_exif, icc_profile=icc_profile())
    Image.fromarray(rgb8).save(
        photos / "android.avif",
        quality=90,
        exif=phone_exif,
        icc_profile=icc_profile(),
        xmp=(
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Label="bsgd-label"/></rdf:RDF></x:xmpmeta>'
        ),
    )
    jpeg_source(tmp_path).rename(photos / "agency.jpg")
    tifffile.imwrite(
        photos / "scan.tif",
        (pixels() * 65535).astype(np.uint16),
        photometric="rgb",
        iccprofile=icc_profile(),
        metadata=None,
    )
    tag(photos / "scan.tif")

    result = CliRunner().invoke(
        app,
        [
            "denoise",
            str(photos),
            "-o",
            str(tmp_path / "clean"),
            "--model",
            str(tiny_model_file),
            "--mode",
            "bsn",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    outputs = sorted(p.name for p in (tmp_path / "clean").iterdir())
    assert outputs == ["IMG_0001.HEIC", "agency.jpg", "android.avif", "scan.tif"]
    heic, avif, jpeg, tiff = (
        read_back(tmp_path / "clean" / name) for name in ("IMG_0001.HEIC", "android.avif", "agency.jpg", "scan.tif")
    )
    for phone in (heic, avif):
        assert (phone["make"], phone["model"], phone["gps"], phone["icc"]) == (
            "Apple",
            "iPhone 15 Pro",
            GPS_LAT,
            icc_profile(),
        )
    assert avif["label"] == LABEL and heic["depth"] == 8
    assert (jpeg["caption"], jpeg["keywords"], jpeg["label"], jpeg["owner"]) == (CAPTION, KEYWORDS, LABEL, OWNER)
    assert (tiff["gps"], tiff["depth"], tiff["icc"], tiff["caption"], tiff["owner"]) == (
        GPS_LAT,
        16,
        icc_profile(),
        CAPTION,
        OWNER,
    )
    clean = read_image(tmp_path / "clean" / "scan.tif").pixels
    assert not np.array_equal(clean, read_image(photos / "scan.tif").pixels)  # it was denoised, not copied


def test_metadata_with_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    """exiv2 takes UTF-8 names; such files go through memory, on the way in and out."""
    import os

    folder = os.fsencode(tmp_path)
    src = Path(os.fsdecode(folder + b"/caf\xe9.jpg"))
    jpeg_source(tmp_path).rename(src)
    like = read_image(src)
    assert like.metadata is not None and not like.warnings
    out = Path(os.fsdecode(folder + b"/caf\xe9_out.png"))
    write_image(out, like.pixels, like=like)
    got = read_back(out)
    assert (got["make"], got["caption"], got["label"]) == ("Canon", CAPTION, LABEL)


@pytest.mark.parametrize("ext", ["heic", "avif", "jxl"])
def test_damaged_files_are_one_clear_error(tmp_path: Path, ext: str) -> None:
    good = tmp_path / f"good.{ext}"
    write_image(good, np.random.default_rng(0).random((48, 48, 3)).astype(np.float32))
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 6 // 10])
    with pytest.raises(ImageReadError) as info:
        read_image(cut)
    message = str(info.value)
    assert (
        message.startswith(f"{cut}: cannot be decoded") and "damaged or incomplete" in message and "\n" not in message
    )


def test_cli_prints_the_install_line_whole(
    tmp_path: Path, tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rich would read "[heif]" in the message as markup and drop it; the line must reach the user whole."""
    write_image(tmp_path / "in" / "IMG_0002.heic", pixels())
    monkeypatch.setitem(__import__("sys").modules, "pillow_heif", None)
    result = CliRunner().invoke(
        app,
        [
            "denoise",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(tiny_model_file),
            "--mode",
            "bsn",
            "--quiet",
        ],
    )
    assert result.exit_code == 1
    assert (
        "IMG_0002.heic: reading HEIC/HEIF needs the pillow-heif package; install it with: pip install 'bsgd-cli[heif]'"
        in result.output
    )
