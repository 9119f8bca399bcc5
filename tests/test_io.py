"""Tests for bsgd_cli.io.images: sRGB reading/writing, metadata, atomic writes, bad inputs, discovery."""

from __future__ import annotations

import errno
import io
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, ImageOps

from bsgd_cli.errors import ImageReadError, ImageWriteError
from bsgd_cli.io import (
    ImageData,
    find_images,
    is_image_path,
    is_raw_path,
    read_image,
    write_image,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def smooth(h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    """A smooth, asymmetric float32 (h, w, 3) image in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    img = np.stack([xx / w, yy / h, 0.5 + 0.4 * np.sin((xx + 2 * yy) / 9.0)], axis=-1)
    return np.clip(img + rng.normal(0, 0.002, img.shape), 0, 1).astype(np.float32)


def no_partials(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".partial" in p.name]


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


# --------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("ext", "depth", "tol"),
    [
        ("png", 8, 0.5 / 255),
        ("png", 16, 0.5 / 65535),
        ("tif", 8, 0.5 / 255),
        ("tif", 16, 0.5 / 65535),
        ("tif", 32, 0.0),
    ],
)
def test_lossless_round_trip(tmp_path: Path, ext: str, depth: int, tol: float) -> None:
    px = np.random.default_rng(1).random((23, 31, 3)).astype(np.float32)
    path = tmp_path / f"a.{ext}"
    write_image(path, px, bit_depth=depth)
    img = read_image(path)
    assert img.bit_depth == depth and img.channels_in == 3 and img.alpha is None
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (23, 31, 3)
    assert np.abs(img.pixels - px).max() <= tol + 1e-7
    assert img.format == ("png" if ext == "png" else "tiff") and not img.is_raw
    assert no_partials(tmp_path)


@pytest.mark.parametrize("ext", ["jpg", "webp"])
def test_lossy_round_trip(tmp_path: Path, ext: str) -> None:
    px = smooth()
    write_image(tmp_path / f"a.{ext}", px, bit_depth=16)  # clipped to 8 for these formats
    img = read_image(tmp_path / f"a.{ext}")
    assert img.bit_depth == 8 and img.format in ("jpeg", "webp")
    assert psnr(img.pixels, px) > 35


def test_quantisation_rounds(tmp_path: Path) -> None:
    k = np.arange(0, 250, dtype=np.float32)
    px = np.stack([(k + 0.49) / 255, (k + 0.51) / 255, k / 255], axis=-1)[None].repeat(2, axis=0)
    write_image(tmp_path / "q.png", px, bit_depth=8)
    got = np.asarray(Image.open(tmp_path / "q.png"))[0].astype(int)
    assert (got[:, 0] == k).all() and (got[:, 1] == k + 1).all() and (got[:, 2] == k).all()


def test_bit_depth_follows_like(tmp_path: Path) -> None:
    write_image(tmp_path / "in.png", smooth(), bit_depth=16)
    like = read_image(tmp_path / "in.png")
    write_image(tmp_path / "out.tif", like.pixels, like=like)
    write_image(tmp_path / "out.png", like.pixels, like=like)
    write_image(tmp_path / "out.jpg", like.pixels, like=like)
    assert read_image(tmp_path / "out.tif").bit_depth == 16
    assert read_image(tmp_path / "out.png").bit_depth == 16
    assert read_image(tmp_path / "out.jpg").bit_depth == 8
    float_like = read_image(_float_tiff(tmp_path / "f.tif", smooth()))
    write_image(tmp_path / "f_out.png", float_like.pixels, like=float_like)
    assert float_like.bit_depth == 32 and read_image(tmp_path / "f_out.png").bit_depth == 16


def _float_tiff(path: Path, data: np.ndarray) -> Path:
    import tifffile

    tifffile.imwrite(path, data.astype(np.float32), photometric="rgb" if data.ndim == 3 else "minisblack")
    return path


@pytest.mark.parametrize(("ext", "depth"), [("png", 8), ("png", 16), ("tif", 8), ("tif", 16)])
def test_grey_stays_grey(tmp_path: Path, ext: str, depth: int) -> None:
    g = smooth()[..., 2]
    write_image(tmp_path / f"g.{ext}", g, bit_depth=depth)
    img = read_image(tmp_path / f"g.{ext}")
    assert img.channels_in == 1 and img.is_grey and img.bit_depth == depth
    assert np.array_equal(img.pixels[..., 0], img.pixels[..., 2])
    assert np.abs(img.pixels[..., 1] - g).max() <= 0.5 / (2**depth - 1) + 1e-7
    write_image(tmp_path / f"out.{ext}", img.pixels, like=img)
    back = read_image(tmp_path / f"out.{ext}")
    assert back.channels_in == 1 and back.bit_depth == depth


@pytest.mark.parametrize(("ext", "depth"), [("png", 8), ("png", 16), ("tif", 8), ("tif", 16), ("webp", 8)])
def test_alpha_is_kept(tmp_path: Path, ext: str, depth: int) -> None:
    px = smooth()
    alpha = np.random.default_rng(2).random(px.shape[:2]).astype(np.float32)
    write_image(tmp_path / f"a.{ext}", np.dstack([px, alpha]), bit_depth=depth)
    img = read_image(tmp_path / f"a.{ext}")
    assert img.channels_in == 4 and img.alpha is not None and img.alpha.dtype == np.float32
    assert np.abs(img.alpha - alpha).max() <= 0.5 / (2**depth - 1) + 1e-7
    write_image(tmp_path / f"out.{ext}", img.pixels, like=img)  # alpha re-attached from like
    back = read_image(tmp_path / f"out.{ext}")
    assert back.alpha is not None and np.abs(back.alpha - img.alpha).max() < 1e-6


@pytest.mark.parametrize("depth", [8, 16])
def test_grey_alpha_png(tmp_path: Path, depth: int) -> None:
    g, a = smooth()[..., 0], smooth(seed=3)[..., 1]
    write_image(tmp_path / "src.png", g, bit_depth=depth)
    like = read_image(tmp_path / "src.png")
    like.alpha, like.channels_in = a, 2
    write_image(tmp_path / "la.png", like.pixels, like=like)
    img = read_image(tmp_path / "la.png")
    assert img.channels_in == 2 and img.bit_depth == depth
    assert np.abs(img.alpha - a).max() <= 0.5 / (2**depth - 1) + 1e-7
    assert Image.open(tmp_path / "la.png").mode in ("LA", "RGBA")  # Pillow opens LA16 as RGBA


def test_palette_and_one_bit_png(tmp_path: Path) -> None:
    rgb = (smooth() * 255).astype(np.uint8)
    Image.fromarray(rgb).quantize(16).save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.channels_in == 3 and img.bit_depth == 8 and img.alpha is None
    expected = np.asarray(Image.open(tmp_path / "p.png").convert("RGB")) / 255.0
    assert np.abs(img.pixels - expected).max() < 1e-6
    pal = Image.fromarray(rgb).quantize(8)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    img_t = read_image(tmp_path / "pt.png")
    assert img_t.channels_in == 4 and img_t.alpha is not None and img_t.alpha.min() == 0.0
    bits = np.zeros((10, 12), dtype=bool)
    bits[:, 6:] = True
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    img_b = read_image(tmp_path / "b.png")
    assert img_b.channels_in == 1 and img_b.bit_depth == 8
    assert img_b.pixels[:, :6].max() == 0.0 and img_b.pixels[:, 6:].min() == 1.0


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)  # pure red
    img = read_image(tmp_path / "c.jpg")
    assert img.channels_in == 3 and img.pixels.shape == (12, 16, 3) and img.icc_profile is None
    assert img.pixels[..., 0].mean() > 0.9 and img.pixels[..., 1:].mean() < 0.1
    assert any("CMYK" in w for w in img.warnings)


def test_float_tiff_nan_inf_are_replaced(tmp_path: Path) -> None:
    data = smooth(8, 9)
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 2], data[3, 3, 0] = np.nan, np.inf, -np.inf, 3.0
    img = read_image(_float_tiff(tmp_path / "f.tif", data))
    assert np.isfinite(img.pixels).all() and img.pixels.min() >= 0 and img.pixels.max() <= 1
    assert img.pixels[0, 0, 0] == 0 and img.pixels[1, 1, 1] == 1 and img.pixels[2, 2, 2] == 0
    assert img.pixels[3, 3, 0] == 1 and img.bit_depth == 32
    assert any("NaN" in w for w in img.warnings) and any("clipped" in w for w in img.warnings)


def test_lzw_16bit_tiff_keeps_precision(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    data = (np.random.default_rng(4).random((21, 17, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "lzw.tif"), data[..., ::-1], [cv2.IMWRITE_TIFF_COMPRESSION, 5])
    img = read_image(tmp_path / "lzw.tif")
    assert img.bit_depth == 16 and np.array_equal(np.round(img.pixels * 65535).astype(np.uint16), data)


# ------------------------------------------------------------------------------------ metadata


def _exif_bytes(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "TestMake"
    exif[0x0110] = "TestModel"
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x829A] = 0.01  # ExposureTime lives in the Exif sub-IFD
    return exif.tobytes()


XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="1" tiff:Make="bsgd-test"/>'
    b"</rdf:RDF></x:xmpmeta>"
)


@pytest.mark.parametrize(("ext", "depth"), [("jpg", 8), ("png", 8), ("png", 16), ("tif", 16), ("tif", 32), ("webp", 8)])
def test_metadata_is_carried_over(tmp_path: Path, ext: str, depth: int) -> None:
    icc = srgb_icc()
    src = tmp_path / "src.jpg"
    Image.fromarray((smooth() * 255).astype(np.uint8)).save(
        src, quality=95, exif=_exif_bytes(), icc_profile=icc, xmp=XMP
    )
    like = read_image(src)
    assert like.icc_profile == icc and like.exif and b"bsgd-test" in (like.xmp or b"")
    out = tmp_path / f"out.{ext}"
    write_image(out, like.pixels, like=like, bit_depth=depth)
    back = read_image(out)
    assert back.icc_profile == icc
    assert back.xmp is not None and b"bsgd-test" in back.xmp
    exif = Image.Exif()
    exif.load(back.exif)
    assert exif[0x010F] == "TestMake" and exif[0x0110] == "TestModel" and exif.get(0x0112, 1) == 1
    assert abs(float(exif.get_ifd(0x8769)[0x829A]) - 0.01) < 1e-9


def _stored_for(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The array a camera would store so that applying `orientation` gives `upright`."""
    im = Image.fromarray(upright)
    undo = {
        2: [Image.Transpose.FLIP_LEFT_RIGHT],
        3: [Image.Transpose.ROTATE_180],
        4: [Image.Transpose.FLIP_TOP_BOTTOM],
        5: [Image.Transpose.TRANSPOSE],
        6: [Image.Transpose.ROTATE_90],
        7: [Image.Transpose.TRANSVERSE],
        8: [Image.Transpose.ROTATE_270],
    }.get(orientation, [])
    for op in undo:
        im = im.transpose(op)
    return np.asarray(im)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    upright = (smooth(12, 20) * 255).astype(np.uint8)
    stored = _stored_for(upright, orientation)
    path = tmp_path / "o.png"
    Image.fromarray(stored).save(path, exif=_exif_bytes(orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert np.array_equal(expected, upright)  # the helper above is right
    img = read_image(path)
    assert img.orientation == orientation
    assert np.array_equal(np.round(img.pixels * 255).astype(np.uint8), upright)


def test_orientation_6_jpeg_written_upright(tmp_path: Path) -> None:
    upright = (smooth(30, 50) * 255).astype(np.uint8)  # landscape
    stored = np.rot90(upright, k=1)  # the sensor stored it turned; tag 6 says "rotate 90 clockwise"
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "r.jpg", quality=98, exif=_exif_bytes(6))
    img = read_image(tmp_path / "r.jpg")
    assert img.pixels.shape == (30, 50, 3) and psnr(img.pixels, upright / 255.0) > 35
    write_image(tmp_path / "out.jpg", img.pixels, like=img)
    out = Image.open(tmp_path / "out.jpg")
    assert out.size == (50, 30) and out.getexif().get(0x0112) == 1


# ---------------------------------------------------------------------------------- atomicity


def test_failed_encoder_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(ImageWriteError) as info:
        write_image(tmp_path / "x.jpg", smooth())
    assert "x.jpg" in str(info.value) and "free space or choose another -o folder" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bsgd_cli.io.images as images

    target = tmp_path / "x.tif"
    write_image(target, smooth())
    before = target.read_bytes()

    def half_written(path, *args, **kwargs):
        Path(path).write_bytes(b"II*\x00garbage")
        raise ValueError("encoder exploded")

    monkeypatch.setattr(images, "encode_tiff", half_written)
    with pytest.raises(ImageWriteError, match="encoder exploded"):
        write_image(target, smooth(seed=5))
    assert target.read_bytes() == before and no_partials(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_permission_denied(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ImageWriteError, match="permission denied"):
            write_image(locked / "x.png", smooth())
    finally:
        locked.chmod(0o700)


def test_permission_error_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Image.Image, "save", denied)
    with pytest.raises(ImageWriteError, match="x.png: .*permission denied; choose another -o folder"):
        write_image(tmp_path / "x.png", smooth())
    assert list(tmp_path.iterdir()) == []


def test_write_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match=r"\.bmp"):
        write_image(tmp_path / "x.bmp", smooth())
    with pytest.raises(ValueError, match="floating point"):
        write_image(tmp_path / "x.png", (smooth() * 255).astype(np.uint8))
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageWriteError, match="folder"):
        write_image(tmp_path / "d.png", smooth())
    write_image(tmp_path / "new" / "sub" / "x.png", smooth())  # parents are created
    assert (tmp_path / "new" / "sub" / "x.png").is_file()


def test_written_file_permissions_follow_umask(tmp_path: Path) -> None:
    write_image(tmp_path / "x.png", smooth())
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.png").stat().st_mode & 0o777 == 0o666 & ~mask


# --------------------------------------------------------------------------------- bad inputs


def _png_with_ihdr(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def test_huge_header_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_ihdr(100_000, 100_000))
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "bomb.png" in str(info.value) and "100000x100000" in str(info.value) and "megapixels" in str(info.value)
    assert peak < 5_000_000
    small = tmp_path / "small.png"
    write_image(small, smooth())
    with pytest.raises(ImageReadError, match="megapixels"):
        read_image(small, max_megapixels=0.001)


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    good_png, good_jpg = tmp_path / "g.png", tmp_path / "g.jpg"
    write_image(good_png, np.random.default_rng(0).random((64, 64, 3)).astype(np.float32))
    write_image(good_jpg, smooth(64, 64))
    cases = {
        "empty.png": b"",
        "trunc.png": good_png.read_bytes()[: len(good_png.read_bytes()) // 2],
        "trunc.jpg": good_jpg.read_bytes()[: len(good_jpg.read_bytes()) * 2 // 3],
        "notes.jpg": b"Shopping list:\n- milk\n- photos\n" * 20,
        "trunc.tif": b"",  # filled below
    }
    write_image(tmp_path / "g.tif", smooth())
    cases["trunc.tif"] = (tmp_path / "g.tif").read_bytes()[:-200]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageReadError) as info:
            read_image(tmp_path / name)
        message = str(info.value)
        assert name in message and ";" in message, message
    assert "empty" in str(pytest.raises(ImageReadError, read_image, tmp_path / "empty.png").value)
    assert "not a recognised image" in str(pytest.raises(ImageReadError, read_image, tmp_path / "notes.jpg").value)
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path / "dir.jpg")
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "missing.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_image_data_fields(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", smooth())
    img = read_image(tmp_path / "a.png")
    assert isinstance(img, ImageData) and img.source == tmp_path / "a.png"
    assert img.colour_space == "sRGB" and img.warnings == [] and img.exif is None and img.xmp is None
    assert (img.height, img.width) == (40, 56)


