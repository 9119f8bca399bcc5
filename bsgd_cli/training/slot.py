"""A short GPU slot (``make device-train``, docs/GPU.md): its plan, its data folder and its $OUT rules.

A slot is one command of at most ten minutes on one GPU with no network, after which only the
files under ``$OUT`` come back, within the limits below. :mod:`bsgd_cli.training.slot_stages` runs the stages
(train, distil, benchmark, time) against the absolute deadlines of a :class:`SlotPlan`;
``scripts/device_train.py`` prints their progress and writes ``$OUT``.

Nothing here imports rawpy: the slot's Python has none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import PRESETS, UNCAPPED_STEPS, ModelConfig, PresetName, StudentConfig, TrainConfig
from ..engine.model import BsgdModel
from ..errors import ConfigError
from .distill import DistillConfig

# What comes back from $OUT (the device tool's limits).
OUT_MAX_FILES = 8
OUT_MAX_FILE_BYTES = 16 * 2**20
OUT_MAX_TOTAL_BYTES = 64 * 2**20
OUT_MAX_PARTS = 3  # $OUT/a/b/file
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")

# The files a slot returns, and what unpacking keeps.
STATE_NAME = "state.pt"  # compact training state (bsgd_cli.training.train_state.compact_state)
MODEL_NAME = "model.safetensors"  # teacher + student, loads in `bsgd denoise --model`
RESULTS_NAME = "results.json"
LOG_NAME = "log.txt"
TRAIN_LOG_NAME = "train_log.jsonl"
OUT_FILES = (STATE_NAME, MODEL_NAME, RESULTS_NAME, LOG_NAME, TRAIN_LOG_NAME)

GPU_PRESET: PresetName = "gpu"
REPORT_PAIRS = 60  # PolyU pairs 41-100
BENCHMARK_MODES = ("fast", "bsgd", "bsn")  # bsn-r3 is timed, not benchmarked (it is no default anywhere)
SPEED_MODES = ("fast", "bsgd", "bsn", "bsn-r3")  # the CPU default first: a cut-off speed stage still has it


def out_problems(out: Path) -> list[str]:
    """Why the files under ``out`` would not all come back (empty when they would)."""
    out = Path(out)
    problems = []
    files = [path for path in sorted(out.rglob("*")) if not path.is_dir()]
    if len(files) > OUT_MAX_FILES:
        problems.append(f"{len(files)} files; at most {OUT_MAX_FILES} come back")
    total = 0
    for path in files:
        relative = path.relative_to(out)
        if path.is_symlink() or not path.is_file():
            problems.append(f"{relative}: not a plain file")
            continue
        size = path.stat().st_size
        total += size
        if size > OUT_MAX_FILE_BYTES:
            problems.append(f"{relative}: {size / 2**20:.1f} MiB, over {OUT_MAX_FILE_BYTES // 2**20} MiB")
        if len(relative.parts) > OUT_MAX_PARTS:
            problems.append(f"{relative}: deeper than $OUT/a/b/file")
        bad = [part for part in relative.parts if not _NAME.match(part)]
        if bad:
            problems.append(f"{relative}: names may hold letters, digits, '.', '_' and '-' only")
    if total > OUT_MAX_TOTAL_BYTES:
        problems.append(f"{total / 2**20:.1f} MiB in all, over {OUT_MAX_TOTAL_BYTES // 2**20} MiB")
    return problems


@dataclass(frozen=True)
class SlotData:
    """The data folder ``make device-data`` fills (ignored by git, carried to the slot).

    ``train/``: noisy training images; ``polyu/``: the report split of PolyU (``*_real``/``*_mean``
    pairs 41-100); ``nam25/noisy`` + ``nam25/clean``; ``sidd-danet/noisy.mat`` + ``gt.mat``.
    """

    root: Path

    @property
    def train(self) -> Path:
        return self.root / "train"

    def benchmark_sets(self) -> list[tuple[str, str, Path]]:
        """(name in results.json, benchmark kind, folder), most important first."""
        return [("polyu_report", "polyu", self.root / "polyu"), ("sidd_pair", "sidd-pair", self.root / "sidd-danet"),
                ("nam25", "pairs", self.root / "nam25")]

    def check(self) -> None:
        if not self.train.is_dir() or not any(self.train.iterdir()):
            raise ConfigError(
                f"{self.train}: no training images; run `make device-data` here, then carry the folder "
                f"(device tool: carry [\"{self.root.name}\"])"
            )


@dataclass(frozen=True, kw_only=True)
class SlotPlan:
    """What a slot runs and when each stage must end, in seconds from the command's start.

    ``steps``: most optimiser steps this slot adds (the clock normally ends training first).
    ``hard_seconds``: the whole command stops here, whatever runs; the tool kills it at 600 s.
    """

    dry_run: bool
    device: str
    preset: PresetName
    model_config: ModelConfig
    train: TrainConfig
    steps: int
    distill: DistillConfig
    student: StudentConfig
    benchmark_limit: int | None
    benchmark_ssim: bool
    speed_megapixels: float
    train_until: float
    distill_until: float
    benchmark_until: float
    speed_until: float
    hard_seconds: float
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        marks = [self.train_until, self.distill_until, self.benchmark_until, self.speed_until, self.hard_seconds]
        if marks != sorted(marks) or marks[0] <= 0:
            raise ConfigError(f"stage deadlines must increase: {marks}")


def gpu_plan() -> SlotPlan:
    """The real slot: ~7 minutes of training, then distillation, benchmark and speed (docs/GPU.md).

    Settings chosen without a GPU to measure on (the first slot's results.json records the rate and
    memory): batch 64 of 160 x 160 keeps 6,400 sub-images of 32 x 32 in every blind-spot convolution,
    enough to fill the chip without more memory than the rate needs; bf16 autocast and channels_last
    for the tensor cores; patches cut two batches ahead in a thread (cutting takes a noticeable share
    of a step, docs/NOTES.md); cuDNN autotuning while training; torch.compile stays off until a slot shows it pays
    back its compile time.
    """
    return SlotPlan(
        dry_run=False,
        device="auto",
        preset=GPU_PRESET,
        model_config=PRESETS[GPU_PRESET],
        train=TrainConfig(batch=64, patch=160, lr=5e-4, warmup=200, precision="bf16", channels_last=True, prefetch=2,
                          log_every=100, val_every=500, checkpoint_every=1000, seed=0),
        steps=UNCAPPED_STEPS,
        distill=DistillConfig(crop=None, patch=128, steps=UNCAPPED_STEPS, batch=32, lr=1e-3, warmup=50,
                              log_every=100, precision="bf16"),
        student=StudentConfig(),
        benchmark_limit=None,
        benchmark_ssim=False,  # 11 scored outputs per PolyU image at ~0.5 s each would not fit: PSNR only
        speed_megapixels=24.0,
        train_until=450.0,
        distill_until=500.0,
        benchmark_until=555.0,
        speed_until=580.0,
        hard_seconds=588.0,
        notes=["torch.compile off: not measured on a GPU yet"],
    )


def dry_run_plan() -> SlotPlan:
    """The same code path on a CPU in about a minute: tiny networks, 3 steps per stage, 1 image per set."""
    return SlotPlan(
        dry_run=True,
        device="cpu",
        preset="tiny",
        model_config=PRESETS["tiny"],
        train=TrainConfig(batch=2, patch=40, lr=1e-3, warmup=1, precision="bf16", channels_last=True, prefetch=2,
                          log_every=1, val_every=2, checkpoint_every=2, seed=0),
        steps=3,
        distill=DistillConfig(crops_per_image=1, crop=32, patch=32, steps=3, batch=2, warmup=1, log_every=1,
                              precision="bf16"),
        student=StudentConfig(width=8, mults=(1, 1)),
        benchmark_limit=1,
        benchmark_ssim=False,
        speed_megapixels=0.02,
        train_until=120.0,
        distill_until=150.0,
        benchmark_until=220.0,
        speed_until=260.0,
        hard_seconds=290.0,
    )


def shortened(plan: SlotPlan, hard_seconds: float) -> SlotPlan:
    """``plan`` with every stage mark scaled so the hard stop falls at ``hard_seconds`` (a shorter slot)."""
    if hard_seconds <= 0:
        raise ConfigError(f"the hard stop must be positive, got {hard_seconds} s")
    scale = hard_seconds / plan.hard_seconds
    return replace(
        plan,
        train_until=plan.train_until * scale,
        distill_until=plan.distill_until * scale,
        benchmark_until=plan.benchmark_until * scale,
        speed_until=plan.speed_until * scale,
        hard_seconds=hard_seconds,
        notes=[*plan.notes, f"marks scaled by {scale:.3f} to stop at {hard_seconds:g} s"],
    )


def predicted_slot_files(preset: PresetName = GPU_PRESET) -> dict[str, int]:
    """Bytes of the compact state and of the model file a slot returns for ``preset`` (within a few %).

    Used to keep room in the travelling tree for what a slot adds to the repository.
    """
    model = BsgdModel(PRESETS[preset])
    trained = sum(parameter.numel() for parameter in model.parameters())
    model.add_student(StudentConfig())
    everything = sum(parameter.numel() for parameter in model.parameters())
    return {"state": 6 * trained + 200_000, "model": 4 * everything + 100_000}


def summary_row(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers docs/GPU.md tabulates per slot, from a slot's results.json."""
    train = results.get("stages", {}).get("train", {})
    polyu = results.get("stages", {}).get("benchmark", {}).get("polyu_report", {})
    baseline = results.get("stages", {}).get("benchmark", {}).get("baseline_polyu_report", {})
    speed = {row["method"]: row for row in results.get("stages", {}).get("speed", {}).get("rows", [])}

    def psnr(block: dict[str, Any], refine: str, mode: str) -> float | None:
        value = block.get(refine, {}).get(mode, {}).get("psnr")
        return None if value is None else round(value, 2)

    return {
        "started_utc": results.get("started_utc"),
        "dry_run": results.get("dry_run"),
        "device": results.get("device", {}).get("name"),
        "steps": train.get("steps"),
        "steps_this_slot": train.get("steps_this_slot"),
        "train_minutes": None if train.get("seconds") is None else round(train["seconds"] / 60, 2),
        "patches_per_s": train.get("patches_per_s"),
        "polyu_fast": psnr(polyu, "wiener", "fast"),
        "polyu_bsgd": psnr(polyu, "wiener", "bsgd"),
        "polyu_bsgd_alone": psnr(polyu, "none", "bsgd"),
        "baseline_fast": psnr(baseline, "wiener", "fast"),
        "baseline_bsgd": psnr(baseline, "wiener", "bsgd"),
        "fast_mp_per_s_24mp": speed.get("fast", {}).get("megapixels_per_second"),
        "status": results.get("status"),
    }


