"""RAW-domain training and denoising (bsgd_cli.raw.domain) on small generated DNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bsgd_cli.batch.denoise import tonal_warning
from bsgd_cli.checkpoint import load_model, save_model
from bsgd_cli.cli import app
from bsgd_cli.config import PRESETS, SamplerOverrides, TilingConfig
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.model import BsgdModel
from bsgd_cli.errors import ConfigError, ImageReadError, ModelFileError
from bsgd_cli.io import read_bayer, write_dng
from bsgd_cli.io.dng import XYZ_TO_SRGB, _srational
from bsgd_cli.raw.bayer import NotBayerError, augment_bayer, normalise_planes, pack_bayer, unpack_bayer
from bsgd_cli.raw.domain import planes_to_mosaic, raw_model_config, read_planes, resolve_domain, write_raw_dng
from bsgd_cli.training.data import Augmentation, NoisyImagePool, raw_pool, sample_patches

from .conftest import CPU

runner = CliRunner()
BLACK, WHITE = 512, 16000
XTRANS = "GGRGGBGGBGGRBRGRBGGGBGGRGGRGGBRBGBRG"


def scene_mosaic(pattern: str, h: int = 64, w: int = 80, seed: int = 0, noise: float = 60.0) -> np.ndarray:
    """A smooth colour scene sampled on ``pattern`` plus Gaussian noise, uint16 sensor values."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    colours = {"R": 0.3 + 0.2 * np.sin(xx / 7), "G": 0.4 + 0.2 * np.cos(yy / 9), "B": 0.2 + 0.1 * np.sin((xx + yy) / 5)}
    tile = np.array(list(pattern)).reshape(2, 2)
    signal = np.empty((h, w), dtype=np.float32)
    for r in range(2):
        for c in range(2):
            signal[r::2, c::2] = colours[tile[r, c]][r::2, c::2]
    values = BLACK + signal * (WHITE - BLACK) + rng.normal(0, noise, (h, w))
    return np.clip(np.rint(values), 0, WHITE).astype(np.uint16)


def write_scene(path: Path, pattern: str = "RGGB", seed: int = 0, **kw) -> Path:
    write_dng(path, scene_mosaic(pattern, seed=seed, **kw), cfa_pattern=pattern, black_level=BLACK, white_level=WHITE)
    return path


def write_xtrans(path: Path) -> Path:
    """A DNG with a 6x6 X-Trans colour filter (LibRaw reads its mosaic; the RAW domain must refuse it)."""
    import tifffile

    mosaic = np.random.default_rng(0).integers(600, 4000, (48, 48)).astype(np.uint16)
    tags = [
        (33421, 3, 2, (6, 6), True), (33422, 1, 36, bytes("RGB".index(c) for c in XTRANS), True),
        (50706, 1, 4, b"\x01\x04\x00\x00", True), (50708, 2, 0, "bsgd", True), (50710, 1, 3, b"\x00\x01\x02", True),
        (50711, 3, 1, 1, True), (50714, 5, 1, (512, 1), True), (50717, 4, 1, 16000, True),
        (50721, 10, 9, _srational(XYZ_TO_SRGB.ravel()), True), (50728, 5, 3, (1, 1, 1, 1, 1, 1), True),
        (50778, 3, 1, 21, True),
    ]
    tifffile.imwrite(path, mosaic, byteorder="<", photometric=32803, subfiletype=0, metadata=None, extratags=tags)
    return path


@pytest.fixture(scope="module")
def raw_model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = BsgdModel(raw_model_config(PRESETS["tiny"]))
    path = tmp_path_factory.mktemp("raw_models") / "raw_tiny.safetensors"
    save_model(path, model, info={"note": "test raw model"})
    return path


@pytest.fixture
def raw_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "raws"
    folder.mkdir()
    write_scene(folder / "a.dng", "RGGB", seed=1)
    write_scene(folder / "b.dng", "GRBG", seed=2)
    return folder


# ----------------------------------------------------------------------------------------- config


def test_raw_model_config_and_domain_checks(raw_model_file: Path) -> None:
    config = raw_model_config(PRESETS["tiny"])
    assert config.domain == "raw" and config.channels == 4
    assert config.blind_spot.pd_train == 1 and config.blind_spot.pd_infer == 1
    assert raw_model_config(PRESETS["tiny"], pd_train=2).blind_spot.pd_train == 2
    assert resolve_domain(config, None) == "raw"
    assert resolve_domain(PRESETS["tiny"], None) == "srgb"
    with pytest.raises(ConfigError, match="needs a RAW-domain model"):
        resolve_domain(PRESETS["tiny"], "raw")
    with pytest.raises(ConfigError, match="RAW-domain model"):
        resolve_domain(config, "srgb")
    with pytest.raises(ConfigError, match="dng"):
        resolve_domain(PRESETS["tiny"], None, "dng")
    assert load_model(raw_model_file).model.config.channels == 4


