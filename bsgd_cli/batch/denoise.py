"""Batch denoising of files and folders: the library behind ``bsgd denoise``.

Every input is read, denoised tile by tile and written atomically (temporary file, then rename),
so a killed run never leaves a truncated image; a rerun skips outputs that exist. A bad file is
reported in its :class:`FileResult` and the batch goes on. Decoding of the next files and encoding
of finished ones run in worker threads while the model works.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import checks
from ..config import Domain, OutputExt, RawOutput, SamplerOverrides, TilingConfig
from ..engine.denoise import MIN_SIDE, denoise_array, resolve_sampler
from ..engine.model import LoadedModel
from ..engine.runtime import Runtime, resolve_runtime
from ..errors import BatchInterrupted, BsgdError, ImageWriteError
from ..events import Progress, ProgressFn, ignore
from ..io import ImageData, read_image, write_image
from ..io._atomic import remove_stale_temps
from ..io.imagedata import special_kind
from ..raw.domain import RawInput, load_fallback_model, read_raw_input, resolve_domain, write_raw_result
from ..viz.compare import before_after
from .planning import COMPARE_TAIL, Batch, Job, Naming, claims, collect_jobs

Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True, kw_only=True)
class DenoiseOptions:
    """How to denoise and where to write.

    sampler: changes to the model's stored sampler defaults; tiling: tile side, overlap, tiles per
    call; runtime: device and precision (None: ``auto``, resolved when the batch starts); seed: with
    the file and tile index, fixes every random draw.
    """

    sampler: SamplerOverrides = SamplerOverrides()
    tiling: TilingConfig = TilingConfig()
    runtime: Runtime | None = None
    seed: int = 0
    ext: OutputExt = "keep"
    suffix: str = ""
    bit_depth: int | None = None
    quality: int = 95
    overwrite: bool = False
    in_place: bool = False
    recursive: bool = False
    max_megapixels: float = 200.0
    workers: int = 2
    compare: bool = False
    shard: tuple[int, int] | None = None  # (rank, world size): this process does files i % world == rank
    domain: Domain | None = None  # "srgb" or "raw" (bsgd_cli.raw.domain); None: the model's own domain
    raw_output: RawOutput = "tiff"  # RAW domain: "tiff" (developed by LibRaw) or "dng" (the denoised mosaic)


@dataclass
class FileResult:
    """Outcome for one input: ``status`` is done, skipped (output existed) or failed (``error`` says why)."""

    input: str
    output: str | None
    status: Status
    seconds: float = 0.0
    megapixels: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_options(options: DenoiseOptions, model: LoadedModel) -> None:
    """Refuse bad settings before any file is touched (the CLI refuses them earlier still).

    The tiling and the runtime were checked when they were made."""
    checks.WORKERS.check("--workers", options.workers)
    checks.QUALITY.check("--quality", options.quality)
    checks.MEGAPIXELS.check("--max-megapixels", options.max_megapixels)
    checks.SEED.check("--seed", options.seed)
    checks.STEPS.check("--steps", options.sampler.steps)
    checks.RUNS.check("--runs", options.sampler.runs)
    checks.check_bit_depth(options.bit_depth, options.ext)
    # The sampler settings as every file will get them (guidance, t_start, strength ... in range).
    options.sampler.apply(model.sampler)


def naming_for(options: DenoiseOptions) -> Naming:
    return Naming(ext=options.ext, suffix=options.suffix, raw_output=options.raw_output, compare=options.compare)


def _read(source: Path, options: DenoiseOptions) -> ImageData | RawInput:
    if options.domain == "raw":
        return read_raw_input(source, max_megapixels=options.max_megapixels)
    return read_image(source, max_megapixels=options.max_megapixels)


def _write(target: Path, pixels: np.ndarray, image: ImageData, options: DenoiseOptions) -> None:
    # write_image creates missing folders itself, with an error that says what to do
    write_image(target, pixels, like=image, bit_depth=options.bit_depth, quality=options.quality)


def _write_compare(target: Path, noisy: np.ndarray, denoised: np.ndarray) -> Path:
    path = target.with_name(f"{target.stem}{COMPARE_TAIL}")
    write_image(path, before_after(noisy, denoised), bit_depth=8)
    return path


def _batch_notes(batch: Batch, options: DenoiseOptions) -> list[str]:
    """Notes about the whole batch that are not skips: 16-bit outputs a format cannot hold."""
    if options.bit_depth != 16:
        return []
    eight_bit = [job for job in batch.jobs if job.target.suffix.lower() in checks.EIGHT_BIT_EXTENSIONS]
    if not eight_bit:
        return []
    return [
        f"--bit-depth 16: {len(eight_bit)} output(s) keep the input's JPEG or WebP format, which holds 8 bits "
        f"(first: {eight_bit[0].target}); use --ext png or --ext tif for 16 bits"
    ]


def _remove_stale_temps(jobs: list[Job], options: DenoiseOptions) -> None:
    """A run killed mid-write (SIGKILL) can leave a hidden ``.NAME.XXXX.partial.ext``; remove those of
    this run's outputs (and only this shard's), so reruns leave no litter."""
    remove_stale_temps([path for job in jobs for path in claims(job.target, job.source, naming_for(options))])


class _Prefetch:
    """Decodes submitted ``workers`` files ahead of the model; :meth:`cancel` drops those not started."""

    def __init__(self, jobs: list[Job], options: DenoiseOptions, pool: ThreadPoolExecutor) -> None:
        self.jobs, self.options, self.pool = jobs, options, pool
        self.pending: list[tuple[Job, Future | None]] = []

    def __iter__(self) -> Iterator[tuple[Job, Future | None]]:
        ahead = max(1, self.options.workers)
        for job in self.jobs:
            # Only a file counts as an earlier output: a folder or a pipe of that name is not one.
            skip = os.path.isfile(job.target) and not self.options.overwrite
            self.pending.append((job, None if skip else self.pool.submit(_read, job.source, self.options)))
            if len(self.pending) > ahead:
                yield self.pending.pop(0)
        while self.pending:
            yield self.pending.pop(0)

    def cancel(self) -> None:
        for _job, future in self.pending:
            if future is not None:
                future.cancel()


def _denoise_one(job: Job, image: ImageData | RawInput, model: LoadedModel, options: DenoiseOptions,
                 fallback: dict[str, LoadedModel], emit: ProgressFn) -> tuple[np.ndarray, Path]:
    """(denoised pixels, target): the model's output for one decoded image."""
    target = job.target
    model_used = model
    if getattr(image, "fallback", False):  # RAW domain, no Bayer mosaic: sRGB model, TIFF
        if "model" not in fallback:  # loaded once per run (setdefault would load it every time)
            fallback["model"] = load_fallback_model(job.source)
        model_used = fallback["model"]
        # planning reserved this name for the input (bsgd_cli.batch.planning.claims)
        target = target.with_suffix(".tif") if target.suffix.lower() == ".dng" else target
    assert options.runtime is not None  # resolved by denoise_paths
    sampler = resolve_sampler(model_used, options.sampler, options.runtime.device)
    denoised = denoise_array(model_used, image.pixels, sampler=sampler, tiling=options.tiling, runtime=options.runtime,
                             seed=options.seed, image_index=job.index, progress=emit)
    return denoised, target