# ---------------------------------------------------------------------------------- discovery


def test_extension_helpers() -> None:
    assert is_image_path("a/B.JPG") and is_image_path("x.tiff") and is_image_path("x.webp")
    assert is_image_path("x.NEF") and is_raw_path("x.cr3") and is_raw_path("x.3fr")
    assert not is_image_path("x.txt") and not is_raw_path("x.jpg")
    assert not is_image_path(".x.jpg.ab12cd34.partial.jpg")


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_find_images(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for rel in [
        "b.jpg",
        "a.PNG",
        "sub/c.tif",
        "sub/deeper/d.nef",
        ".hidden.jpg",
        ".a.jpg.1234.partial.jpg",
        "notes.txt",
    ]:
        _touch(root / rel)
    (root / "folder.jpg").mkdir()
    _touch(root / "folder.jpg" / "inside.webp")
    _touch(root / "out" / "result.jpg")
    os.symlink(root, root / "sub" / "loop")  # a link back to the top

    flat, notes = find_images([root], recursive=False)
    assert [rel.as_posix() for _, rel in flat] == ["a.PNG", "b.jpg"]
    assert any("--recursive" in n for n in notes) and any("not supported" in n for n in notes)

    deep, notes = find_images([root], recursive=True, exclude=root / "out")
    rels = [rel.as_posix() for _, rel in deep]
    assert rels == ["a.PNG", "b.jpg", "folder.jpg/inside.webp", "sub/c.tif", "sub/deeper/d.nef"]
    assert all(file == root / rel for file, rel in deep)
    assert any("symbolic link" in n for n in notes)

    single, notes = find_images([root / "sub" / "c.tif", root / "notes.txt", tmp_path / "nope.jpg"], recursive=False)
    assert single == [(root / "sub" / "c.tif", Path("c.tif"))]
    assert any("notes.txt" in n for n in notes) and any("nope.jpg" in n and "not found" in n for n in notes)


def test_find_images_duplicates_and_collisions(tmp_path: Path) -> None:
    a = _touch(tmp_path / "x" / "p.jpg")
    b = _touch(tmp_path / "y" / "p.jpg")
    pairs, notes = find_images([a, a, b], recursive=False)
    assert pairs == [(a, Path("p.jpg")), (b, Path("p.jpg"))]  # both kept: output planning renames them
    assert notes == []  # (it once said "would collide" and named the file that in fact won)
    pairs, _ = find_images([tmp_path / "x"], recursive=True, exclude=tmp_path / "x")
    assert pairs == []


# ---------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
def test_real_files_read() -> None:
    found, _ = find_images([SHARED_DATA / "noisy" / "nc12", SHARED_DATA / "pairs" / "polyu"], recursive=False)
    assert found
    by_suffix: dict[str, Path] = {}
    for file, _ in found:
        by_suffix.setdefault(file.suffix.lower(), file)
    for file in by_suffix.values():
        img = read_image(file)
        assert (
            img.pixels.dtype == np.float32 and img.pixels.ndim == 3 and 0 <= img.pixels.min() <= img.pixels.max() <= 1
        )
    png16 = SHARED_DATA / "raw" / "halide_bayer_small_grbg_16bit.png"
    if png16.is_file():
        img = read_image(png16)
        assert img.bit_depth == 16 and img.channels_in == 1
        ref = np.asarray(Image.open(png16)).astype(np.float64) / 65535
        assert np.abs(img.pixels[..., 0] - ref).max() < 1e-6


def test_icc_of_wrong_colour_space_not_embedded(tmp_path: Path) -> None:
    grey_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    grey_icc = grey_icc[:16] + b"GRAY" + grey_icc[20:]  # pretend it is a grey profile
    like = ImageData(
        pixels=smooth(), alpha=None, channels_in=1, bit_depth=8, format="png",
        icc_profile=grey_icc, source=tmp_path / "src.png",
    )
    write_image(tmp_path / "g.png", smooth(), like=like)  # grey output: profile kept
    write_image(tmp_path / "c.webp", smooth(), like=like)  # WebP stores RGB: profile dropped
    assert Image.open(tmp_path / "g.png").info.get("icc_profile") == grey_icc
    assert not Image.open(tmp_path / "c.webp").info.get("icc_profile")


def test_pillow_warnings_do_not_escape(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    buf = io.BytesIO()
    Image.fromarray((smooth() * 255).astype(np.uint8)).save(buf, format="PNG")
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    read_image(tmp_path / "a.png")
    assert not [w for w in recwarn if "PIL" in str(w.filename)]


def test_banded_quantisation_is_the_whole_array_formula() -> None:
    """Writing converts a band of rows at a time (peak memory); the samples are those of the formula."""
    from bsgd_cli.io._quantise import QUANTISE_ROWS, quantise_rows

    rng = np.random.default_rng(3)
    x = rng.uniform(-0.2, 1.2, size=(2 * QUANTISE_ROWS + 7, 5, 3)).astype(np.float32)
    x[0, 0] = [np.nan, np.inf, -np.inf]
    whole = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    for top, dtype in ((255.0, np.uint8), (65535.0, np.uint16)):
        expected = np.floor(whole * top + 0.5).astype(dtype)
        got = quantise_rows(x, top, dtype)
        assert got.dtype == dtype and np.array_equal(got, expected)
