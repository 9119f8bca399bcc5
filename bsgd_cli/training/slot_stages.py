"""The stages of a GPU slot, each a function with its own deadline (see :mod:`bsgd_cli.training.slot`).

Every stage returns a JSON-ready dict for ``results.json``; progress goes out as text lines through
``report`` (the script prints and logs them). A stage whose deadline passes returns what it has with
``"status": "cut off"``; the caller runs the next one. The heavy lifting is the library's own:
:func:`bsgd_cli.training.train.train`, :func:`bsgd_cli.training.distill.distill`,
:func:`bsgd_cli.benchmark.evaluate.run_benchmark` and :func:`bsgd_cli.benchmark.speed.time_method`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..benchmark.evaluate import build_methods, run_benchmark
from ..benchmark.speed import run_speed_benchmark, synthetic_photo
from ..checkpoint import load_model
from ..config import ModelConfig, Refine, SamplerOverrides, from_dict
from ..engine.runtime import resolve_runtime
from ..events import Progress
from .distill import distill
from .optim import WallClock
from .slot import BENCHMARK_MODES, SPEED_MODES, STATE_NAME, TRAIN_LOG_NAME, SlotData, SlotPlan
from .train import LOG_FILE, train
from .train_state import STATE_FILE, compact_state, read_state, state_bytes, write_atomic

Report = Callable[[str], None]


class StageTimeout(Exception):
    """Raised inside a stage's progress callback when its deadline has passed."""


def _gpu_peak_reset() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak_mb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def save_compact_state(run_dir: Path, target: Path) -> int:
    """Write the compact form of ``run_dir``'s state.pt to ``target`` (atomic); returns its size in bytes."""
    data = state_bytes(compact_state(read_state(run_dir)))
    write_atomic(target, data)
    return len(data)


# ------------------------------------------------------------------------------------------- training
def train_stage(plan: SlotPlan, data: SlotData, state_dir: Path | None, work: Path, out: Path,
                until: WallClock, report: Report) -> dict[str, Any]:
    """Train (resuming ``state_dir/state.pt`` when it exists) until ``until``; the compact state and
    the trainer's log go to ``out`` at every checkpoint and at the end. Returns the facts."""
    run_dir = work / "train"
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = None if state_dir is None else state_dir / STATE_FILE
    resumed = previous is not None and previous.is_file()
    start_step, start_seconds = 0, 0.0
    preset: str = plan.preset
    if resumed:
        assert previous is not None
        shutil.copyfile(previous, run_dir / STATE_FILE)
        stored = read_state(run_dir)
        start_step, start_seconds = int(stored["step"]), float(stored["seconds"])
        report(f"train: resuming {previous} at step {start_step}")
        if from_dict(ModelConfig, json.loads(stored["model_config"])) != plan.model_config:
            preset = "as stored"
            report(
                f"train: the stored model is not the {plan.preset} preset; training it as stored (--fresh starts over)"
            )
    else:
        report(f"train: fresh {plan.preset} model (no {previous or 'state folder'})")
    config = plan.train
    budget = WallClock.start(max(1.0, until.remaining()))
    facts: dict[str, Any] = {"resumed": resumed, "resumed_from_step": start_step, "preset": preset,
                             "batch": config.batch, "patch": config.patch, "precision": config.precision,
                             "channels_last": config.channels_last, "budget_s": round(budget.seconds, 1)}
    last: dict[str, Any] = {}
    started = time.perf_counter()

    def on_event(progress: Progress) -> None:
        if progress.kind == "checkpoint":
            facts["state_bytes"] = save_compact_state(run_dir, out / STATE_NAME)
            if (run_dir / LOG_FILE).is_file():  # the checkpoint's own log line comes after this event
                shutil.copyfile(run_dir / LOG_FILE, out / TRAIN_LOG_NAME)
            return
        if progress.kind != "log":
            return
        event = progress.data
        last.update(event)
        done = event["step"] - start_step
        rate = done / max(time.perf_counter() - started, 1e-9)
        losses = "  ".join(f"{k.removeprefix('loss_')} {v:.4f}" for k, v in event.items() if k.startswith("loss_"))
        val = f"  val {event['val_loss']:.4f}" if "val_loss" in event else ""
        report(f"train: step {event['step']} (+{done})  {rate:.2f} steps/s  {event['patches_per_s']:.0f} patches/s  "
               f"{losses}{val}  lr {event['lr']:.2e}  patch wait {event['data_s'] * 1000:.0f} ms/step  "
               f"ETA {_duration(budget.remaining())}")

    _gpu_peak_reset()
    autotune = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = torch.cuda.is_available()  # fixed training shapes: let cuDNN time its kernels
    try:
        summary = train(
            data.train,
            run_dir,
            model_config=plan.model_config,
            config=replace(config, steps=start_step + plan.steps),
            resume=resumed,
            stored_config=False,
            device=plan.device,
            callback=on_event,
            budget=budget,
            info={"preset": preset, "recipe": "make device-train"},
        )
    finally:
        torch.backends.cudnn.benchmark = autotune  # evaluation tiles come in many shapes: no timing per shape
    facts["state_bytes"] = save_compact_state(run_dir, out / STATE_NAME)
    shutil.copyfile(run_dir / LOG_FILE, out / TRAIN_LOG_NAME)
    shutil.copyfile(run_dir / "model.safetensors", work / "teacher.safetensors")
    wall = time.perf_counter() - started
    stepping = summary.seconds - start_seconds  # inside the optimiser steps only
    done = summary.steps - start_step
    facts.update(
        status="done", steps=summary.steps, steps_this_slot=done, seconds=round(wall, 1),
        step_seconds=round(stepping, 1), train_seconds_total=round(summary.seconds, 1),
        patches_per_s=round(done * config.batch / max(stepping, 1e-9), 1),
        patches_per_s_wall=round(done * config.batch / max(wall, 1e-9), 1),
        last_log={k: v for k, v in last.items() if k not in ("kind", "total")}, gpu_peak_mb=_gpu_peak_mb(),
        best_metric=summary.best_metric, best_value=summary.best_value, skipped=summary.skipped[:5],
    )
    return facts


