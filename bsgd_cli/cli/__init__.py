"""The ``bsgd`` command line: each command parses its options and calls the library.

The only module that uses typer and rich. Library errors (:class:`BsgdError`) become one line on
stderr and a non-zero exit code; no tracebacks for user errors.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .. import __version__
from .. import checks as bounds
from ..errors import BatchInterrupted
from ._support import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Heartbeat,
    OneLineErrors,
    console,
    exit_code_for,
    handle_signals,
    interrupt_word,
    number,
    one_of,
    out,
    plain,
    printable,
    say,
    user_errors,
)

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_TERMINATED", "EXIT_USAGE", "app", "main"]

EXIT_CODES_HELP = (
    "Exit codes: 0 all files done or skipped; 1 some files failed (each named on stderr); "
    "2 bad options, model or folders (nothing done); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM)."
)

app = typer.Typer(
    name="bsgd",
    help="Denoise photo folders with Blind-Spot Guided Diffusion, trained on noisy photos alone.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)


class Mode(str, Enum):
    bsgd = "bsgd"
    bsn = "bsn"
    bsn_r3 = "bsn-r3"
    fast = "fast"


class Ext(str, Enum):
    keep = "keep"
    png = "png"
    tif = "tif"
    jpg = "jpg"
    webp = "webp"
    heic = "heic"
    avif = "avif"
    jxl = "jxl"


class Init(str, Enum):
    teacher = "teacher"
    fresh = "fresh"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Domain(str, Enum):
    srgb = "srgb"
    raw = "raw"


class RawOutput(str, Enum):
    tiff = "tiff"
    dng = "dng"


class Branch(str, Enum):
    both = "both"
    bsn = "bsn"
    diffusion = "diffusion"


def _version(value: bool) -> None:
    if value:
        out.print(f"bsgd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Denoise photo folders with Blind-Spot Guided Diffusion."""


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[Progress]:
    """Rich progress bars on stderr; hidden when the command fails, so its error stays the only line."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    with progress:
        try:
            yield progress
        except BaseException:
            for task in progress.tasks:
                progress.update(task.id, visible=False)
            raise


# --------------------------------------------------------------------------------------------- denoise
def _refine(wiener: bool | None) -> str | None:
    """--wiener/--no-wiener as a sampler ``refine`` value (None: the model's default)."""
    return None if wiener is None else ("wiener" if wiener else "none")


@app.command(epilog=EXIT_CODES_HELP)
def denoise(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders (sRGB or camera RAW).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder (mirrors the input tree).")],
    model: Annotated[str | None, typer.Option(help="Model file or name; the embedded default when omitted.")] = None,
    mode: Annotated[Mode | None, typer.Option(help="bsgd (guided diffusion), bsn, bsn-r3, or fast (distilled student).")] = None,
    steps: Annotated[int | None, typer.Option(parser=number(bounds.STEPS), help="DDIM steps K (bsgd mode), 1 to 100.")] = None,
    guidance: Annotated[float | None, typer.Option(parser=number(bounds.GUIDANCE), help="Blind-spot guidance weight w (1 = blind-spot only), 0 to 3.")] = None,
    runs: Annotated[int | None, typer.Option(parser=number(bounds.RUNS), help="Runs R averaged (bsgd mode), 1 to 32.")] = None,
    t_start: Annotated[float | None, typer.Option(parser=number(bounds.T_START), help="Diffusion time to start from, 0 to 1.")] = None,
    seed: Annotated[int, typer.Option(parser=number(bounds.SEED), help="Seed; with the file and tile index it fixes every random draw.")] = 0,
    strength: Annotated[float | None, typer.Option(parser=number(bounds.STRENGTH), help="Blend with the input: 1 = fully denoised (default: the model's measured value).")] = None,
    wiener: Annotated[bool | None, typer.Option("--wiener/--no-wiener", help="Wiener refinement of the network's output, noise measured per image (default: the model's).")] = None,
    wiener_noise: Annotated[float | None, typer.Option(parser=number(bounds.WIENER_NOISE), help="Scale of the measured noise power in the Wiener step: higher is smoother (default: the model's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    precision: Annotated[Precision, typer.Option(help="auto (bf16 for --mode fast, else fp32), fp32, or bf16/fp16 autocast.")] = Precision.auto,
    tile: Annotated[int, typer.Option(parser=number(bounds.TILE), help="Tile side in pixels (halved automatically on out-of-memory).")] = 512,
    overlap: Annotated[int, typer.Option(parser=number(bounds.OVERLAP), help="Tile overlap in pixels, blended smoothly.")] = 32,
    batch: Annotated[int, typer.Option(parser=number(bounds.TILE_BATCH), help="Tiles per network call (GPU).")] = 1,
    ext: Annotated[Ext, typer.Option(help="Output format: keep the input's (RAW -> 16-bit TIFF), png, tif, jpg, webp, heic, avif, jxl.")] = Ext.keep,
    suffix: Annotated[str, typer.Option(help="Appended to output file names, e.g. _denoised (no path separators).")] = "",
    bit_depth: Annotated[int | None, typer.Option(parser=one_of(*bounds.BIT_DEPTHS), help="8 or 16 (default: the input's; RAW gives 16). 16 needs --ext png or tif (heic keeps 12 bits).")] = None,
    quality: Annotated[int, typer.Option(parser=number(bounds.QUALITY), help="JPEG/WebP/HEIC/AVIF/JPEG XL quality, 1 to 100 (100: lossless JPEG XL).")] = 95,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Redo outputs that already exist (default: skip them).")] = False,
    in_place: Annotated[bool, typer.Option(help="Allow -o to be the input folder, with a --suffix (inputs are still never replaced).")] = False,
    max_megapixels: Annotated[float, typer.Option(parser=number(bounds.MEGAPIXELS), help="Refuse larger images before decoding them.")] = 200.0,
    workers: Annotated[int, typer.Option(parser=number(bounds.WORKERS), help="Threads decoding and encoding beside the model.")] = 2,
    compare: Annotated[bool, typer.Option(help="Also write NAME_compare.png: 100% crops, before | after.")] = False,
    domain: Annotated[Domain | None, typer.Option(help="raw: denoise the Bayer mosaic of RAW files (needs a RAW-domain model); default: the model's.")] = None,
    raw_output: Annotated[RawOutput, typer.Option(help="RAW domain: tiff (developed by LibRaw, 16-bit) or dng (the denoised mosaic, editable).")] = RawOutput.tiff,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display (a long job still prints a line a minute).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary (one object per file) on stdout.")] = False,
) -> None:
    """Denoise photos: bsgd denoise ./photos -o ./clean"""
    from ..batch.denoise import DenoiseOptions, denoise_paths
    from ..batch.planning import check_suffix
    from ..checkpoint import load_model
    from ..engine.runtime import check_runtime
    from ..io.paths import check_output_folder
    from ..training.distributed import gather_results, shard_for_this_process

    with user_errors():
        # Bad settings are refused before the model is loaded or any file is looked at.
        check_runtime(device, precision.value)
        check_output_folder(output)
        check_suffix(suffix)
        bounds.check_bit_depth(bit_depth, ext.value)
        options = DenoiseOptions(
            mode=mode.value if mode else None, steps=steps, guidance=guidance, runs=runs, t_start=t_start,
            seed=seed, tile=tile, overlap=overlap, batch=batch, device=device, precision=precision.value,
            strength=strength, refine=_refine(wiener), wiener_noise=wiener_noise,
            ext=ext.value, suffix=suffix, bit_depth=bit_depth, quality=quality,
            overwrite=overwrite, in_place=in_place, recursive=recursive, max_megapixels=max_megapixels,
            workers=workers, compare=compare, shard=shard_for_this_process(),
            domain=domain.value if domain else None, raw_output=raw_output.value,
        )
        loaded = load_model(model)
        report: dict[str, list[str]] = {"skipped": [], "notes": []}
        try:
            with _progress(quiet or json_out) as progress:
                results = denoise_paths(list(inputs), output, loaded, options,
                                        on_event=_DenoiseDisplay(progress, Heartbeat(quiet or json_out), report))
        except BatchInterrupted as stopped:
            _denoise_summary(stopped.results, output, json_out, quiet, report, stopped=stopped)
            raise typer.Exit(exit_code_for(stopped)) from None
        gathered = gather_results(results)  # under torchrun: every rank's results, on rank 0 only
        if gathered is None:
            return  # another rank: rank 0 prints the summary and exits 1 if any rank had failures
        summary = _denoise_summary(gathered, output, json_out, quiet, report)
    if summary["failed"]:
        raise typer.Exit(EXIT_SOME_FAILED)


class _DenoiseDisplay:
    """The batch's events as progress bars, one line per failure, warning and skip, and a heartbeat."""

    def __init__(self, progress: Progress, heartbeat: Heartbeat, report: dict[str, list[str]]) -> None:
        self.progress, self.heartbeat, self.report = progress, heartbeat, report
        self.files = progress.add_task("files", total=None, rate="")
        self.tiles = progress.add_task("tiles", total=None, rate="", visible=False)
        self.megapixels, self.finished, self.total = 0.0, 0, 0
        self.current, self.tile_text = "", ""
        self.started = self.file_started = time.perf_counter()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind == "start":
            self.total = event["files"]
            self.progress.update(self.files, total=event["files"])
            for warning in event["warnings"]:
                say("skipped", warning, "yellow")
            for note in event.get("notes", []):
                say("note", note, "yellow")
            self.report["skipped"], self.report["notes"] = list(event["warnings"]), list(event.get("notes", []))
        elif kind == "file":
            self.file_started = time.perf_counter()
            self.current, self.tile_text = Path(event["path"]).name, ""
            self.progress.update(self.tiles, description=printable(self.current)[:40], completed=0, total=None, visible=True)
        elif kind == "tiles":
            self.tile_text = f", tile {event['done']}/{event['total']}"
            elapsed = time.perf_counter() - self.file_started
            self.progress.update(self.tiles, completed=event["done"], total=event["total"], rate=f"{elapsed:.0f}s")
        elif kind == "result":
            self._result(event["result"])
        self.heartbeat.beat(lambda: f"{self.finished}/{self.total} files done; on {self.current}{self.tile_text}")

    def _result(self, result: Any) -> None:
        self.finished += 1
        if result.status == "failed":
            say("failed", result.error, "red")
        for note in result.warnings:
            say("warning", f"{result.input}: {note}", "yellow")
        if result.status == "done":
            self.megapixels += result.megapixels
        elapsed = time.perf_counter() - self.started
        rate = f"{self.megapixels / elapsed:.3f} MP/s" if elapsed > 0 and self.megapixels else ""
        self.progress.update(self.files, advance=1, rate=rate)


def _denoise_summary(results: list, output: Path, json_out: bool, quiet: bool, report: dict[str, list[str]],
                     stopped: BatchInterrupted | None = None) -> dict[str, Any]:
    """Print the summary (a line, or the JSON report); for an interrupted batch say what is left."""
    from ..batch.denoise import summarise

    summary = summarise(results)
    if stopped is not None:
        summary["not_started"] = max(0, stopped.total - len(results))
        summary["interrupted"] = "SIGTERM" if exit_code_for(stopped) == EXIT_TERMINATED else "SIGINT"
    if json_out:
        files = [r.to_dict() for r in results]
        for entry in files:  # messages stay one line wherever a reader prints them; paths stay exact
            entry["error"] = printable(entry["error"]) if entry["error"] else entry["error"]
            entry["warnings"] = [printable(w) for w in entry["warnings"]]
        payload = {"summary": summary, "files": files, "skipped": [printable(w) for w in report["skipped"]],
                   "notes": [printable(n) for n in report["notes"]]}
        # ASCII escapes keep the JSON valid UTF-8 for file names that are not (\udcXX escapes).
        out.print_json(json.dumps(payload), ensure_ascii=True)
    line = (f"{summary['done']} denoised, {summary['skipped']} skipped (already there), "
            f"{summary['failed']} failed -> {output}")
    if stopped is not None:
        say(f"{interrupt_word(stopped)}:", f"{line}, {summary['not_started']} not started; finished files are "
            "complete, nothing partial was left; rerun the same command to continue", "yellow")
    elif not quiet and not json_out:
        say("", line)
    return summary


# ----------------------------------------------------------------------------------------------- train
@app.command()
def train(
    noisy_dir: Annotated[Path, typer.Option(help="Folder of noisy photos (any size, sRGB or RAW, searched recursively).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder: model.safetensors, best.safetensors, state.pt, log.jsonl.")],
    preset: Annotated[str, typer.Option(help="Network size: small (2 CPU cores), gpu (short GPU slots, docs/GPU.md), paper (large GPU runs), tiny (tests).")] = "small",
    steps: Annotated[int, typer.Option(parser=number(bounds.TRAIN_STEPS), help="Total optimiser steps (on --resume: the new total).")] = 2000,
    batch: Annotated[int, typer.Option(parser=number(bounds.TRAIN_BATCH), help="Patches per step.")] = 8,
    patch: Annotated[int, typer.Option(parser=number(bounds.PATCH), help="Patch side, a multiple of the PD stride (5).")] = 120,
    lr: Annotated[float, typer.Option(parser=number(bounds.LEARNING_RATE), help="Peak AdamW learning rate, above 0 and at most 1.")] = 3e-4,
    branch: Annotated[Branch, typer.Option(help="Train both branches, or only the blind-spot or diffusion one.")] = Branch.both,
    precision: Annotated[Precision, typer.Option(help="bf16 autocast (about 3x faster than fp32 on the CPU it was timed on).")] = Precision.bf16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(parser=number(bounds.SEED), help="Seed for weights, patches and noise.")] = 0,
    val_pairs: Annotated[Path | None, typer.Option(help="Noisy/clean pairs: report PSNR (bsn mode) and keep the best checkpoint by it.")] = None,
    val_every: Annotated[int, typer.Option(parser=number(bounds.EVERY), help="Validate every N steps.")] = 250,
    checkpoint_every: Annotated[int, typer.Option(parser=number(bounds.EVERY), help="Save state.pt every N steps.")] = 500,
    log_every: Annotated[int, typer.Option(parser=number(bounds.EVERY), help="Log every N steps.")] = 25,
    resume: Annotated[bool, typer.Option(help="Continue the run in --output from its state.pt.")] = False,
    domain: Annotated[Domain, typer.Option(help="raw: train on the Bayer mosaic of RAW files (4 packed planes; --patch in half-size pixels).")] = Domain.srgb,
    pd_train: Annotated[int | None, typer.Option(parser=number(bounds.PD_STRIDE), help="PD stride while training (default: 5 for srgb, 1 for raw).")] = None,
    pd_infer: Annotated[int | None, typer.Option(parser=number(bounds.PD_STRIDE), help="PD stride when denoising (default: 2 for srgb, 1 for raw).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display (a long run still prints a line a minute).")] = False,
) -> None:
    """Train on your own noisy captures: bsgd train --noisy-dir ./captures -o ./my_model"""
    from ..config import PRESETS, TrainConfig
    from ..engine.runtime import check_runtime
    from ..errors import ConfigError
    from ..io.paths import check_output_folder
    from ..raw.domain import training_model_config
    from ..training.distributed import distributed_context
    from ..training.train import train as run_training

    with user_errors("the training state was saved; continue with the same command and --resume"):
        if preset not in PRESETS:
            raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        train_precision = "bf16" if precision is Precision.auto else precision.value
        check_runtime(device, train_precision)
        check_output_folder(output)
        config = TrainConfig(
            steps=steps, batch=batch, patch=patch, lr=lr, branch=branch.value, precision=train_precision,  # type: ignore[arg-type]
            seed=seed, val_every=val_every, checkpoint_every=checkpoint_every, log_every=log_every,
        )
        heartbeat = Heartbeat(quiet)
        with distributed_context(device) as dist_info, _progress(quiet or not dist_info.is_main) as progress:
            task = progress.add_task("training", total=steps, rate="")

            def on_event(event: dict[str, Any]) -> None:
                if event["kind"] == "log":
                    parts = [f"{k.removeprefix('loss_')} {event[k]:.4f}" for k in event if k.startswith("loss_")]
                    if "val_psnr" in event:
                        parts.append(f"val {event['val_psnr']:.2f} dB")
                    elif "val_loss" in event:
                        parts.append(f"val {event['val_loss']:.4f}")
                    parts.append(f"{event.get('patches_per_s', 0):.1f} patches/s")
                    progress.update(task, completed=event["step"], rate="  ".join(parts))
                else:
                    progress.update(task, completed=event["step"])
                if dist_info.is_main:
                    heartbeat.beat(lambda: f"training step {event['step']}/{event.get('total', steps)}")

            summary = run_training(
                noisy_dir, output, model_config=training_model_config(PRESETS[preset], domain.value, pd_train=pd_train, pd_infer=pd_infer),
                config=config, resume=resume,
                val_pairs=val_pairs, device=dist_info.device, callback=on_event,
                info={"preset": preset, "noisy_dir": str(noisy_dir)},
            )
        if dist_info.is_main:
            for line in summary.skipped:
                say("skipped", line, "yellow")
            best = f"{summary.best_value:.4f} ({summary.best_metric}) at step {summary.best_step}" if summary.best_value is not None else "n/a"
            say("", f"trained {summary.steps} steps in {summary.seconds / 60:.1f} min; best {best}")
            say("", f"model: {output / 'model.safetensors'}   best: {output / 'best.safetensors'}")


@app.command()
def plot(
    run: Annotated[Path, typer.Argument(help="A training run folder (with log.jsonl).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="PNG to write (default RUN/curves.png).")] = None,
) -> None:
    """Draw a training run's loss and validation curves to a PNG."""
    from ..io.paths import check_output_file
    from ..viz.plotting import plot_training_log

    with user_errors("nothing was written"):
        if output is not None:
            check_output_file(output)
        target = plot_training_log(run, output)
    say("", f"wrote {target}")


@app.command()
def distill(
    noisy_dir: Annotated[Path, typer.Option(help="The noisy training photos (the teacher's own, or any).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for targets.npz, log.jsonl and model.safetensors.")],
    model: Annotated[str | None, typer.Option(help="Teacher model file or name; the embedded default when omitted.")] = None,
    teacher_mode: Annotated[Mode | None, typer.Option(help="The teacher's mode (default: the model's stored one).")] = None,
    teacher_wiener: Annotated[bool | None, typer.Option("--teacher-wiener/--no-teacher-wiener", help="The Wiener step in the teacher (default: the model's).")] = None,
    steps: Annotated[int, typer.Option(parser=number(bounds.TRAIN_STEPS), help="Student training steps (the schedule's length).")] = 2000,
    minutes: Annotated[float | None, typer.Option(parser=number(bounds.MINUTES), help="Stop the student's training this many minutes after the command starts (teacher outputs included).")] = None,
    width: Annotated[int | None, typer.Option(parser=number(bounds.STUDENT_WIDTH), help="Student width, 4 to 512 (default: the teacher's student's, else 32).")] = None,
    init: Annotated[Init, typer.Option(help="teacher: fine-tune the teacher's student; fresh: random weights.")] = Init.teacher,
    crop: Annotated[int | None, typer.Option(parser=number(bounds.CROP), help="Run the teacher on random crops of this side, 32 to 4096 (default: whole images).")] = None,
    crops_per_image: Annotated[int, typer.Option(parser=number(bounds.CROPS_PER_IMAGE), help="Teacher crops per training image, with --crop.")] = 2,
    lr: Annotated[float, typer.Option(parser=number(bounds.LEARNING_RATE), help="Peak learning rate.")] = 1e-3,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    precision: Annotated[Precision, typer.Option(help="Student training precision.")] = Precision.bf16,
    seed: Annotated[int, typer.Option(parser=number(bounds.SEED))] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display (a long run still prints a line a minute).")] = False,
) -> None:
    """Distil a teacher pipeline (default: the model's own, Wiener step included) into the fast student."""
    from ..checkpoint import load_model
    from ..config import StudentConfig, replace
    from ..engine.runtime import check_runtime
    from ..io.paths import check_output_folder
    from ..training.distill import DistillConfig
    from ..training.distill import distill as run_distill
    from ..training.optim import WallClock

    with user_errors("the student was not saved; rerun the same command (finished teacher outputs in targets.npz are reused)"):
        student_precision = "bf16" if precision is Precision.auto else precision.value
        check_runtime(device, student_precision)
        check_output_folder(output)
        teacher = load_model(model)
        sampler = replace(teacher.sampler, mode=teacher_mode.value if teacher_mode else None, refine=_refine(teacher_wiener))
        config = DistillConfig(steps=steps, crops_per_image=crops_per_image, crop=crop, seed=seed,
                               precision=student_precision, patch=min(96, crop or 96), lr=lr, init=init.value)
        heartbeat = Heartbeat(quiet)
        with _progress(quiet) as progress:
            targets = progress.add_task("teacher outputs", total=None, rate="")
            task = progress.add_task("student", total=steps, rate="")

            def on_event(event: dict[str, Any]) -> None:
                if event["kind"] == "targets":
                    progress.update(targets, completed=event["done"], total=event["total"])
                    heartbeat.beat(lambda: f"teacher output {event['done']}/{event['total']}")
                else:
                    progress.update(task, completed=event["step"], rate=f"loss {event['loss_student']:.4f}")
                    heartbeat.beat(lambda: f"student step {event['step']}/{steps}")

            budget = None if minutes is None else WallClock.start(60.0 * minutes)
            path = run_distill(teacher, noisy_dir, output, student=None if width is None else StudentConfig(width=width),
                               config=config, sampler=sampler, device=device, callback=on_event, budget=budget)
    say("", f"model with student: {path} (use --mode fast)")


# ------------------------------------------------------------------------------------------- benchmark
@app.command()
def benchmark(
    dataset: Annotated[str | None, typer.Option(help="sidd, sidd-medium, dnd, polyu, cc, pairs, sidd-pair, noisy.")] = None,
    root: Annotated[Path | None, typer.Option(help="The data set's folder or .mat file.")] = None,
    speed: Annotated[bool, typer.Option("--speed", help="Time the methods on a generated image instead (MP/s, peak memory).")] = False,
    megapixels: Annotated[float, typer.Option(parser=number(bounds.MEGAPIXELS), help="Size of the generated image for --speed.")] = 1.0,
    methods: Annotated[str, typer.Option(help="Comma list of noisy, nlm, bm3d, bsn, bsn-r3, bsgd, fast.")] = "noisy,nlm,bsn,bsgd",
    out_dir: Annotated[Path, typer.Option("--out", help="Where results.json and the reports go.")] = Path("bench-out"),
    model: Annotated[str | None, typer.Option(help="Model file or name; the embedded default when omitted.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N images.")] = None,
    steps: Annotated[int | None, typer.Option(parser=number(bounds.STEPS))] = None,
    guidance: Annotated[float | None, typer.Option(parser=number(bounds.GUIDANCE))] = None,
    runs: Annotated[int | None, typer.Option(parser=number(bounds.RUNS))] = None,
    t_start: Annotated[float | None, typer.Option(parser=number(bounds.T_START))] = None,
    seed: Annotated[int, typer.Option(parser=number(bounds.SEED))] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    precision: Annotated[Precision, typer.Option(help="auto: bf16 for fast, fp32 otherwise.")] = Precision.auto,
    tile: Annotated[int, typer.Option(parser=number(bounds.TILE))] = 512,
    strength: Annotated[float | None, typer.Option(parser=number(bounds.STRENGTH), help="Blend with the input (default: the model's).")] = None,
    wiener: Annotated[bool | None, typer.Option("--wiener/--no-wiener", help="Wiener refinement (default: the model's).")] = None,
    wiener_noise: Annotated[float | None, typer.Option(parser=number(bounds.WIENER_NOISE), help="Scale of the measured noise power in the Wiener step.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display (a long run still prints a line a minute).")] = False,
) -> None:
    """Measure PSNR/SSIM and speed on a real data set: bsgd benchmark --dataset polyu --root PATH"""
    from ..benchmark.evaluate import BsgdSettings, run_benchmark
    from ..benchmark.runner import format_results_table
    from ..engine.runtime import check_runtime
    from ..errors import ConfigError
    from ..io.paths import check_output_folder

    with user_errors("nothing was written; rerun the same command"):
        check_runtime(device, precision.value)
        check_output_folder(out_dir, "--out")
        settings = BsgdSettings(
            model=model, steps=steps, guidance=guidance, runs=runs, t_start=t_start, seed=seed,
            device=device, precision=precision.value, tile=tile, strength=strength,
            refine=_refine(wiener), wiener_noise=wiener_noise,
        )
        names = [m.strip() for m in methods.split(",") if m.strip()]
        if speed:
            _speed_benchmark(names, settings, megapixels, out_dir)
            return
        if dataset is None or root is None:
            raise ConfigError("give --dataset and --root, or --speed")
        heartbeat = Heartbeat(quiet)
        with _progress(quiet) as progress:
            task = progress.add_task("benchmark", total=None, rate="")

            def on_progress(event: str, **info: Any) -> None:
                if "total" in info:
                    progress.update(task, total=info["total"])
                if event in ("image_done", "sample_done", "image"):
                    progress.update(task, advance=1, rate=str(info.get("name", "")))
                heartbeat.beat(lambda: f"benchmark {event} {info.get('name', '')}".strip())

            result = run_benchmark(
                dataset, root, names, settings,
                out_dir=out_dir, limit=limit, progress=on_progress,
            )
        rows = format_results_table(result)
        table = Table(title=plain(f"{dataset}: {root}"))
        for header in rows[0]:
            table.add_column(plain(header))
        for row in rows[1:]:
            table.add_row(*[plain(cell) for cell in row])
        out.print(table)
        say("", f"results: {out_dir / 'results.json'}   report: {out_dir / 'report.html'}")


def _speed_benchmark(names: list[str], settings: Any, megapixels: float, out_dir: Path) -> None:
    from ..benchmark.evaluate import build_methods
    from ..benchmark.speed import run_speed_benchmark

    callables, environment = build_methods([n for n in names if n != "noisy"], settings)
    rows = run_speed_benchmark(callables, megapixels=megapixels, seed=settings.seed)
    table = Table(title=f"speed on a generated {megapixels:g} MP image")
    for column in ("method", "MP/s", "s/MP", "peak RSS (MB)", "GPU peak (MB)"):
        table.add_column(column)
    for row in rows:
        data = row.to_dict()
        table.add_row(plain(row.method), f"{data['megapixels_per_second']:.3f}", f"{data['seconds_per_megapixel']:.2f}",
                      f"{data['peak_rss_mb']:.0f}", "-" if data["gpu_peak_mb"] is None else f"{data['gpu_peak_mb']:.0f}")
    out.print(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    from ..benchmark.runner import collect_environment

    payload = {"environment": collect_environment(environment), "speed": [row.to_dict() for row in rows]}
    (out_dir / "speed.json").write_text(json.dumps(payload, indent=1))
    say("", f"results: {out_dir / 'speed.json'}")


# ---------------------------------------------------------------------------------------------- models
@app.command()
def models() -> None:
    """List the embedded and user models with their config, training data and measured numbers."""
    from ..catalogue import list_models

    with user_errors("nothing was listed"):
        entries = list_models()
    table = Table(title="bsgd models")
    for column in ("name", "size", "branches", "training data", "sampler defaults", "measured", "path"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(*[plain(entry[key]) for key in ("name", "size", "branches", "data", "sampler", "measured", "path")])
    out.print(table)


@app.command()
def samples(
    output: Annotated[Path, typer.Argument(help="Folder to write noisy sample photos into.")],
    count: Annotated[int, typer.Option(min=1, max=8)] = 4,
    seed: Annotated[int, typer.Option(parser=number(bounds.SEED))] = 0,
) -> None:
    """Write a few photos with realistic synthetic camera noise (for the demo)."""
    from ..io.paths import check_output_folder
    from ..viz.samples import make_noisy_samples

    with user_errors("the samples written so far are complete; rerun the same command"):
        check_output_folder(output, "OUTPUT")
        written = make_noisy_samples(output, count=count, seed=seed)
    say("", f"wrote {len(written)} noisy samples to {output}")


def main() -> None:
    """Console-script entry point: SIGTERM is handled like Ctrl-C from the start."""
    handle_signals()
    try:
        app()
    except KeyboardInterrupt as exc:  # raised outside a command body
        say(f"{interrupt_word(exc)}", "", "yellow")
        sys.exit(exit_code_for(exc))


if __name__ == "__main__":
    main()
