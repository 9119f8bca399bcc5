"""The GPU-slot recipe (`make device-train`, docs/GPU.md): the dry run end to end with rawpy blocked, its
returned files against the device tool's limits, resuming from unpacked files, and stages that fail soft."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from typer.testing import CliRunner

from bsgd_cli.checkpoint import load_model
from bsgd_cli.cli import app
from bsgd_cli.training.optim import WallClock
from bsgd_cli.training.slot import SlotData, dry_run_plan, measured_better, out_problems
from bsgd_cli.training.slot_stages import benchmark_stage, speed_stage

from .conftest import noisy_image

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_slot_data(root: Path) -> Path:
    """A small data folder in the layout `make device-data` writes (bsgd_cli.training.slot.SlotData)."""
    (root / "train").mkdir(parents=True)
    for index in range(3):
        Image.fromarray(_u8(noisy_image(64, 64, seed=index))).save(root / "train" / f"{index:04d}_1.png")
    (root / "polyu").mkdir()
    for index in range(2):
        Image.fromarray(_u8(noisy_image(48, 48, seed=10 + index))).save(
            root / "polyu" / f"cam_{index}_real.JPG", quality=95
        )
        Image.fromarray(_u8(noisy_image(48, 48, seed=20 + index))).save(
            root / "polyu" / f"cam_{index}_mean.JPG", quality=95
        )
    for side, seed in (("noisy", 30), ("clean", 31)):
        (root / "nam25" / side).mkdir(parents=True)
        Image.fromarray(_u8(noisy_image(48, 48, seed=seed))).save(
            root / "nam25" / side / f"01_{'noise' if side == 'noisy' else 'gt'}.png"
        )
    (root / "sidd-danet").mkdir()
    scipy.io.savemat(root / "sidd-danet" / "noisy.mat", {"im_noisy": _u8(noisy_image(48, 48, seed=40))})
    scipy.io.savemat(root / "sidd-danet" / "gt.mat", {"im_gt": _u8(noisy_image(48, 48, seed=41))})
    return root


def rawpy_blocker(folder: Path) -> tuple[Path, Path]:
    """A fake rawpy package that leaves a marker file and fails: the GPU slot's Python has no rawpy.
    exiv2 and the format plugins are absent there too: they fail to import (the metadata reader copes)."""
    marker = folder / "rawpy-was-imported"
    (folder / "rawpy").mkdir(parents=True)
    (folder / "rawpy" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nraise ImportError('rawpy is blocked: the GPU slot has none')\n"
    )
    for absent in ("exiv2", "pillow_heif", "pillow_jxl"):
        (folder / absent).mkdir()
        (folder / absent / "__init__.py").write_text(f"raise ImportError('{absent} is absent on the GPU slot')\n")
    return folder, marker


def device_train(tmp_path: Path, out: Path, data: Path, state: Path, shim: Path) -> subprocess.CompletedProcess:
    """`DRY_RUN=1 make device-train`, as the Makefile runs it, with rawpy blocked."""
    env = {**os.environ, "MAKEFLAGS": "", "PYTHONPATH": str(shim)}
    command = ["make", "-s", "-C", str(REPO), "device-train", "DRY_RUN=1", f"OUT={out}", f"DEVICE_DATA={data}",
               f"STATE_DIR={state}", f"DEVICE_PYTHON={sys.executable}"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def check_returned_files(out: Path) -> list[Path]:
    """The device tool's limits, checked here on their own (not with the code under test)."""
    files = [path for path in out.rglob("*") if path.is_file()]
    assert 0 < len(files) <= 8
    assert sum(path.stat().st_size for path in files) <= 64 * 2**20
    for path in files:
        relative = path.relative_to(out)
        assert path.stat().st_size <= 16 * 2**20, relative
        assert len(relative.parts) <= 3, relative
        assert all(NAME.match(part) for part in relative.parts), relative
    return files