def measured_better(results: dict[str, Any]) -> tuple[bool, str]:
    """Whether a slot's model beat the installed one on the whole PolyU report split, with the Wiener step,
    in both the CPU default mode (``fast``) and the model's default mode (``bsgd``); and why."""
    benchmark = results.get("stages", {}).get("benchmark", {})
    new = benchmark.get("polyu_report", {}).get("wiener", {})
    old = benchmark.get("baseline_polyu_report", {}).get("wiener", {})
    if results.get("dry_run"):
        return False, "a dry run's model is no candidate"
    reasons = []
    better = True
    for mode in ("fast", "bsgd"):
        mine, theirs = new.get(mode, {}), old.get(mode, {})
        if mine.get("psnr") is None or theirs.get("psnr") is None:
            return False, f"the report split was not measured in mode {mode} for both models"
        if mine.get("images") != theirs.get("images") or mine.get("images") != REPORT_PAIRS:
            return False, (f"mode {mode}: {mine.get('images')} and {theirs.get('images')} images, "
                           f"not the split's {REPORT_PAIRS} each")
        reasons.append(f"{mode} {mine['psnr']:.2f} vs {theirs['psnr']:.2f} dB")
        better = better and mine["psnr"] > theirs["psnr"]
    return better, "; ".join(reasons)