# --------------------------------------------------------------------------------------- distillation
def distill_stage(plan: SlotPlan, data: SlotData, teacher_path: Path, work: Path, until: WallClock,
                  report: Report) -> tuple[dict[str, Any], Path]:
    """The fast student, distilled from the teacher's sampler until ``until`` (for now
    :func:`bsgd_cli.training.distill.distill`; a self-distillation stage can take its place). Returns
    (facts, path of the model file with the student)."""
    budget = WallClock.start(max(1.0, until.remaining()))
    teacher = load_model(teacher_path)
    last: dict[str, Any] = {}

    def on_event(progress: Progress) -> None:
        if progress.kind == "targets" and progress.done == progress.total:
            report(f"distill: {progress.total} teacher targets made")
        elif progress.kind == "log":
            event = progress.data
            last.update(event)
            report(f"distill: step {event['step']}  loss {event['loss_student']:.4f}  lr {event['lr']:.2e}  "
                   f"ETA {_duration(budget.remaining())}")

    _gpu_peak_reset()
    started = time.perf_counter()
    path = distill(teacher, data.train, work / "distill", student=plan.student, config=plan.distill, device=plan.device,
                   callback=on_event, budget=budget)
    facts = {
        "status": "done",
        "steps": last.get("step"),
        "loss_student": last.get("loss_student"),
        "seconds": round(time.perf_counter() - started, 1),
        "gpu_peak_mb": _gpu_peak_mb(),
        "method": "bsgd_cli.training.distill.distill (student on the outputs of the model's stored pipeline: "
        "mode + Wiener step)",
    }
    return facts, path


# ------------------------------------------------------------------------------------------ benchmark
def _means(result: Any) -> dict[str, Any]:
    return {row["method"]: {key: row[key] for key in ("psnr", "ssim", "ssim_gaussian", "seconds_per_mp", "images")}
            for row in result.results}