# ---------------------------------------------------------------------------------- planes, mosaic


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG"])
def test_planes_round_trip_and_levels(tmp_path: Path, pattern: str) -> None:
    mosaic = scene_mosaic(pattern)
    mosaic[0, :4] = [0, 100, BLACK, WHITE]  # below black is kept negative, white is 1
    path = tmp_path / "s.dng"
    write_dng(path, mosaic, cfa_pattern=pattern, black_level=BLACK, white_level=WHITE)
    raw_input = read_planes(path)
    planes = raw_input.pixels
    assert planes.shape == (32, 40, 4) and planes.dtype == np.float32
    expected = pack_bayer((mosaic.astype(np.float32) - BLACK) / (WHITE - BLACK), pattern)
    assert np.allclose(planes, np.minimum(expected, 1.0), atol=1e-6)
    assert planes.min() < 0 and planes.max() == 1.0
    # R is the first plane whatever the pattern
    r_row, r_col = divmod(pattern.index("R"), 2)
    assert np.array_equal(planes[..., 0], expected[..., 0]) and np.allclose(
        expected[..., 0], (mosaic[r_row::2, r_col::2].astype(np.float32) - BLACK) / (WHITE - BLACK)
    )
    back = planes_to_mosaic(planes, raw_input)
    fine = mosaic >= BLACK
    assert back.dtype == np.uint16 and np.array_equal(back[fine], mosaic[fine])
    assert np.all(back[~fine] == BLACK)  # denoised values never go below the black level


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG"])
def test_pack_denoise_unpack_dng_round_trip(tmp_path: Path, raw_model_file: Path, pattern: str) -> None:
    source = write_scene(tmp_path / "in.dng", pattern)
    raw_input = read_planes(source)
    loaded = load_model(raw_model_file)
    denoised = denoise_array(
        loaded, raw_input.pixels, sampler=SamplerOverrides(mode="bsn"), tiling=TilingConfig(tile=64), runtime=CPU
    )
    assert denoised.shape == raw_input.pixels.shape
    mosaic = planes_to_mosaic(denoised, raw_input)
    out = tmp_path / "out.dng"
    write_raw_dng(out, mosaic, raw_input)
    again = read_bayer(out)
    assert again.cfa_pattern == pattern and again.is_bayer
    assert again.white_level == WHITE and again.black_level == (float(BLACK),) * 4
    assert np.array_equal(again.raw_values, mosaic)
    assert np.allclose(normalise_planes(again), np.clip(denoised, 0, 1), atol=1e-4)


def test_bsgd_mode_on_planes(tmp_path: Path, raw_model_file: Path) -> None:
    raw_input = read_planes(write_scene(tmp_path / "in.dng", "RGGB"))
    out = denoise_array(
        load_model(raw_model_file),
        raw_input.pixels,
        sampler=SamplerOverrides(mode="bsgd", steps=1, runs=1),
        tiling=TilingConfig(tile=64),
        runtime=CPU,
    )
    assert out.shape == raw_input.pixels.shape and np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_odd_sized_mosaic_keeps_last_row(tmp_path: Path) -> None:
    mosaic = scene_mosaic("RGGB", h=33, w=41)
    path = tmp_path / "odd.dng"
    write_dng(path, mosaic, cfa_pattern="RGGB", black_level=BLACK, white_level=WHITE)
    raw_input = read_planes(path)
    assert raw_input.pixels.shape == (16, 20, 4) and raw_input.warnings
    back = planes_to_mosaic(np.full_like(raw_input.pixels, 0.5), raw_input)
    assert (
        back.shape == (33, 41) and np.array_equal(back[-1], mosaic[-1]) and np.array_equal(back[:, -1], mosaic[:, -1])
    )


def test_non_bayer_and_non_raw_are_refused(tmp_path: Path) -> None:
    xtrans = write_xtrans(tmp_path / "xt.dng")
    assert not read_bayer(xtrans).is_bayer
    with pytest.raises(NotBayerError, match="X-Trans"):
        read_planes(xtrans)
    png = tmp_path / "a.png"
    from bsgd_cli.io import write_image

    write_image(png, np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ImageReadError, match="not a camera RAW file"):
        read_planes(png)


# ------------------------------------------------------------------------------- training patches


