"""Bad option values are refused before any work: exit 2, one `error:` line.

Cases B4, B5, B8, U3 and U7-U9 of docs/RELIABILITY.md (second round).

Every command's numeric options are tried with non-finite and out-of-range values; device, precision,
output folder and format mismatches are tried too. Each refusal must come before the model is loaded
or any file is written (a missing model file would otherwise be the error).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from bsgd_cli.checks import Bounds
from bsgd_cli.cli import EXIT_USAGE, app
from bsgd_cli.config import SamplerConfig, SamplerOverrides, TilingConfig
from bsgd_cli.engine.runtime import resolve_runtime
from bsgd_cli.errors import ConfigError

runner = CliRunner()
NO_MODEL = "no-such-model.safetensors"  # loading it would fail: a refusal must come first

# (command and options, words the one error line must hold). {tmp} is the test's folder.
BAD = [
    # B4, B5: sampler and size options of denoise
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--guidance", "nan"], "--guidance"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--guidance", "inf"], "--guidance"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--guidance", "-0.5"], "--guidance"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--max-megapixels", "nan"], "--max-megapixels"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--max-megapixels", "-1"], "--max-megapixels"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--max-megapixels", "0"], "--max-megapixels"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--t-start", "nan"], "--t-start"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--strength", "nan"], "--strength"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--wiener-noise", "inf"], "--wiener-noise"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--wiener-noise", "-inf"], "--wiener-noise"),
    # U8: upper bounds for the work per image
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--steps", "100000"], "--steps"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--runs", "1000"], "--runs"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--runs", "0"], "--runs"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--workers", "100000"], "--workers"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--tile", "8"], "--tile"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--quality", "500"], "--quality"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--seed", "-1"], "--seed"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--steps", "two"], "--steps"),
    # U7: a bit depth the format cannot hold, or none at all
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--bit-depth", "16", "--ext", "jpg"], "8 bits"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--bit-depth", "16", "--ext", "webp"], "8 bits"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--bit-depth", "12"], "--bit-depth"),
    # U9: devices and precisions, before the (missing) model is loaded
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--device", "cuda:99"], "cuda"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--device", "tpu"], "unknown device"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--device", "meta"], "unknown device"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--device", "cpu", "--precision", "fp16"], "fp16"),
    # U3: -o naming a file, or a folder under a file
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/a.png"], "not a folder"),
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/a.png/sub"], "not a folder"),
    # B3's siblings in the same option
    (["denoise", "{tmp}/a.png", "-o", "{tmp}/out", "--suffix", "../x"], "--suffix"),
    # train
    (["train", "--noisy-dir", "{tmp}", "-o", "{tmp}/run", "--lr", "nan"], "--lr"),
    (["train", "--noisy-dir", "{tmp}", "-o", "{tmp}/run", "--lr", "0"], "--lr"),
    (["train", "--noisy-dir", "{tmp}", "-o", "{tmp}/run", "--seed", "-1"], "--seed"),
    (["train", "--noisy-dir", "{tmp}", "-o", "{tmp}/run", "--steps", "0"], "--steps"),
    (["train", "--noisy-dir", "{tmp}", "-o", "{tmp}/run", "--pd-train", "1000"], "--pd-train"),
    (["train", "--noisy-dir", "{tmp}", "-o", "{tmp}/run", "--preset", "huge"], "--preset"),
    (["train", "--noisy-dir", "{tmp}", "-o", "{tmp}/run", "--device", "cpu", "--precision", "fp16"], "fp16"),
    (["train", "--noisy-dir", "{tmp}", "-o", "{tmp}/a.png"], "not a folder"),
    # distill
    (["distill", "--noisy-dir", "{tmp}", "-o", "{tmp}/d", "--width", "100000", "--model", NO_MODEL], "--width"),
    (["distill", "--noisy-dir", "{tmp}", "-o", "{tmp}/d", "--crop", "100000", "--model", NO_MODEL], "--crop"),
    (["distill", "--noisy-dir", "{tmp}", "-o", "{tmp}/d", "--device", "tpu", "--model", NO_MODEL], "unknown device"),
    (["distill", "--noisy-dir", "{tmp}", "-o", "{tmp}/a.png", "--model", NO_MODEL], "not a folder"),
    (["distill", "-o", "{tmp}/d", "--model", NO_MODEL], "--targets-from"),
    (["distill", "--noisy-dir", "{tmp}", "--targets-from", "{tmp}", "-o", "{tmp}/d", "--model", NO_MODEL],
     "exclude each other"),
    (["distill", "--targets-from", "{tmp}", "-o", "{tmp}/d"], "no teacher outputs"),
    # B8: benchmark
    (["benchmark", "--speed", "--megapixels", "nan", "--out", "{tmp}/b"], "--megapixels"),
    (["benchmark", "--speed", "--megapixels", "inf", "--out", "{tmp}/b"], "--megapixels"),
    (["benchmark", "--speed", "--megapixels", "-2", "--out", "{tmp}/b"], "--megapixels"),
    (["benchmark", "--speed", "--guidance", "nan", "--out", "{tmp}/b"], "--guidance"),
    (["benchmark", "--speed", "--wiener-noise", "nan", "--out", "{tmp}/b"], "--wiener-noise"),
    (["benchmark", "--speed", "--device", "tpu", "--out", "{tmp}/b"], "unknown device"),
    (["benchmark", "--speed", "--out", "{tmp}/a.png"], "not a folder"),
    # plot, samples
    (["plot", "{tmp}", "-o", "{tmp}"], "is a folder"),
    (["samples", "{tmp}/a.png/x"], "not a folder"),
    (["samples", "{tmp}/s", "--count", "100"], "--count"),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "a.png")
    return tmp_path


@pytest.mark.parametrize(("args", "words"), BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_value_is_one_error_line_before_any_work(folder: Path, args: list[str], words: str) -> None:
    argv = [arg.replace("{tmp}", str(folder)) for arg in args]
    if argv[0] in ("denoise", "benchmark") and "--model" not in argv:
        argv += ["--model", NO_MODEL]
    before = sorted(p.name for p in folder.rglob("*"))
    result = runner.invoke(app, argv)
    assert result.exit_code == EXIT_USAGE, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert words in lines[0] and NO_MODEL not in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert sorted(p.name for p in folder.rglob("*")) == before  # nothing created


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_without_mps_is_refused(folder: Path) -> None:
    result = runner.invoke(app, ["denoise", str(folder / "a.png"), "-o", str(folder / "out"), "--device", "mps",
                                 "--model", NO_MODEL])
    assert result.exit_code == EXIT_USAGE and "mps" in result.stderr and NO_MODEL not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_refused(folder: Path) -> None:
    result = runner.invoke(app, ["denoise", str(folder / "a.png"), "-o", str(folder / "out"), "--device", "cuda",
                                 "--model", NO_MODEL])
    assert result.exit_code == EXIT_USAGE and "no CUDA GPU is visible" in result.stderr


def test_the_library_refuses_the_same_values() -> None:
    """API users get the refusals too: the sampler config, the batch and the speed benchmark."""
    from bsgd_cli.batch.denoise import DenoiseOptions, check_options
    from bsgd_cli.benchmark.speed import run_speed_benchmark

    for bad in (math.nan, math.inf, -1.0, 10.0):
        with pytest.raises(ConfigError, match="guidance"):
            SamplerConfig(guidance=bad)
    with pytest.raises(ConfigError, match="steps"):
        SamplerConfig(steps=10**6)

    class _Model:  # check_options needs only the model's sampler defaults
        sampler = SamplerConfig()

    for options in (DenoiseOptions(max_megapixels=math.nan), DenoiseOptions(max_megapixels=-1.0),
                    DenoiseOptions(sampler=SamplerOverrides(guidance=math.nan)),
                    DenoiseOptions(bit_depth=16, ext="jpg"), DenoiseOptions(workers=0)):
        with pytest.raises(ConfigError):
            check_options(options, _Model())  # type: ignore[arg-type]
    for bad in (lambda: resolve_runtime("tpu"), lambda: resolve_runtime("cpu", "fp16"), lambda: TilingConfig(tile=8),
                lambda: TilingConfig(overlap=-1), lambda: TilingConfig(batch=0)):
        with pytest.raises(ConfigError):
            bad()
    with pytest.raises(ConfigError, match="megapixels"):
        run_speed_benchmark({}, megapixels=math.nan)


def test_bounds_describe_what_is_allowed() -> None:
    assert Bounds(0, 1).problem(math.nan) == "must be a finite number from 0 to 1, got nan"
    assert Bounds(0, 10, low_open=True).problem(0) == "must be a finite number above 0 and at most 10, got 0"
    assert Bounds(1, 5, integer=True).problem(2.5) is not None and Bounds(1, 5, integer=True).problem(3) is None
    assert Bounds(0, 1).problem(True) is not None  # a bool is not a number here


def test_a_quiet_long_job_still_says_it_is_alive(folder: Path, tiny_model_file: Path, monkeypatch) -> None:  # U8
    import bsgd_cli.cli._support as support

    args = ["denoise", str(folder / "a.png"), "--model", str(tiny_model_file), "--mode", "bsn", "--device", "cpu"]
    monkeypatch.setattr(support, "HEARTBEAT_SECONDS", 0.0)  # every event is "a minute later"
    quiet = runner.invoke(app, [*args, "-o", str(folder / "q"), "-q"])
    assert quiet.exit_code == 0, quiet.output
    alive = [line for line in quiet.stderr.splitlines() if line.startswith("working:")]
    assert alive and "files done" in alive[-1] and "so far" in alive[-1], quiet.stderr
    shown = runner.invoke(app, [*args, "-o", str(folder / "s")])  # progress bars shown: no heartbeat needed
    assert not [line for line in shown.stderr.splitlines() if line.startswith("working:")]
    monkeypatch.setattr(support, "HEARTBEAT_SECONDS", 60.0)
    short = runner.invoke(app, [*args, "-o", str(folder / "t"), "-q"])  # a short job stays silent
    assert short.exit_code == 0 and "working:" not in short.stderr, short.stderr


def test_sixteen_bits_with_kept_jpeg_outputs_is_said_once(tmp_path: Path, tiny_model_file: Path) -> None:  # U7
    for name in ("a.jpg", "b.jpg", "c.png"):
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / name)
    result = runner.invoke(app, ["denoise", str(tmp_path), "-o", str(tmp_path / "out"), "--bit-depth", "16",
                                 "--model", str(tiny_model_file), "--mode", "bsn", "-q"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "--bit-depth 16" in line]
    assert len(notes) == 1 and "2 output(s)" in notes[0] and "8 bits" in notes[0], result.stderr
    from bsgd_cli.io import read_image

    assert read_image(tmp_path / "out" / "c.png").bit_depth == 16