def _file_notes(job: Job, image: ImageData | RawInput, denoised: np.ndarray) -> list[str]:
    notes = list(job.notes) + list(getattr(image, "warnings", []))
    height, width = image.pixels.shape[:2]
    small = min(height, width) < MIN_SIDE
    if small:
        notes.append(
            f"only {width}x{height} pixels: denoised with its mirror image around it for context, "
            "so less noise may be removed than from a full photo"
        )
    tonal = tonal_warning(image.pixels, denoised, small=small)
    if tonal is not None:
        notes.append(tonal)
    return notes


def denoise_paths(
    inputs: list[Path],
    out_dir: Path,
    model: LoadedModel,
    options: DenoiseOptions,
    *,
    on_event: ProgressFn | None = None,
) -> list[FileResult]:
    """Denoise files and folders into ``out_dir`` (mirroring folder structure); never raises for one bad file.

    Events (:class:`~bsgd_cli.events.Progress`) sent to ``on_event``: ``start`` (total: files; data:
    warnings, the skip notes, and notes), ``file`` (done: its index; name: its path; data: megapixels),
    ``tiles`` (done, total), ``result`` (data: result, its :class:`FileResult`).

    Ctrl-C or SIGTERM (a KeyboardInterrupt) stops the batch: decodes not started are dropped, the
    writes in flight are finished, and :class:`~bsgd_cli.errors.BatchInterrupted` carries the results.
    """
    check_options(options, model)

    domain = resolve_domain(model.model.config, options.domain, options.raw_output, str(model.path or "the model"))
    options = replace(options, domain=domain, runtime=options.runtime or resolve_runtime())
    out_dir = Path(out_dir)
    batch = collect_jobs(
        [Path(p) for p in inputs], out_dir, naming_for(options),
        recursive=options.recursive, in_place=options.in_place, shard=options.shard,
    )
    emit = on_event or ignore
    _remove_stale_temps(batch.jobs, options)
    emit(Progress("start", total=len(batch.jobs) + len(batch.unlisted),
                  data={"warnings": batch.notes, "notes": _batch_notes(batch, options)}))
    results: list[FileResult] = []
    for folder, reason in batch.unlisted:
        results.append(
            FileResult(str(folder), None, "failed", error=f"{folder}: {reason}; the images in it were not processed")
        )
        emit(Progress("result", data={"result": results[-1]}))
    try:
        results += _run_jobs(batch.jobs, model, options, emit)
    except BatchInterrupted as stopped:
        stopped.results[:0] = results
        stopped.total += len(batch.unlisted)
        raise
    return results