@pytest.mark.parametrize("code", range(8))
def test_augment_bayer_keeps_the_colour_layout(code: int) -> None:
    size = 5
    rng = np.random.default_rng(code)
    mosaic = rng.random((2 * size + 2, 2 * size + 2)).astype(np.float32)
    packed = pack_bayer(mosaic, "RGGB")
    out = augment_bayer(packed, code, size)
    assert out.shape == (size, size, 4)
    flipped = mosaic[:, ::-1] if code & 1 else mosaic
    flipped = flipped[::-1] if code & 2 else flipped
    dy, dx = (code >> 1) & 1, code & 1
    expected = flipped[dy : dy + 2 * size, dx : dx + 2 * size]
    assert np.array_equal(unpack_bayer(out, "RGGB"), expected)
    # every output R sample was an input R sample (and so on for each plane)
    for k in range(4):
        assert set(out[..., k].ravel()) <= set(packed[..., k].ravel())


def test_sample_patches_with_four_channel_bayer_pool() -> None:
    images = [np.random.default_rng(i).random((20, 24, 4)).astype(np.float32) for i in range(2)]
    bayer = Augmentation(augment_bayer, margin=1)
    pool = NoisyImagePool(paths=[Path("a"), Path("b")], reader=lambda p: images[0], augmentation=bayer)
    for i, image in enumerate(images):
        pool._cache[i], pool._sizes[i] = image, image.shape[:2]
    patches = sample_patches(pool, np.random.default_rng(0), 6, 19)
    assert patches.shape == (6, 4, 19, 19) and patches.dtype == np.float32
    assert pool._subset([1]).augmentation is bayer


def test_training_pool_skips_non_bayer_and_non_raw(raw_folder: Path) -> None:
    write_xtrans(raw_folder / "xt.dng")
    from bsgd_cli.io import write_image

    write_image(raw_folder / "photo.png", np.zeros((64, 64, 3), np.float32))
    pool = raw_pool(raw_folder, patch=16)
    assert len(pool) == 2 and pool.augmentation is not None and pool.augmentation.margin == 1
    assert any("X-Trans" in line for line in pool.skipped)
    assert any("not a camera RAW file" in line for line in pool.skipped)


# ------------------------------------------------------------------------------------------- CLI


