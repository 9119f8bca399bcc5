"""Tests for bsgd_cli.io.raw and bsgd_cli.io.dng: RAW development, Bayer access, DNG writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bsgd_cli.errors import ImageReadError
from bsgd_cli.io import read_bayer, read_image, read_raw, write_dng
from bsgd_cli.io.raw import BAYER_PATTERNS, RAW_COLOUR_SPACE
from bsgd_cli.raw.bayer import pack_bayer, unpack_bayer

SHARED_RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
needs_shared = pytest.mark.skipif(not SHARED_RAW.is_dir(), reason="../shared/data is absent")


def mosaic(h: int = 48, w: int = 64, seed: int = 0, black: int = 512, white: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(black, white, (h, w)).astype(np.uint16)


# ------------------------------------------------------------------------------ pack / unpack


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_pack_unpack_are_inverses(pattern: str) -> None:
    m = np.arange(8 * 6, dtype=np.float32).reshape(6, 8)
    packed = pack_bayer(m, pattern)
    assert packed.shape == (3, 4, 4)
    assert np.array_equal(unpack_bayer(packed, pattern), m)
    tile = np.array(list(pattern)).reshape(2, 2)
    for k, colour in enumerate("RGGB"):
        rows, cols = np.nonzero(tile == colour)
        r, c = (rows[0], cols[0]) if k != 2 else (rows[-1], cols[-1])  # G2 = the second green
        assert np.array_equal(packed[..., k], m[r::2, c::2])


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(BAYER_PATTERNS),
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(0, 2**16 - 1),
)
def test_pack_unpack_property(pattern: str, h2: int, w2: int, seed: int) -> None:
    m = np.random.default_rng(seed).integers(0, 65535, (2, h2 * 2, w2 * 2)).astype(np.uint16)
    assert np.array_equal(unpack_bayer(pack_bayer(m, pattern), pattern), m)
    p = np.random.default_rng(seed).random((h2, w2, 4)).astype(np.float32)
    assert np.array_equal(pack_bayer(unpack_bayer(p, pattern), pattern), p)


def test_pack_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="even"):
        pack_bayer(np.zeros((5, 6)), "RGGB")
    with pytest.raises(ValueError, match="pattern"):
        pack_bayer(np.zeros((4, 6)), "RGBG")
    with pytest.raises(ValueError, match="4 channels"):
        unpack_bayer(np.zeros((2, 3, 3)), "RGGB")


# --------------------------------------------------------------------------------------- DNG


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_written_dng_reads_back(tmp_path: Path, pattern: str) -> None:
    m = mosaic()
    path = tmp_path / "t.dng"
    write_dng(path, m, cfa_pattern=pattern, black_level=512, white_level=16000)
    assert [p.name for p in tmp_path.iterdir()] == ["t.dng"]
    bayer = read_bayer(path)
    assert bayer.is_bayer and bayer.cfa_pattern == pattern
    assert np.array_equal(bayer.raw_values, m)
    assert bayer.white_level == 16000 and bayer.black_level == (512.0,) * 4
    expected = np.clip((m.astype(np.float32) - 512) / (16000 - 512), 0, 1)
    assert bayer.mosaic.dtype == np.float32 and np.allclose(bayer.mosaic, expected, atol=1e-6)
    img = read_raw(path)
    assert img.pixels.shape == (48, 64, 3) and img.pixels.dtype == np.float32
    assert img.bit_depth == 16 and img.is_raw and img.format == "raw" and img.colour_space == RAW_COLOUR_SPACE
    assert 0.0 <= img.pixels.min() and img.pixels.max() <= 1.0
    assert read_image(path).is_raw  # dispatch by extension


def test_dng_per_position_black_levels(tmp_path: Path) -> None:
    m = mosaic(seed=1)
    write_dng(tmp_path / "b.dng", m, cfa_pattern="GRBG", black_level=[500, 510, 520, 530], white_level=16000)
    bayer = read_bayer(tmp_path / "b.dng")
    assert bayer.cfa_pattern == "GRBG"
    assert bayer.black_level == (500.0, 510.0, 520.0, 530.0)
    assert np.isclose(bayer.mosaic[0, 1], (m[0, 1] - 510) / (16000 - 510), atol=1e-6)


def test_dng_grey_scene_develops_neutral(tmp_path: Path) -> None:
    # With the default matrix (camera = linear sRGB) and neutral as-shot white, flat grey stays grey.
    m = np.full((32, 32), 512 + (16000 - 512) // 5, dtype=np.uint16)
    write_dng(tmp_path / "g.dng", m, cfa_pattern="RGGB", black_level=512, white_level=16000)
    px = read_raw(tmp_path / "g.dng").pixels[8:-8, 8:-8]
    means = px.reshape(-1, 3).mean(axis=0)
    assert np.ptp(means) < 0.02 and 0.3 < means.mean() < 0.7


def test_write_dng_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint16"):
        write_dng(tmp_path / "x.dng", np.zeros((4, 4), np.float32), cfa_pattern="RGGB", black_level=0, white_level=1)
    with pytest.raises(ValueError, match="CFA"):
        write_dng(tmp_path / "x.dng", np.zeros((4, 4), np.uint16), cfa_pattern="RGBX", black_level=0, white_level=1)
    assert list(tmp_path.iterdir()) == []


@needs_shared
def test_dng_template_copies_camera_tags(tmp_path: Path) -> None:
    import tifffile

    src = SHARED_RAW / "DSC_1339_768x512_rggb.dng"
    bayer = read_bayer(src)
    write_dng(
        tmp_path / "d.dng", bayer.raw_values, cfa_pattern=bayer.cfa_pattern,
        black_level=bayer.black_level, white_level=bayer.white_level, template=src,
    )
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(tmp_path / "d.dng") as b:
        ta, tb = a.pages.first.tags, b.pages.first.tags
        for code in (271, 272, 50721, 50728):
            assert tb[code].value == ta[code].value
    again = read_bayer(tmp_path / "d.dng")
    assert np.array_equal(again.raw_values, bayer.raw_values) and again.cfa_pattern == "RGGB"
    a_img, b_img = read_raw(src).pixels, read_raw(tmp_path / "d.dng").pixels
    assert np.abs(a_img - b_img).mean() < 0.01


# ------------------------------------------------------------------------------- real files


@needs_shared
@pytest.mark.parametrize(
    ("name", "pattern"),
    [("DSC_1339_768x512_rggb.dng", "RGGB"), ("halide_bayer_small_grbg.dng", "GRBG"), ("kodak_dc50.kdc", None)],
)
def test_real_raw_files(name: str, pattern: str | None) -> None:
    path = SHARED_RAW / name
    img = read_raw(path)
    assert img.pixels.ndim == 3 and img.pixels.shape[2] == 3 and img.bit_depth == 16 and img.is_raw
    assert 0.02 < img.pixels.mean() < 0.9
    bayer = read_bayer(path)
    assert bayer.is_bayer and bayer.mosaic.shape == bayer.raw_values.shape
    assert 0.0 <= bayer.mosaic.min() and bayer.mosaic.max() <= 1.0
    if pattern:
        assert bayer.cfa_pattern == pattern
    h, w = (s - s % 2 for s in bayer.mosaic.shape)
    packed = pack_bayer(bayer.mosaic[:h, :w], bayer.cfa_pattern)
    assert np.array_equal(unpack_bayer(packed, bayer.cfa_pattern), bayer.mosaic[:h, :w])


@needs_shared
def test_real_raw_size_limit_and_exif() -> None:
    path = SHARED_RAW / "DSC_1339_768x512_rggb.dng"
    with pytest.raises(ImageReadError, match="megapixels"):
        read_raw(path, max_megapixels=0.1)
    from PIL import Image

    exif = Image.Exif()
    exif.load(read_raw(path).exif)
    assert exif[0x010F] == "Nikon"


def test_bad_raw_files(tmp_path: Path) -> None:
    (tmp_path / "text.nef").write_text("not a raw file\n" * 50)
    (tmp_path / "empty.dng").write_bytes(b"")
    m = mosaic()
    write_dng(tmp_path / "good.dng", m, cfa_pattern="RGGB", black_level=512, white_level=16000)
    (tmp_path / "cut.dng").write_bytes((tmp_path / "good.dng").read_bytes()[:2000])
    for name in ("text.nef", "empty.dng", "cut.dng"):
        with pytest.raises(ImageReadError) as info:
            read_image(tmp_path / name)
        assert name in str(info.value) and ";" in str(info.value)
    with pytest.raises(ImageReadError, match="LibRaw"):
        read_raw(tmp_path / "text.nef")
    with pytest.raises(ImageReadError):
        read_bayer(tmp_path / "text.nef")