def _run_jobs(jobs: list[Job], model: LoadedModel, options: DenoiseOptions, emit: ProgressFn) -> list[FileResult]:
    results: list[FileResult] = []
    writes: list[tuple[FileResult, Future]] = []
    fallback: dict[str, LoadedModel] = {}  # RAW domain: the sRGB model for non-Bayer files, loaded once
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        prefetch = _Prefetch(jobs, options, pool)
        try:
            for job, decoded in prefetch:
                if decoded is None:
                    results.append(FileResult(str(job.source), str(job.target), "skipped", warnings=list(job.notes)))
                    emit(Progress("result", data={"result": results[-1]}))
                    continue
                started = time.perf_counter()
                try:
                    _check_target(job.target)
                    image = decoded.result()
                    megapixels = (
                        getattr(image, "megapixels", None) or image.pixels.shape[0] * image.pixels.shape[1] / 1e6
                    )
                    emit(Progress("file", done=job.index, name=str(job.source), data={"megapixels": megapixels}))
                    denoised, target = _denoise_one(job, image, model, options, fallback, emit)
                except (BsgdError, MemoryError, RuntimeError, ValueError, OSError) as exc:
                    message = _failure(job.source, exc)
                    results.append(
                        FileResult(str(job.source), None, "failed", time.perf_counter() - started, error=message)
                    )
                    emit(Progress("result", data={"result": results[-1]}))
                    continue
                result = FileResult(str(job.source), str(target), "done", 0.0, megapixels,
                                    warnings=_file_notes(job, image, denoised))
                writes.append((result, pool.submit(_finish, target, denoised, image, options, started)))
                # Keep at most ``workers`` encodes in flight, reporting results in input order.
                while writes and (len(writes) > options.workers or writes[0][1].done()):
                    results.append(_settle(*writes.pop(0), emit))
        except KeyboardInterrupt as exc:
            prefetch.cancel()  # the file being denoised is dropped; nothing of it was written
            while writes:  # files already denoised are written completely
                results.append(_settle(*writes.pop(0), emit))
            raise BatchInterrupted(getattr(exc, "signum", 2), _in_order(results, jobs), len(jobs)) from exc
        while writes:
            results.append(_settle(*writes.pop(0), emit))
    return _in_order(results, jobs)