def test_cli_train_raw_for_three_steps(raw_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--noisy-dir", str(raw_folder), "-o", str(out), "--domain", "raw", "--preset", "tiny",
        "--steps", "3", "--batch", "2", "--patch", "16", "--precision", "fp32", "--device", "cpu", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    loaded = load_model(out / "model.safetensors")
    config = loaded.model.config
    assert config.domain == "raw" and config.channels == 4 and config.blind_spot.pd_train == 1
    assert config.blind_spot.pd_infer == 1


def test_cli_train_raw_pd_override_and_val_pairs_refused(raw_folder: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, [
        "train", "--noisy-dir", str(raw_folder), "-o", str(tmp_path / "r2"), "--domain", "raw", "--preset", "tiny",
        "--steps", "1", "--batch", "1", "--patch", "16", "--pd-train", "2", "--pd-infer", "2", "--precision", "fp32",
        "--device", "cpu", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "r2" / "model.safetensors").model.config.blind_spot.pd_train == 2
    result = runner.invoke(app, [
        "train", "--noisy-dir", str(raw_folder), "-o", str(tmp_path / "r3"), "--domain", "raw", "--preset", "tiny",
        "--steps", "1", "--patch", "16", "--val-pairs", str(raw_folder), "--quiet",
    ])
    assert result.exit_code == 2 and "RAW-domain" in result.output


def _denoise(args: list[str], model: Path):
    return runner.invoke(
        app, ["denoise", *args, "--model", str(model), "--mode", "bsn", "--device", "cpu", "--quiet", "--json"]
    )


def test_cli_denoise_raw_to_tiff_and_dng(raw_folder: Path, tmp_path: Path, raw_model_file: Path) -> None:
    import rawpy
    import tifffile

    out = tmp_path / "clean"
    result = _denoise([str(raw_folder), "-o", str(out), "--domain", "raw"], raw_model_file)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["done"] == 2
    for name in ("a", "b"):
        pixels = tifffile.imread(out / f"{name}.tif")
        assert pixels.dtype == np.uint16 and pixels.shape == (64, 80, 3)
    result = _denoise(
        [str(raw_folder), "-o", str(tmp_path / "dng"), "--raw-output", "dng", "--compare"], raw_model_file
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dng" / "a_compare.png").is_file()
    for name, pattern in (("a", "RGGB"), ("b", "GRBG")):
        path = tmp_path / "dng" / f"{name}.dng"
        assert read_bayer(path).cfa_pattern == pattern
        with rawpy.imread(str(path)) as raw:
            assert raw.postprocess().shape == (64, 80, 3)


def test_cli_denoise_raw_errors(raw_folder: Path, tmp_path: Path, raw_model_file: Path, tiny_model_file: Path) -> None:
    result = _denoise([str(raw_folder), "-o", str(tmp_path / "o1"), "--domain", "raw"], tiny_model_file)
    assert result.exit_code == 2 and "needs a RAW-domain model" in result.output
    result = _denoise([str(raw_folder), "-o", str(tmp_path / "o2"), "--domain", "srgb"], raw_model_file)
    assert result.exit_code == 2 and "RAW-domain model" in result.output
    result = _denoise([str(raw_folder), "-o", str(tmp_path / "o3"), "--raw-output", "dng"], tiny_model_file)
    assert result.exit_code == 2 and "--domain raw" in result.output
    from bsgd_cli.io import write_image

    write_image(raw_folder / "photo.png", np.zeros((16, 16, 3), np.float32))
    result = _denoise([str(raw_folder / "photo.png"), "-o", str(tmp_path / "o4")], raw_model_file)
    assert result.exit_code == 1 and "not a camera RAW file" in result.output


def test_cli_denoise_non_bayer_falls_back_to_srgb(
    tmp_path: Path, raw_model_file: Path, tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bsgd_cli.checkpoint
    import bsgd_cli.raw.domain as domain
    from bsgd_cli.io import ImageData

    folder = tmp_path / "xt"
    folder.mkdir()
    xtrans = write_xtrans(folder / "xt.dng")
    developed = ImageData(pixels=np.full((48, 48, 3), 0.4, np.float32), alpha=None, channels_in=3, bit_depth=16,
                          format="raw", icc_profile=None, source=xtrans, is_raw=True)
    monkeypatch.setattr(domain, "read_raw", lambda path, **kw: developed)  # LibRaw cannot develop this fake
    real_load = bsgd_cli.checkpoint.load_model

    def no_default(name=None, **kw):
        if name is None:
            raise ModelFileError("model 'default' not found")
        return real_load(name, **kw)

    monkeypatch.setattr(bsgd_cli.checkpoint, "load_model", no_default)
    monkeypatch.setattr(domain, "load_model", no_default)  # the sRGB fallback's
    result = _denoise([str(folder), "-o", str(tmp_path / "o1"), "--raw-output", "dng"], raw_model_file)
    assert result.exit_code == 1 and "not a Bayer mosaic" in result.output
    monkeypatch.setattr(domain, "load_model", lambda name=None, **kw: real_load(name or tiny_model_file, **kw))
    result = _denoise([str(folder), "-o", str(tmp_path / "o2"), "--raw-output", "dng"], raw_model_file)
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)["files"][0]
    assert entry["output"].endswith("xt.tif") and (tmp_path / "o2" / "xt.tif").is_file()
    assert any("Bayer" in note for note in entry["warnings"])


# ------------------------------------------------------------------------------------ tonal check


def test_tonal_warning() -> None:
    rng = np.random.default_rng(0)
    noisy = np.clip(0.4 + rng.normal(0, 0.05, (32, 32, 3)), 0, 1).astype(np.float32)
    assert tonal_warning(noisy, np.full_like(noisy, float(noisy.mean()))) is None
    message = tonal_warning(noisy, noisy * 0.9)
    assert message is not None and message.startswith("output is darker than input by 10.0%")
    planes = np.full((8, 8, 4), 0.05, np.float32)
    shifted = planes.copy()
    shifted[..., 3] *= 1.05
    message = tonal_warning(planes, shifted)
    assert message is not None and "brighter" in message and "channel B" in message
    # near-black channels: an absolute change below the floor is not flagged
    dark = np.full((8, 8, 3), 0.0005, np.float32)
    assert tonal_warning(dark, dark * 1.5) is None


def test_cli_prints_tonal_warning(tmp_path: Path) -> None:
    from bsgd_cli.io import write_image

    folder = tmp_path / "in"
    write_image(folder / "x.png", np.full((32, 32, 3), 0.6, np.float32))
    torch.manual_seed(0)
    model = BsgdModel(PRESETS["tiny"])
    with torch.no_grad():  # a blind-spot head biased downwards: every output is darker
        model.blind_spot_net.head[-1].bias.fill_(-0.2)
    dark = tmp_path / "dark.safetensors"
    save_model(dark, model)
    # --no-wiener: the Wiener step keeps the input's block means, so it would correct this bias.
    result = runner.invoke(app, ["denoise", str(folder), "-o", str(tmp_path / "out"), "--model", str(dark),
                                 "--mode", "bsn", "--no-wiener", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and "darker than input by" in result.output
    result = runner.invoke(app, ["denoise", str(folder), "-o", str(tmp_path / "refined"), "--model", str(dark),
                                 "--mode", "bsn", "--wiener", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "darker than input" not in result.output
