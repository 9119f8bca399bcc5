"""``bsgd train``, ``distill`` and ``benchmark`` parse their options into the library's call: the library
functions are stubbed, so these run in a fraction of a second and check only what the command line passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bsgd_cli.cli import app
from bsgd_cli.config import PRESETS, UNCAPPED_STEPS, SamplerOverrides, TilingConfig
from bsgd_cli.engine import runtime
from bsgd_cli.events import Progress

runner = CliRunner()


@pytest.fixture
def calls(monkeypatch) -> dict[str, Any]:
    """Stubs for the library calls behind the three commands; each records its arguments."""
    import bsgd_cli.benchmark.evaluate as evaluate
    import bsgd_cli.training.distill as distill
    import bsgd_cli.training.ready as ready
    import bsgd_cli.training.train as training
    from bsgd_cli.benchmark.runner import BenchmarkResult
    from bsgd_cli.training.train import TrainSummary

    seen: dict[str, Any] = {}

    def fake_train(noisy_dir: Path, out_dir: Path, **kwargs: Any) -> TrainSummary:
        seen["train"] = dict(noisy_dir=noisy_dir, out_dir=out_dir, **kwargs)
        kwargs["callback"](Progress("log", done=1, total=kwargs["config"].steps, data={"loss_bsn": 0.5, "lr": 1e-3}))
        return TrainSummary(Path(out_dir), 1, 0.5, 1, 0.25, "val_loss")

    def fake_distill(teacher: Any, noisy_dir: Path, out_dir: Path, **kwargs: Any) -> Path:
        seen["distill"] = dict(teacher=teacher, noisy_dir=noisy_dir, out_dir=out_dir, **kwargs)
        kwargs["callback"](Progress("targets", done=1, total=1))
        kwargs["callback"](Progress("log", done=1, total=kwargs["config"].steps, data={"loss_student": 0.1}))
        return Path(out_dir) / "model.safetensors"

    def fake_benchmark(dataset: str, root: Path, methods: list[str], **kwargs: Any) -> BenchmarkResult:
        seen["benchmark"] = dict(dataset=dataset, root=root, methods=methods, **kwargs)
        row = {"dataset": "set", "method": "noisy", "psnr": 30.0, "ssim": 0.9, "ssim_gaussian": 0.9,
               "seconds_per_mp": 0.0, "peak_rss_mb": 1.0, "images": 1}
        return BenchmarkResult("set", dataset, True, [row], [], {}, Path(kwargs["out_dir"]))

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(ready, "train", fake_train)  # ready.py holds its own reference to both
    monkeypatch.setattr(distill, "distill", fake_distill)
    monkeypatch.setattr(ready, "distill", fake_distill)
    monkeypatch.setattr(evaluate, "run_benchmark", fake_benchmark)
    return seen


def test_train_passes_the_preset_and_training_settings(calls: dict[str, Any], tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--noisy-dir", str(tmp_path), "-o", str(tmp_path / "run"), "--preset", "tiny",
                                 "--steps", "7", "--batch", "4", "--patch", "40", "--lr", "0.002", "--branch", "bsn",
                                 "--seed", "3", "--precision", "fp32", "--device", "cpu", "--resume", "--no-distill",
                                 "-q"])
    assert result.exit_code == 0, result.output
    call = calls["train"]
    assert call["model_config"] == PRESETS["tiny"] and call["resume"] is True and call["device"] == "cpu"
    config = call["config"]
    assert (config.steps, config.batch, config.patch, config.lr, config.branch, config.seed, config.precision) == (
        7, 4, 40, 0.002, "bsn", 3, "fp32")
    assert call["info"] == {"preset": "tiny", "noisy_dir": str(tmp_path)}
    assert "trained 1 steps" in result.output


def test_train_distils_srgb_by_default_and_refuses_it_for_raw(monkeypatch, tmp_path: Path) -> None:
    import bsgd_cli.training.ready as ready
    from bsgd_cli.training.train import TrainSummary

    plans: list[Any] = []

    def fake_ready(noisy_dir: Path, out_dir: Path, **kwargs: Any) -> Any:
        plans.append(kwargs["plan"])
        return ready.ReadySummary(TrainSummary(Path(out_dir), 1, 0.5, 1, 0.25, "val_loss"), Path(out_dir) / "m",
                                  distilled=False)

    monkeypatch.setattr(ready, "train_ready", fake_ready)
    base = ["train", "--noisy-dir", str(tmp_path), "-o", str(tmp_path / "run"), "--device", "cpu", "-q"]
    for extra, distils, steps in (([], True, 2000), (["--steps", "30"], True, 30), (["--minutes", "2"], True, None),
                                  (["--steps", "30", "--distill-steps", "9"], True, 9),
                                  (["--domain", "raw"], False, 2000), (["--no-distill"], False, 2000)):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 0, result.output
        assert plans[-1].distill is distils, extra
        assert plans[-1].distill_config.steps == (steps or UNCAPPED_STEPS), extra
    refused = runner.invoke(app, [*base, "--domain", "raw", "--distill"])
    assert refused.exit_code == 2 and "sRGB photos only" in refused.output


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_train_raw_domain_and_auto_precision(calls: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             native: bool, expected: str) -> None:
    monkeypatch.setattr(runtime, "_cpu_bf16", lambda: native)  # auto: bf16 only where the CPU computes it natively
    result = runner.invoke(app, ["train", "--noisy-dir", str(tmp_path), "-o", str(tmp_path / "run"), "--domain", "raw",
                                 "--precision", "auto", "--pd-infer", "2", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    call = calls["train"]
    assert call["model_config"].domain == "raw" and call["model_config"].channels == 4
    assert call["model_config"].blind_spot.pd_infer == 2 and call["config"].precision == expected


def test_distill_passes_the_teacher_pipeline(calls: dict[str, Any], tmp_path: Path, tiny_model_file: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_cpu_bf16", lambda: True)
    result = runner.invoke(app, ["distill", "--noisy-dir", str(tmp_path), "-o", str(tmp_path / "fast"), "--model",
                                 str(tiny_model_file), "--teacher-mode", "bsn", "--no-teacher-wiener", "--steps", "5",
                                 "--crop", "64", "--width", "16", "--init", "fresh", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    call = calls["distill"]
    assert call["sampler"].mode == "bsn" and call["sampler"].refine == "none"
    assert call["sampler"].guidance == call["teacher"].sampler.guidance  # the rest as the model stores it
    config = call["config"]
    assert (config.steps, config.crop, config.patch, config.init, config.precision) == (5, 64, 64, "fresh", "bf16")
    assert call["student"].width == 16 and call["budget"] is None
    assert call["student"].norm == "group" and call["student"].mults == (1, 1)  # the rest: the teacher's student's
    assert "model with student" in result.output


def test_distill_norm_keeps_the_teachers_student_shape(calls: dict[str, Any], tmp_path: Path,
                                                       tiny_model_file: Path) -> None:
    args = ["distill", "--noisy-dir", str(tmp_path), "-o", str(tmp_path / "fast"), "--model", str(tiny_model_file),
            "--steps", "5", "--device", "cpu", "-q"]
    result = runner.invoke(app, [*args, "--norm", "affine"])
    assert result.exit_code == 0, result.output
    student = calls["distill"]["student"]
    assert (student.norm, student.width, student.mults) == ("affine", 8, (1, 1))
    assert runner.invoke(app, args).exit_code == 0
    assert calls["distill"]["student"] is None  # neither asked for: the library keeps the teacher's student
    refused = runner.invoke(app, [*args, "--norm", "batch"])
    assert refused.exit_code == 2 and "batch" in refused.output


def test_benchmark_passes_settings_and_takes_dash_o_and_the_old_out(calls: dict[str, Any], tmp_path: Path) -> None:
    for flag in ("-o", "--output", "--out"):
        out = tmp_path / flag.strip("-")
        result = runner.invoke(
            app,
            [
                "benchmark",
                "--dataset",
                "polyu",
                "--root",
                str(tmp_path),
                "--methods",
                "noisy, bsn",
                "--steps",
                "3",
                "--no-wiener",
                "--tile",
                "256",
                "--seed",
                "9",
                "--device",
                "cpu",
                "--limit",
                "2",
                flag,
                str(out),
                "-q",
            ],
        )
        assert result.exit_code == 0, result.output
        call = calls["benchmark"]
        assert call["out_dir"] == out and call["dataset"] == "polyu" and call["methods"] == ["noisy", "bsn"]
        assert call["sampler"] == SamplerOverrides(steps=3, refine="none")
        assert call["tiling"] == TilingConfig(tile=256) and call["seed"] == 9 and call["limit"] == 2
        assert call["runtime"].device.type == "cpu" and call["runtime"].precision == "auto"


def test_benchmark_refuses_an_unknown_data_set(calls: dict[str, Any], tmp_path: Path) -> None:
    result = runner.invoke(app, ["benchmark", "--dataset", "imagenet", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "--dataset" in result.output and "benchmark" not in calls