def benchmark_stage(plan: SlotPlan, data: SlotData, model_path: Path, baseline: str | None, work: Path,
                    until: WallClock, report: Report, record: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """PSNR/SSIM per set and mode, with the Wiener step and without (``--no-wiener``); the installed
    model (``baseline``) on the report split too, so unpacking can tell which is better. ``record``
    gets the partial results after every run, so a cut-off stage keeps what it measured."""
    has_student = load_model(model_path).model.student is not None
    runtime = resolve_runtime(plan.device)
    modes = [mode for mode in BENCHMARK_MODES if has_student or mode != "fast"]
    runs: list[tuple[str, Refine, str, Path, str, list[str]]] = []
    for name, kind, root in data.benchmark_sets():  # most important first: a cut-off stage loses the rest
        runs.append((name, "wiener", kind, root, str(model_path), modes))
        if name == "polyu_report" and baseline is not None:  # the install decision needs this one next
            runs.append(("baseline_polyu_report", "wiener", kind, root, baseline, ["fast", "bsgd"]))
        runs.append((name, "none", kind, root, str(model_path), modes))
    facts: dict[str, Any] = {"status": "running", "modes": modes, "limit": plan.benchmark_limit,
                             "baseline_model": baseline}

    def check(event: Progress) -> None:
        if until.expired():
            raise StageTimeout(f"benchmark deadline passed during {event.kind}")

    for name, refine, kind, root, model, methods in runs:
        if not root.exists():
            facts.setdefault("missing", []).append(str(root))
            continue
        if until.expired():
            facts["status"] = "cut off"
            return facts
        sampler = SamplerOverrides(refine=refine)
        started = time.perf_counter()
        try:
            result = run_benchmark(kind, root, methods, model=model, sampler=sampler, runtime=runtime,
                                   out_dir=work / "bench" / f"{name}-{refine}",
                                   limit=plan.benchmark_limit, progress=check, ssim=plan.benchmark_ssim)
        except StageTimeout as exc:
            facts["status"] = "cut off"
            facts["cut_off_in"] = f"{name} {refine}: {exc}"
            return facts
        facts.setdefault(name, {})[refine] = _means(result)
        line = "  ".join(f"{method} {row['psnr']:.2f}" for method, row in facts[name][refine].items()
                         if row["psnr"] is not None)
        images = len(result.per_image) // max(1, len(result.results))
        report(
            f"benchmark: {name} {'with Wiener' if refine == 'wiener' else 'alone'} ({images} "
            f"images, {time.perf_counter() - started:.0f} s): {line}"
        )
        record(facts)
    facts["status"] = "done"
    return facts


# ------------------------------------------------------------------------------------------------ speed
def speed_stage(plan: SlotPlan, model_path: Path, until: WallClock, report: Report,
                record: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Every mode (Wiener step included, the CLI defaults) on one generated image of
    ``plan.speed_megapixels``: MP/s, peak RSS and peak GPU memory, one mode at a time until ``until``."""
    methods, environment = build_methods(list(SPEED_MODES), model=str(model_path), runtime=resolve_runtime(plan.device))
    image = synthetic_photo(plan.speed_megapixels, seed=0)
    facts: dict[str, Any] = {"status": "running", "megapixels": round(image.shape[0] * image.shape[1] / 1e6, 3),
                             "device": environment.get("device"), "tile": 512, "batch": 1, "rows": []}
    for name in SPEED_MODES:
        if until.expired():
            facts["status"] = "cut off"
            facts["not_timed"] = [mode for mode in SPEED_MODES if mode not in {r["method"] for r in facts["rows"]}]
            return facts
        row = run_speed_benchmark({name: methods[name]}, megapixels=plan.speed_megapixels, image=image)[0]
        facts["rows"].append(row.to_dict())
        gpu = "" if row.gpu_peak_mb is None else f", GPU peak {row.gpu_peak_mb:.0f} MiB"
        report(f"speed: {name} {row.megapixels_per_second:.2f} MP/s ({row.seconds:.1f} s{gpu})")
        record(facts)
    facts["status"] = "done"
    return facts