def _check_target(target: Path) -> None:
    """Refuse an output name taken by something that is not a file, before the work is done."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else special_kind(mode) or "not a file"
        raise ImageWriteError(f"{target}: the output name is taken by {what}; move it away or choose another -o folder")


def _failure(source: Path, exc: BaseException) -> str:
    """One line naming the file: bsgd's errors as they are, others with their type."""
    text = str(exc) if isinstance(exc, BsgdError) else f"{type(exc).__name__}: {exc}"
    return text if text.startswith(str(source)) else f"{source}: {text}"


def _in_order(results: list[FileResult], jobs: list[Job]) -> list[FileResult]:
    order = {str(job.source): position for position, job in enumerate(jobs)}
    return sorted(results, key=lambda r: order.get(r.input, 0))


def _finish(target: Path, denoised: np.ndarray, image: ImageData | RawInput, options: DenoiseOptions,
            started: float) -> float:
    if isinstance(image, RawInput):
        write_raw_result(
            target, denoised, image, bit_depth=options.bit_depth, quality=options.quality, compare=options.compare
        )
        return time.perf_counter() - started
    _write(target, denoised, image, options)
    if options.compare:
        _write_compare(target, image.pixels, denoised)
    return time.perf_counter() - started


TONAL_TOLERANCE = 0.02
"""A channel mean may move by this share of the input's mean before :func:`tonal_warning` speaks."""
TONAL_FLOOR = 0.001
"""...and by at least this much of full range (so near-black channels are not flagged for nothing)."""


def tonal_warning(
    noisy: np.ndarray,
    denoised: np.ndarray,
    *,
    tolerance: float = TONAL_TOLERANCE,
    floor: float = TONAL_FLOOR,
    small: bool = False,
) -> str | None:
    """A warning when the output's brightness drifted from the input's, else None.

    Noise has zero mean, so a denoiser that fits the camera keeps every channel's mean; a drift of
    more than ``tolerance`` (relative) and ``floor`` (absolute, of full range) in any channel is
    reported for the worst channel. Works on (H, W, C) arrays: sRGB (R, G, B) or Bayer planes
    (R, G1, G2, B). For a ``small`` image (a side under :data:`~bsgd_cli.engine.denoise.MIN_SIDE`) the
    cause named is its size, not the camera.
    """
    channels = noisy.shape[-1]
    before = noisy.reshape(-1, channels).mean(axis=0, dtype=np.float64)
    after = denoised.reshape(-1, channels).mean(axis=0, dtype=np.float64)
    change = after - before
    relative = change / np.maximum(np.abs(before), 1e-6)
    flagged = (np.abs(change) > floor) & (np.abs(relative) > tolerance)
    if not flagged.any():
        return None
    worst = int(np.argmax(np.where(flagged, np.abs(relative), -1.0)))
    names = {3: ("R", "G", "B"), 4: ("R", "G1", "G2", "B")}.get(channels, tuple(str(i) for i in range(channels)))
    word = "darker" if change[worst] < 0 else "brighter"
    cause = "the image is too small to measure its noise" if small else "the model may not fit this camera's noise"
    return (
        f"output is {word} than input by {abs(relative[worst]) * 100:.1f}% (channel {names[worst]} mean "
        f"{before[worst]:.4f} -> {after[worst]:.4f}): {cause}"
    )


def _settle(result: FileResult, future: Future, emit: ProgressFn) -> FileResult:
    try:
        result.seconds = future.result()
    except BsgdError as exc:
        result.status, result.output, result.error = "failed", None, str(exc)
    except OSError as exc:
        result.status, result.output, result.error = "failed", None, f"{result.output}: {exc}"
    emit(Progress("result", data={"result": result}))
    return result


def summarise(results: list[FileResult]) -> dict[str, Any]:
    """Counts, total megapixels and seconds, and throughput over the files denoised in this run."""
    done = [r for r in results if r.status == "done"]
    seconds = sum(r.seconds for r in done)
    megapixels = sum(r.megapixels for r in done)
    return {
        "files": len(results),
        "done": len(done),
        "skipped": sum(r.status == "skipped" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "megapixels": round(megapixels, 3),
        "seconds": round(seconds, 3),
        "megapixels_per_second": round(megapixels / seconds, 4) if seconds > 0 else None,
    }