@pytest.mark.slow
def test_dry_run_returns_legal_files_that_denoise_and_resume(tmp_path: Path) -> None:
    data = make_slot_data(tmp_path / "data")
    shim, marker = rawpy_blocker(tmp_path / "shim")
    state = tmp_path / "training-gpu"
    first = tmp_path / "out1"
    done = device_train(tmp_path, first, data, state, shim)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not marker.exists(), "something on the slot's path imported rawpy"
    files = check_returned_files(first)
    assert {path.name for path in files} == {
        "state.pt",
        "model.safetensors",
        "results.json",
        "log.txt",
        "train_log.jsonl",
    }
    results = json.loads((first / "results.json").read_text())
    assert results["status"] == "done" and results["dry_run"] is True and results["rawpy_imported"] is False
    stages = results["stages"]
    assert stages["train"]["steps"] == 3 and stages["train"]["resumed"] is False
    assert stages["distill"]["steps"] == 3
    for refine in ("wiener", "none"):
        assert set(stages["benchmark"]["polyu_report"][refine]) == {"noisy", "fast", "bsgd", "bsn"}
    assert stages["benchmark"]["baseline_polyu_report"]["wiener"]["fast"]["images"] == 1
    assert [row["method"] for row in stages["speed"]["rows"]] == ["fast", "bsgd", "bsn", "bsn-r3"]
    assert "step 3" in (first / "log.txt").read_text()

    # the returned model is an ordinary model file: `bsgd denoise --model` uses it, fast mode included
    loaded = load_model(first / "model.safetensors")
    assert loaded.model.student is not None and loaded.info["recipe"] == "make device-train"
    photo = tmp_path / "photo.png"
    Image.fromarray(_u8(noisy_image(40, 56, seed=7))).save(photo)
    for mode in ("fast", "bsgd"):
        result = CliRunner().invoke(app, ["denoise", str(photo), "-o", str(tmp_path / mode), "--model",
                                          str(first / "model.safetensors"), "--mode", mode, "--device", "cpu", "-q"])
        assert result.exit_code == 0, result.output
        assert np.asarray(Image.open(tmp_path / mode / "photo.png")).shape == (40, 56, 3)

    # unpack the returned files (a dry run's only on request), then the next slot resumes them
    unpack = [sys.executable, str(REPO / "scripts" / "device_unpack.py"), str(first), "--state-dir", str(state),
              "--models-dir", str(tmp_path / "models")]
    refused = subprocess.run(unpack, capture_output=True, text=True)
    assert refused.returncode == 2 and "dry run" in refused.stderr and not state.exists()
    unpacked = subprocess.run([*unpack, "--allow-dry-run"], capture_output=True, text=True)
    assert unpacked.returncode == 0, unpacked.stderr
    assert {path.name for path in state.iterdir()} == {
        "state.pt",
        "results.json",
        "log.txt",
        "train_log.jsonl",
        "slots.jsonl",
    }
    second = tmp_path / "out2"
    done = device_train(tmp_path, second, data, state, shim)
    assert done.returncode == 0, done.stdout + done.stderr
    train = json.loads((second / "results.json").read_text())["stages"]["train"]
    assert train["resumed"] is True and train["resumed_from_step"] == 3 and train["steps"] == 6
    check_returned_files(second)


@pytest.mark.slow
def test_device_train_needs_an_empty_out_and_the_data(tmp_path: Path) -> None:
    shim, _marker = rawpy_blocker(tmp_path / "shim")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    done = device_train(tmp_path, out, tmp_path / "nodata", tmp_path / "state", shim)
    assert done.returncode != 0 and "not empty" in done.stderr
    empty = tmp_path / "empty"
    done = device_train(tmp_path, empty, tmp_path / "nodata", tmp_path / "state", shim)
    assert done.returncode != 0  # make's own code (2) for a failed recipe
    results = json.loads((empty / "results.json").read_text())
    assert results["status"] == "failed" and "make device-data" in results["stages"]["slot"]["error"]


