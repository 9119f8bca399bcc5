"""Benchmark data sets (fixtures written in each official format), runner, reports and submission files."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from bsgd_cli.benchmark import (
    available_baselines,
    format_results_table,
    load_dataset,
    nlm_denoise,
    run_benchmark,
    write_dnd_submission,
    write_sidd_submission,
)
from bsgd_cli.benchmark.baselines import estimate_noise_sigma
from bsgd_cli.benchmark.metrics import to_uint8
from bsgd_cli.benchmark.runner import PeakRss
from bsgd_cli.errors import BsgdError, DatasetError, ImageReadError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MATLAB_73_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."


def scene(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) uint8 HxWx3: smooth colour gradients plus Gaussian noise of sigma 10/255."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    clean = np.stack([0.2 + 0.6 * yy, 0.5 + 0.3 * np.sin(6 * xx), 0.3 + 0.4 * xx * yy], axis=2)
    noisy = clean + rng.normal(0, 10 / 255, clean.shape)
    return to_uint8(clean), to_uint8(noisy)


def box_blur(image: np.ndarray) -> np.ndarray:
    """A fake method: 3x3 box blur with edge padding, float32 HxWx3 in [0, 1]."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    height, width = image.shape[:2]
    shifted = [padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
    return np.mean(shifted, axis=0).astype(np.float32)


def save_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def psnr_by_hand(clean: np.ndarray, test: np.ndarray) -> float:
    mse = np.mean((clean.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


# ------------------------------------------------------------------------------------------- fixtures
def make_sidd(folder: Path, *, benchmark: bool = False, shape=(2, 2, 64, 64, 3)) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    pairs = [scene(shape[2], shape[3], seed) for seed in range(shape[0] * shape[1])]
    clean = np.stack([c for c, _ in pairs]).reshape(shape)
    noisy = np.stack([n for _, n in pairs]).reshape(shape)
    if benchmark:
        sio.savemat(folder / "BenchmarkNoisyBlocksSrgb.mat", {"BenchmarkNoisyBlocksSrgb": noisy})
    else:
        sio.savemat(folder / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": noisy})
        sio.savemat(folder / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": clean})
    return noisy, clean


def dnd_boxes() -> np.ndarray:
    """20 boxes [y1, x1, y2, x2], 1-based inclusive, 8 rows x 12 columns each (MATLAB 20x4)."""
    k = np.arange(20)
    return np.stack([1 + 2 * k, 1 + k, 8 + 2 * k, 12 + k], axis=1).astype(np.float64)


def _matlab73(path: Path) -> h5py.File:
    """An HDF5 file laid out like MATLAB 7.3 saves it: a 512-byte user block for the text header."""
    return h5py.File(path, "w", userblock_size=512)


def _stamp_header(path: Path) -> None:
    with open(path, "r+b") as raw:
        raw.write(MATLAB_73_HEADER.ljust(128, b" "))


def make_dnd(root: Path, images: int = 2) -> list[np.ndarray]:
    """DND layout: info.mat with object-referenced boxes, images_srgb/NNNN.mat stored transposed (3, W, H)."""
    (root / "images_srgb").mkdir(parents=True)
    noisy_images = []
    with _matlab73(root / "info.mat") as info_file:
        refs = []
        for index in range(images):
            target = info_file.create_dataset(f"#refs#/b{index}", data=dnd_boxes().T)  # MATLAB 20x4 -> (4, 20)
            target.attrs["MATLAB_class"] = np.bytes_("double")
            refs.append(target.ref)
        info = info_file.create_group("info")
        info.attrs["MATLAB_class"] = np.bytes_("struct")
        info.create_dataset("boundingboxes", data=np.array(refs, dtype=h5py.ref_dtype).reshape(1, images))
    _stamp_header(root / "info.mat")
    for index in range(images):
        _, noisy = scene(48, 40, 100 + index)
        image = noisy.astype(np.float64) / 255.0
        noisy_images.append(image)
        path = root / "images_srgb" / f"{index + 1:04d}.mat"
        with _matlab73(path) as handle:
            handle.create_dataset("InoisySRGB", data=image.T)  # MATLAB HxWx3 is stored (3, W, H)
        _stamp_header(path)
    return noisy_images


def make_pair_folder(root: Path, noisy_names: list[str], clean_names: list[str]) -> list[tuple[np.ndarray, ...]]:
    pairs = []
    for seed, (noisy_name, clean_name) in enumerate(zip(noisy_names, clean_names, strict=True)):
        clean, noisy = scene(32, 36, seed)
        save_png(root / noisy_name, noisy)
        save_png(root / clean_name, clean)
        pairs.append((noisy, clean))
    return pairs


# ----------------------------------------------------------------------------------------- data sets
def test_sidd_validation_blocks_with_reference(tmp_path: Path) -> None:
    noisy, clean = make_sidd(tmp_path)
    dataset = load_dataset("sidd", tmp_path, limit=None)
    samples = list(dataset)
    assert dataset.has_reference and dataset.submission is None and len(dataset) == 4
    assert [s.name for s in samples] == ["00_00", "00_01", "01_00", "01_01"]
    assert np.array_equal(samples[2].noisy, noisy[1, 0]) and np.array_equal(samples[2].clean, clean[1, 0])
    single = load_dataset("sidd", tmp_path / "ValidationNoisyBlocksSrgb.mat", limit=3)
    assert len(single) == 3 and len(list(single)) == 3


def test_sidd_benchmark_is_submission_mode(tmp_path: Path) -> None:
    make_sidd(tmp_path, benchmark=True)
    dataset = load_dataset("sidd", tmp_path, limit=None)
    assert not dataset.has_reference and dataset.submission == "sidd"
    assert all(s.clean is None and s.noisy.shape == (64, 64, 3) for s in dataset)


@pytest.mark.parametrize("problem", ["wrong key", "wrong shape", "wrong dtype", "missing gt", "empty folder"])
def test_sidd_layout_errors_name_the_file(tmp_path: Path, problem: str) -> None:
    blocks = np.zeros((2, 2, 8, 8, 3), np.uint8)
    noisy_file = tmp_path / "ValidationNoisyBlocksSrgb.mat"
    variables = {
        "wrong key": {"noisy": blocks},
        "wrong shape": {"ValidationNoisyBlocksSrgb": blocks[0]},
        "wrong dtype": {"ValidationNoisyBlocksSrgb": blocks.astype(np.float32)},
        "missing gt": {"ValidationNoisyBlocksSrgb": blocks},
    }
    if problem != "empty folder":
        sio.savemat(noisy_file, variables[problem])
    if problem in ("wrong key", "wrong shape", "wrong dtype"):
        sio.savemat(tmp_path / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": blocks})
    expected = {"missing gt": "ValidationGtBlocksSrgb.mat", "empty folder": str(tmp_path)}.get(problem, noisy_file.name)
    with pytest.raises(DatasetError, match=expected):
        load_dataset("sidd", tmp_path, limit=None)


def test_dnd_crops_follow_the_official_indexing(tmp_path: Path) -> None:
    images = make_dnd(tmp_path)
    dataset = load_dataset("dnd", tmp_path, limit=None)
    samples = list(dataset)
    assert len(dataset) == len(samples) == 40 and dataset.submission == "dnd" and not dataset.has_reference
    boxes = dnd_boxes().astype(int)
    for sample in (samples[0], samples[7], samples[39]):
        image_index, crop_index = sample.meta["image_index"], sample.meta["crop_index"]
        y1, x1, y2, x2 = boxes[crop_index - 1]
        expected = images[image_index - 1][y1 - 1 : y2, x1 - 1 : x2]  # dnd_denoise.py: boxes[k,0]-1 : boxes[k,2]
        assert sample.name == f"{image_index:04d}_{crop_index:02d}"
        assert sample.noisy.shape == (8, 12, 3) and sample.noisy.dtype == np.float32
        np.testing.assert_allclose(sample.noisy, expected, atol=1e-7)


def test_dnd_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="info.mat"):
        load_dataset("dnd", tmp_path, limit=None)
    make_dnd(tmp_path)
    (tmp_path / "images_srgb" / "0002.mat").unlink()
    with pytest.raises(DatasetError, match="0002.mat"):
        load_dataset("dnd", tmp_path, limit=None)
    with h5py.File(tmp_path / "images_srgb" / "0002.mat", "w") as handle:
        handle.create_dataset("Inoisy", data=np.zeros((3, 40, 48)))
    with pytest.raises(DatasetError, match="0002.mat"):
        list(load_dataset("dnd", tmp_path, limit=None))


@pytest.mark.parametrize(
    ("kind", "files"),
    [
        ("pairs", (["noisy/01_noise.png", "noisy/02_noise.png"], ["clean/01_gt.png", "clean/02_gt.png"])),
        ("pairs", (["noisy/a.png", "noisy/b.png"], ["clean/a.png", "clean/b.png"])),
        ("pairs", (["a_noisy.png", "b_n.png"], ["a_clean.png", "b_c.png"])),
        ("polyu", (["Canon_x_1_real.JPG", "Sony_y_2_real.JPG"], ["Canon_x_1_mean.JPG", "Sony_y_2_mean.JPG"])),
        ("cc", (["5dmark3_iso3200_1_real.png"], ["5dmark3_iso3200_1_mean.png"])),
        ("sidd-medium", (["Data/0001_S6/NOISY_SRGB_010.PNG", "Data/0001_S6/NOISY_SRGB_011.PNG"],
                         ["Data/0001_S6/GT_SRGB_010.PNG", "Data/0001_S6/GT_SRGB_011.PNG"])),
    ],
)
def test_paired_folders_load_lazily_with_references(tmp_path: Path, kind: str, files: tuple) -> None:
    pairs = make_pair_folder(tmp_path, *files)
    (tmp_path / "LICENSE.txt").write_text("not an image")
    dataset = load_dataset(kind, tmp_path, limit=None)
    assert dataset.has_reference and len(dataset) == len(pairs)
    for sample, (noisy, clean) in zip(dataset, pairs, strict=True):
        assert sample.clean is not None and sample.noisy.dtype == np.uint8 and sample.noisy.shape == noisy.shape
        if kind != "polyu":  # PolyU is JPEG: lossy
            assert np.array_equal(sample.noisy, noisy) and np.array_equal(sample.clean, clean)


@pytest.mark.parametrize(
    ("kind", "noisy_names", "clean_names", "stray"),
    [
        ("pairs", ["noisy/01_noise.png", "noisy/02_noise.png"], ["clean/01_gt.png", "clean/03_gt.png"], "02_noise"),
        ("polyu", ["a_real.JPG", "b_real.JPG"], ["a_mean.JPG", "b_gt.JPG"], "b_gt.JPG"),
        ("sidd-medium", ["Data/s1/NOISY_SRGB_010.PNG", "Data/s1/NOISY_SRGB_011.PNG"],
         ["Data/s1/GT_SRGB_010.PNG", "Data/s2/GT_SRGB_011.PNG"], "NOISY_SRGB_011.PNG"),
    ],
)
def test_unmatched_files_are_listed(tmp_path: Path, kind: str, noisy_names, clean_names, stray: str) -> None:
    make_pair_folder(tmp_path, noisy_names, clean_names)
    with pytest.raises(DatasetError, match=stray):
        load_dataset(kind, tmp_path, limit=None)


def test_sidd_pair_noisy_folder_and_their_errors(tmp_path: Path) -> None:
    clean, noisy = scene(24, 20, 3)
    sio.savemat(tmp_path / "noisy.mat", {"im_noisy": noisy})
    sio.savemat(tmp_path / "gt.mat", {"im_gt": clean})
    (sample,) = list(load_dataset("sidd-pair", tmp_path, limit=None))
    assert np.array_equal(sample.noisy, noisy) and np.array_equal(sample.clean, clean)
    sio.savemat(tmp_path / "gt.mat", {"gt": clean})
    with pytest.raises(DatasetError, match="gt.mat"):
        load_dataset("sidd-pair", tmp_path, limit=None)
    with pytest.raises(DatasetError, match="no images"):
        load_dataset("noisy", tmp_path, limit=None)
    with pytest.raises(DatasetError, match="missing-folder"):
        load_dataset("pairs", tmp_path / "missing-folder", limit=None)


def test_images_are_read_only_when_iterated_and_16_bit_becomes_float(tmp_path: Path) -> None:
    import cv2

    deep = (np.random.default_rng(0).random((10, 12, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep[..., ::-1])
    (tmp_path / "zz_broken.png").write_bytes(b"not a png")
    dataset = load_dataset("noisy", tmp_path, limit=None)  # no image is decoded yet
    samples = iter(dataset)
    first = next(samples)
    assert first.noisy.dtype == np.float32 and first.clean is None
    np.testing.assert_allclose(first.noisy, deep / 65535.0, atol=1e-6)
    with pytest.raises(ImageReadError, match="zz_broken.png"):
        next(samples)


# ------------------------------------------------------------------------------------------------ runner
def test_runner_measures_and_writes_results(tmp_path: Path) -> None:
    pairs = make_pair_folder(tmp_path / "data", [f"noisy/{i}.png" for i in "abc"], [f"clean/{i}.png" for i in "abc"])
    events: list[str] = []
    result = run_benchmark(load_dataset("pairs", tmp_path / "data", limit=None), {"blur": box_blur},
                           out_dir=tmp_path / "out", crops=2, progress=lambda event: events.append(event.kind),
                           environment={"seed": 7, "model_hash": "abc123"})
    noisy_rows = [row for row in result.per_image if row["method"] == "noisy"]
    for row, (noisy, clean) in zip(noisy_rows, pairs, strict=True):
        assert row["psnr"] == pytest.approx(psnr_by_hand(clean, noisy), abs=1e-9)
    blurred = [r for r in result.results if r["method"] == "blur"][0]
    assert blurred["psnr"] > result.results[-1]["psnr"] and result.results[-1]["method"] == "noisy"
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["environment"]["seed"] == 7 and document["environment"]["model_hash"] == "abc123"
    assert {"python", "versions", "platform", "cpu_count"} <= set(document["environment"])
    for summary in document["results"]:
        assert {"dataset", "method", "psnr", "ssim", "ssim_gaussian", "seconds_per_mp", "peak_rss_mb",
                "images"} <= set(summary)
        assert summary["images"] == 3 and summary["peak_rss_mb"] > 1
    assert len(document["per_image"]) == 6
    for name in ("report.md", "report.html", "psnr.png", "speed.png", "crops/a.png", "crops/b.png"):
        assert (tmp_path / "out" / name).is_file(), name
    assert not (tmp_path / "out" / "crops" / "c.png").exists()
    assert "](psnr.png)" in (tmp_path / "out" / "report.md").read_text()
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<svg" in page and "crops/a.png" in page
    assert Image.open(tmp_path / "out" / "crops" / "a.png").size[0] == 3 * 32 + 2 * 4  # noisy | blur | clean
    assert events[0] == "start" and events[-1] == "done" and events.count("sample_done") == 3
    table = format_results_table(result)
    assert table[0][2] == "PSNR (dB)" and len(table) == 3
    assert table[1][2] == f"{blurred['psnr']:.2f}" and len(table[1][3].split(".")[1]) == 4
    assert len(table[1][5].split(".")[1]) == 3


def test_runner_can_leave_ssim_out(tmp_path: Path) -> None:
    pairs = make_pair_folder(tmp_path / "data", ["noisy/a.png"], ["clean/a.png"])
    result = run_benchmark(load_dataset("pairs", tmp_path / "data", limit=None), {"blur": box_blur},
                           out_dir=tmp_path / "out", crops=0, ssim=False)
    for row in result.results:
        assert row["psnr"] is not None and row["ssim"] is None and row["ssim_gaussian"] is None
    noisy = next(row for row in result.per_image if row["method"] == "noisy")
    assert noisy["psnr"] == pytest.approx(psnr_by_hand(pairs[0][1], pairs[0][0]), abs=1e-9)
    assert format_results_table(result)[1][3] == "-"


def test_runner_writes_a_sidd_submission(tmp_path: Path) -> None:
    noisy, _ = make_sidd(tmp_path / "sidd", benchmark=True)
    result = run_benchmark(load_dataset("sidd", tmp_path / "sidd", limit=None), {"blur": box_blur},
                           out_dir=tmp_path / "out", crops=1)
    assert all(row["psnr"] is None for row in result.per_image) and not result.notes
    loaded = sio.loadmat(tmp_path / "out" / "submission" / "blur" / "SubmitSrgb.mat")
    cell = loaded["DenoisedBlocksSrgb"]
    assert cell.shape == (2, 2) and cell.dtype == object
    assert cell[1, 0].dtype == np.uint8 and cell[1, 0].shape == (64, 64, 3)
    assert np.array_equal(cell[1, 0], to_uint8(box_blur(noisy[1, 0] / np.float32(255))))
    assert loaded["TimeMPSrgb"].shape == (1, 1) and loaded["TimeMPSrgb"][0, 0] > 0
    assert loaded["OptionalData"]["MethodName"][0, 0][0] == "blur"
    assert not (tmp_path / "out" / "submission" / "noisy").exists()


def test_runner_writes_dnd_submissions(tmp_path: Path) -> None:
    make_dnd(tmp_path / "dnd")
    run_benchmark(load_dataset("dnd", tmp_path / "dnd", limit=None), {"blur": box_blur}, out_dir=tmp_path / "out")
    for index in (1, 2):
        loaded = sio.loadmat(tmp_path / "out" / "submission" / "blur" / f"{index:04d}.mat")
        assert loaded["Idenoised"].shape == (1, 20) and loaded["Idenoised"].dtype == object
        assert loaded["Idenoised"][0, 5].dtype == np.float32 and loaded["Idenoised"][0, 5].shape == (8, 12, 3)
        assert loaded["israw"][0, 0] == 0 and loaded["eval_version"][0] == "1.0"
    partial = run_benchmark(load_dataset("dnd", tmp_path / "dnd", limit=5), {"blur": box_blur},
                            out_dir=tmp_path / "partial", crops=0)
    assert "5/20" in partial.notes[0]


def test_submission_writers_check_their_input(tmp_path: Path) -> None:
    blocks = np.zeros((40, 32, 4, 4, 3), np.uint8)
    path = write_sidd_submission(tmp_path, blocks, 1.5, optional_data={"Authors": "A. Person"})
    loaded = sio.loadmat(path)
    assert path.name == "SubmitSrgb.mat" and loaded["DenoisedBlocksSrgb"].shape == (40, 32)
    assert loaded["OptionalData"]["Authors"][0, 0][0] == "A. Person"
    with pytest.raises(BsgdError, match="missing"):
        write_sidd_submission(tmp_path / "x.mat", {(0, 0): blocks[0, 0], (1, 1): blocks[0, 0]}, 1.0)
    with pytest.raises(BsgdError, match="exactly 20"):
        write_dnd_submission(tmp_path, 1, [np.zeros((4, 4, 3))] * 19)


# --------------------------------------------------------------------------------------- baselines, memory
def test_blind_sigma_and_nlm_baseline() -> None:
    clean, _ = scene(96, 96, 0)
    noisy = np.clip(clean / 255.0 + np.random.default_rng(1).normal(0, 0.04, clean.shape), 0, 1)
    assert estimate_noise_sigma(noisy) == pytest.approx(0.04, rel=0.15)
    assert "nlm" in available_baselines()
    denoised = nlm_denoise(noisy.astype(np.float32))
    assert denoised.dtype == np.float32 and denoised.shape == noisy.shape
    assert psnr_by_hand(clean, to_uint8(denoised)) > psnr_by_hand(clean, to_uint8(noisy)) + 3


def test_peak_rss_sees_a_temporary_allocation() -> None:
    import time

    with PeakRss() as baseline:
        time.sleep(0.02)
    with PeakRss() as memory:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        time.sleep(0.05)
        del block
    assert memory.peak_mb > baseline.peak_mb + 40


# ---------------------------------------------------------------------------------------- real data
@pytest.mark.skipif(not (SHARED_DATA / "pairs" / "nam25").is_dir(), reason="shared real data not present")
def test_nam25_noisy_psnr_on_real_data(tmp_path: Path) -> None:
    root = SHARED_DATA / "pairs" / "nam25"
    result = run_benchmark(load_dataset("pairs", root, limit=2), {}, out_dir=tmp_path, crops=0)
    rows = result.per_image
    assert [r["name"] for r in rows] == ["01", "02"]
    for row in rows:
        noisy = np.asarray(Image.open(root / "noisy" / f"{row['name']}_noise.png").convert("RGB"))
        clean = np.asarray(Image.open(root / "clean" / f"{row['name']}_gt.png").convert("RGB"))
        assert row["psnr"] == pytest.approx(psnr_by_hand(clean, noisy), abs=1e-9)
        assert 30 < row["psnr"] < 45 and 0.5 < row["ssim"] < 1
