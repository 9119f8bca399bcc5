"""Public API, speed benchmark, and `bsgd models` / `benchmark` through the CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bsgd_cli.benchmark.speed import run_speed_benchmark, synthetic_photo
from bsgd_cli.cli import app
from bsgd_cli.config import SamplerOverrides, TilingConfig
from bsgd_cli.engine.runtime import resolve_runtime

from .conftest import CPU

runner = CliRunner()


@pytest.mark.slow
def test_package_import_is_light_and_api_resolves() -> None:
    code = "import sys, bsgd_cli, bsgd_cli.io, bsgd_cli.benchmark; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
    import bsgd_cli

    assert callable(bsgd_cli.load_model) and callable(bsgd_cli.denoise_array) and callable(bsgd_cli.denoise_paths)


def test_denoise_array_public_signature(tiny_model_file: Path) -> None:
    from bsgd_cli import denoise_array, load_model

    model = load_model(tiny_model_file)
    image = synthetic_photo(0.003)
    out = denoise_array(model, image, sampler=SamplerOverrides(mode="bsgd", steps=2, guidance=0.8, runs=1), seed=0,
                        tiling=TilingConfig(tile=64, overlap=8), runtime=resolve_runtime("cpu", "fp32"))
    assert out.shape == image.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_speed_benchmark_rows() -> None:
    def slow_identity(image):
        time.sleep(0.05)
        return image.copy()

    rows = run_speed_benchmark({"identity": slow_identity}, megapixels=0.01, warmup=False)
    assert rows[0].megapixels > 0.009 and rows[0].seconds >= 0.05 and rows[0].peak_rss_mb > 10
    assert rows[0].megapixels_per_second == pytest.approx(rows[0].megapixels / rows[0].seconds, rel=0.01)


def test_cli_speed_and_models(tmp_path: Path, tiny_model_file: Path, monkeypatch) -> None:
    result = runner.invoke(app, ["benchmark", "--speed", "--megapixels", "0.01", "--methods", "bsn,fast",
                                 "--model", str(tiny_model_file), "--device", "cpu", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "speed.json").read_text())
    assert [row["method"] for row in data["speed"]] == ["bsn", "fast"]
    assert data["environment"]["model_sha256"] == hashlib.sha256(tiny_model_file.read_bytes()).hexdigest()
    monkeypatch.setenv("BSGD_MODEL_DIR", str(tiny_model_file.parent))
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "tiny" in result.output


def test_cli_benchmark_on_pairs(tmp_path: Path, tiny_model_file: Path) -> None:
    from PIL import Image

    from .conftest import noisy_image

    for folder in ("noisy", "clean"):
        (tmp_path / "set" / folder).mkdir(parents=True)
    for index in range(2):
        clean = noisy_image(40, 40, seed=index)
        noisy = np.clip(clean + np.random.default_rng(index).normal(0, 0.05, clean.shape), 0, 1)
        Image.fromarray((clean * 255 + 0.5).astype(np.uint8)).save(tmp_path / "set" / "clean" / f"{index}.png")
        Image.fromarray((noisy * 255 + 0.5).astype(np.uint8)).save(tmp_path / "set" / "noisy" / f"{index}.png")
    result = runner.invoke(app, ["benchmark", "--dataset", "pairs", "--root", str(tmp_path / "set"), "--methods",
                                 "noisy,bsn,bsgd", "--model", str(tiny_model_file), "--device", "cpu", "--steps", "1",
                                 "--runs", "1", "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert {row["method"] for row in rows} == {"noisy", "bsn", "bsgd"}
    assert (tmp_path / "out" / "report.html").is_file()


def test_cpu_default_mode_is_fast_when_a_student_exists(tiny_model_file: Path) -> None:
    from bsgd_cli import denoise_array, load_model

    model = load_model(tiny_model_file)
    image = synthetic_photo(0.002)
    default = denoise_array(model, image, runtime=CPU, seed=1)
    fast = denoise_array(model, image, runtime=CPU, seed=1, sampler=SamplerOverrides(mode="fast"))
    bsgd = denoise_array(model, image, runtime=CPU, seed=1, sampler=SamplerOverrides(mode=model.sampler.mode))
    assert np.array_equal(default, fast)
    assert not np.array_equal(default, bsgd)