def test_out_problems_names_each_broken_rule(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "a" / "b" / "c").mkdir(parents=True)
    (out / "ok.json").write_text("{}")
    assert out_problems(out) == []
    (out / "a" / "b" / "c" / "deep.txt").write_text("x")
    (out / "bad name.txt").write_text("x")
    with (out / "big.bin").open("wb") as handle:
        handle.truncate(16 * 2**20 + 1)
    problems = " | ".join(out_problems(out))
    assert "deeper than" in problems and "names may hold" in problems and "over 16 MiB" in problems
    for index in range(6):
        (out / f"f{index}").write_text("x")
    assert any("at most 8 come back" in problem for problem in out_problems(out))


@pytest.mark.slow
def test_stages_past_their_deadline_return_cut_off(tmp_path: Path, tiny_model_file: Path) -> None:
    data = SlotData(make_slot_data(tmp_path / "data"))
    plan = dry_run_plan()
    expired = WallClock(seconds=1.0, started=0.0)
    recorded: list[dict] = []
    facts = benchmark_stage(
        plan, data, tiny_model_file, None, tmp_path / "work", expired, lambda line: None, recorded.append
    )
    assert facts["status"] == "cut off" and "polyu_report" not in facts
    facts = speed_stage(plan, tiny_model_file, expired, lambda line: None, recorded.append)
    assert facts["status"] == "cut off" and facts["not_timed"] == ["fast", "bsgd", "bsn", "bsn-r3"]
    # with time left, every set is measured
    clock = WallClock.start(3600)
    facts = benchmark_stage(
        plan, data, tiny_model_file, None, tmp_path / "work2", clock, lambda line: None, recorded.append
    )
    assert facts["status"] == "done" and set(facts) >= {"polyu_report", "sidd_pair", "nam25"}
    # a deadline passing inside a run stops it; the runs finished before it stay in the facts
    cut = benchmark_stage(plan, data, tiny_model_file, None, tmp_path / "work3", ExpiresAfter(calls=12),
                          lambda line: None, recorded.append)
    assert cut["status"] == "cut off" and "polyu_report" in cut and "cut_off_in" in cut
    assert recorded[-1] is cut  # what was measured was handed on before the cut


class ExpiresAfter:
    """A deadline that passes after ``calls`` questions (the stages only ask ``expired()``)."""

    def __init__(self, calls: int) -> None:
        self.left = calls

    def expired(self) -> bool:
        self.left -= 1
        return self.left < 0


@pytest.mark.slow
def test_hard_deadline_ends_the_command_and_says_so(tmp_path: Path) -> None:
    data = make_slot_data(tmp_path / "data")
    shim, _marker = rawpy_blocker(tmp_path / "shim")
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "scripts" / "device_train.py"), "--out", str(out), "--data", str(data),
               "--state-dir", str(tmp_path / "state"), "--dry-run", "--hard-seconds", "0.5"]
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": f"{REPO}:{shim}"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 3, done.stdout + done.stderr
    assert json.loads((out / "results.json").read_text())["status"] == "hard deadline"
    assert "HARD DEADLINE" in (out / "log.txt").read_text()
    check_returned_files(out)


def _results(images: int, new: float, old: float, dry_run: bool = False) -> dict:
    block = lambda psnr: {mode: {"psnr": psnr, "images": images} for mode in ("fast", "bsgd")}  # noqa: E731
    return {"dry_run": dry_run, "stages": {"benchmark": {"polyu_report": {"wiener": block(new)},
                                                         "baseline_polyu_report": {"wiener": block(old)}}}}


@pytest.mark.parametrize(("results", "expected", "reason"), [
    (_results(60, 38.5, 38.3), True, "fast 38.50 vs 38.30"),
    (_results(60, 38.2, 38.3), False, "bsgd 38.20 vs 38.30"),
    (_results(12, 38.5, 38.3), False, "not the split's 60"),
    (_results(60, 38.5, 38.3, dry_run=True), False, "dry run"),
    ({"stages": {}}, False, "not measured"),
])
def test_install_only_when_the_whole_report_split_measured_better(results: dict, expected: bool, reason: str) -> None:
    better, why = measured_better(results)
    assert better is expected and reason in why
