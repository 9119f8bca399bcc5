"""Batch denoising of files and folders: the library behind ``bsgd denoise``.

Every input is read, denoised tile by tile and written atomically (temporary file, then rename),
so a killed run never leaves a truncated image; a rerun skips outputs that exist. A bad file is
reported in its :class:`FileResult` and the batch goes on. Decoding of the next files and encoding
of finished ones run in worker threads while the model works.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .checkpoint import LoadedModel
from .errors import BsgdError, ConfigError
from .inference import denoise_array

OutputExt = Literal["keep", "png", "tif", "jpg", "webp", "heic", "avif", "jxl"]
Status = Literal["done", "skipped", "failed"]
EventFn = Callable[[dict[str, Any]], None]
_RAW_DEFAULT_EXT = ".tif"


@dataclass(frozen=True, kw_only=True)
class DenoiseOptions:
    """How to denoise and where to write. ``None`` sampler fields take the model's measured defaults."""

    mode: str | None = None
    steps: int | None = None
    guidance: float | None = None
    runs: int | None = None
    t_start: float | None = None
    seed: int = 0
    tile: int = 512
    overlap: int = 32
    batch: int = 1
    device: str = "auto"
    precision: str = "auto"
    strength: float | None = None
    refine: str | None = None  # "wiener" or "none"
    wiener_noise: float | None = None
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
    domain: str | None = None  # "srgb" or "raw" (bsgd_cli.raw_domain); None: the model's own domain
    raw_output: str = "tiff"  # RAW domain: "tiff" (developed by LibRaw) or "dng" (the denoised mosaic)


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


def output_path_for(source: Path, relative: Path, out_dir: Path, options: DenoiseOptions) -> Path:
    """``out_dir / relative`` with the chosen extension and suffix (RAW keeps as 16-bit TIFF)."""
    from .io import is_raw_path

    if options.raw_output == "dng" and is_raw_path(source):
        extension = ".dng"
    elif options.ext == "keep":
        extension = _RAW_DEFAULT_EXT if is_raw_path(source) else source.suffix
    else:
        extension = "." + options.ext
    return out_dir / relative.parent / f"{relative.stem}{options.suffix}{extension}"


def plan_outputs(found: list[tuple[Path, Path]], out_dir: Path, options: DenoiseOptions) -> list[tuple[Path, Path]]:
    """Pair every input with its output; two inputs that would share an output name never do.

    On a clash (``a.jpg`` and ``a.png`` both to ``a.png``) every clashing output gets the source's
    extension added to its stem: ``a_jpg.png`` and ``a_png.png``.
    """
    outputs = [output_path_for(src, rel, out_dir, options) for src, rel in found]
    counts: dict[str, int] = {}
    for path in outputs:
        counts[str(path).lower()] = counts.get(str(path).lower(), 0) + 1
    planned = []
    for (source, _rel), path in zip(found, outputs, strict=True):
        if counts[str(path).lower()] > 1:
            path = path.with_name(f"{path.stem}_{source.suffix.lstrip('.').lower()}{path.suffix}")
        planned.append((source, path))
    return planned


def _check_locations(inputs: list[Path], out_dir: Path, planned: list[tuple[Path, Path]], options: DenoiseOptions) -> None:
    out_resolved = out_dir.resolve()
    for item in inputs:
        folder = item.resolve() if item.is_dir() else item.resolve().parent
        if folder == out_resolved and not options.in_place:
            raise ConfigError(
                f"{out_dir}: is the input folder; choose another -o folder, or pass --in-place with a --suffix"
            )
    for source, target in planned:
        if source.resolve() == target.resolve():
            raise ConfigError(f"{source}: the output would replace the input; add a --suffix or choose another -o folder")


def _read(source: Path, options: DenoiseOptions):  # noqa: ANN202 - ImageData (RawInput in the RAW domain)
    from .io import read_image

    if options.domain == "raw":
        from .raw_domain import read_raw_input

        return read_raw_input(source, max_megapixels=options.max_megapixels)
    return read_image(source, max_megapixels=options.max_megapixels)


def _write(target: Path, pixels: np.ndarray, image, options: DenoiseOptions) -> None:  # noqa: ANN001
    from .io import write_image

    bit_depth = options.bit_depth
    # write_image creates missing folders itself, with an error that says what to do
    write_image(target, pixels, like=image, bit_depth=bit_depth, quality=options.quality)


def _write_compare(target: Path, noisy: np.ndarray, denoised: np.ndarray) -> Path:
    from .compare import before_after
    from .io import write_image

    path = target.with_name(f"{target.stem}_compare.png")
    write_image(path, before_after(noisy, denoised), bit_depth=8)
    return path


def _shard(planned: list[tuple[Path, Path]], shard: tuple[int, int] | None) -> list[tuple[int, Path, Path]]:
    indexed = [(index, source, target) for index, (source, target) in enumerate(planned)]
    if shard is None:
        return indexed
    rank, world = shard
    return [item for item in indexed if item[0] % world == rank]


def collect_inputs(inputs: list[Path], out_dir: Path, options: DenoiseOptions) -> tuple[list[tuple[int, Path, Path]], list[str]]:
    """Expand inputs into numbered (index, source, output) jobs for this shard, plus warnings."""
    from .io import find_images

    missing = [str(p) for p in inputs if not p.exists() and not p.is_symlink()]
    if missing:
        raise ConfigError(f"input not found: {', '.join(missing)}; check the path")
    # Skip our own earlier outputs when -o lies inside an input folder; an -o equal to an input
    # folder (--in-place) excludes nothing, and _check_locations guards the inputs themselves.
    out_resolved = out_dir.resolve()
    inside_input = any(
        item.is_dir() and out_resolved != item.resolve() and out_resolved.is_relative_to(item.resolve())
        for item in inputs
    )
    found, warnings = find_images(inputs, recursive=options.recursive, exclude=out_dir if inside_input else None)
    if options.in_place and options.suffix:
        # Writing beside the inputs: earlier outputs (NAME{suffix}.ext) are not inputs again.
        found = [(src, rel) for src, rel in found if not src.stem.endswith(options.suffix)]
    planned = plan_outputs(found, out_dir, options)
    _check_locations(inputs, out_dir, planned, options)
    return _shard(planned, options.shard), warnings


def _remove_stale_temps(jobs: list[tuple[int, Path, Path]], options: DenoiseOptions) -> None:
    """A run killed mid-write (SIGKILL) can leave a hidden ``.NAME.XXXX.partial.ext``; remove those of
    this run's outputs (and only this shard's), so reruns leave no litter."""
    from .io._atomic import remove_stale_temps

    targets = [target for _, _, target in jobs]
    if options.compare:
        targets += [target.with_name(f"{target.stem}_compare.png") for target in targets]
    remove_stale_temps(targets)


def _prefetch(jobs: list[tuple[int, Path, Path]], options: DenoiseOptions, pool: ThreadPoolExecutor) -> Iterator[tuple[int, Path, Path, Future | None]]:
    """Yield jobs with their decode already submitted ``workers`` files ahead."""
    pending: list[tuple[int, Path, Path, Future | None]] = []
    ahead = max(1, options.workers)
    for index, source, target in jobs:
        skip = target.exists() and not options.overwrite
        pending.append((index, source, target, None if skip else pool.submit(_read, source, options)))
        if len(pending) > ahead:
            yield pending.pop(0)
    yield from pending


def denoise_paths(
    inputs: list[Path],
    out_dir: Path,
    model: LoadedModel,
    options: DenoiseOptions,
    *,
    on_event: EventFn | None = None,
) -> list[FileResult]:
    """Denoise files and folders into ``out_dir`` (mirroring folder structure); never raises for one bad file.

    Events sent to ``on_event``: {"kind": "start", "files": n, "warnings": [...]},
    {"kind": "file", "index", "path", "megapixels"}, {"kind": "tiles", "done", "total"},
    {"kind": "result", "result": FileResult}.
    """
    if options.tile < 16:
        raise ConfigError("--tile must be at least 16 pixels")
    from .raw_domain import resolve_domain

    domain = resolve_domain(model.model.config, options.domain, options.raw_output, str(model.path or "the model"))
    options = replace(options, domain=domain)
    fallback: dict[str, LoadedModel] = {}  # RAW domain: the sRGB model for non-Bayer files, loaded once
    out_dir = Path(out_dir)
    jobs, warnings = collect_inputs([Path(p) for p in inputs], out_dir, options)
    emit = on_event or (lambda event: None)
    _remove_stale_temps(jobs, options)
    emit({"kind": "start", "files": len(jobs), "warnings": warnings})
    results: list[FileResult] = []
    writes: list[tuple[FileResult, Future]] = []
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        for index, source, target, decoded in _prefetch(jobs, options, pool):
            if decoded is None:
                result = FileResult(str(source), str(target), "skipped")
                results.append(result)
                emit({"kind": "result", "result": result})
                continue
            started = time.perf_counter()
            try:
                image = decoded.result()
                megapixels = getattr(image, "megapixels", None) or image.pixels.shape[0] * image.pixels.shape[1] / 1e6
                emit({"kind": "file", "index": index, "path": str(source), "megapixels": megapixels})
                is_fallback = getattr(image, "fallback", False)
                if is_fallback:  # RAW domain, no Bayer mosaic: sRGB model, TIFF
                    from .raw_domain import load_fallback_model

                    if "model" not in fallback:  # loaded once per run (setdefault would load it every time)
                        fallback["model"] = load_fallback_model(source)
                    target = target.with_suffix(".tif") if target.suffix.lower() == ".dng" else target
                denoised = denoise_array(
                    fallback["model"] if is_fallback else model,
                    image.pixels,
                    mode=options.mode,
                    steps=options.steps,
                    guidance=options.guidance,
                    runs=options.runs,
                    t_start=options.t_start,
                    seed=options.seed,
                    tile=options.tile,
                    overlap=options.overlap,
                    batch=options.batch,
                    device=options.device,
                    precision=options.precision,
                    strength=options.strength,
                    refine=options.refine,
                    wiener_noise=options.wiener_noise,
                    image_index=index,
                    progress=lambda done, total: emit({"kind": "tiles", "done": done, "total": total}),
                )
            except (BsgdError, MemoryError, RuntimeError, ValueError, OSError) as exc:
                message = str(exc) if isinstance(exc, BsgdError) else f"{source}: {type(exc).__name__}: {exc}"
                result = FileResult(str(source), None, "failed", time.perf_counter() - started, error=message)
                results.append(result)
                emit({"kind": "result", "result": result})
                continue
            result = FileResult(
                str(source), str(target), "done", 0.0, megapixels, warnings=list(getattr(image, "warnings", []))
            )
            tonal = tonal_warning(image.pixels, denoised)
            if tonal is not None:
                result.warnings.append(tonal)
            future = pool.submit(_finish, target, denoised, image, options, started)
            writes.append((result, future))
            # Keep at most ``workers`` encodes in flight, reporting results in input order.
            while writes and (len(writes) > options.workers or writes[0][1].done()):
                results.append(_settle(*writes.pop(0), emit))
        while writes:
            results.append(_settle(*writes.pop(0), emit))
    order = {str(source): i for i, source, _ in jobs}
    results.sort(key=lambda r: order.get(r.input, 0))
    return results


def _finish(target: Path, denoised: np.ndarray, image, options: DenoiseOptions, started: float) -> float:  # noqa: ANN001
    if options.domain == "raw":
        from .raw_domain import write_raw_result

        write_raw_result(target, denoised, image, bit_depth=options.bit_depth, quality=options.quality, compare=options.compare)
        return time.perf_counter() - started
    _write(target, denoised, image, options)
    if options.compare:
        _write_compare(target, image.pixels, denoised)
    return time.perf_counter() - started


TONAL_TOLERANCE = 0.02
"""A channel mean may move by this share of the input's mean before :func:`tonal_warning` speaks."""
TONAL_FLOOR = 0.001
"""...and by at least this much of full range (so near-black channels are not flagged for nothing)."""


def tonal_warning(noisy: np.ndarray, denoised: np.ndarray, *, tolerance: float = TONAL_TOLERANCE, floor: float = TONAL_FLOOR) -> str | None:
    """A warning when the output's brightness drifted from the input's, else None.

    Noise has zero mean, so a denoiser that fits the camera keeps every channel's mean; a drift of
    more than ``tolerance`` (relative) and ``floor`` (absolute, of full range) in any channel is
    reported for the worst channel. Works on (H, W, C) arrays: sRGB (R, G, B) or Bayer planes
    (R, G1, G2, B).
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
    return (
        f"output is {word} than input by {abs(relative[worst]) * 100:.1f}% (channel {names[worst]} mean "
        f"{before[worst]:.4f} -> {after[worst]:.4f}): the model may not fit this camera's noise"
    )


def _settle(result: FileResult, future: Future, emit: EventFn) -> FileResult:
    try:
        result.seconds = future.result()
    except BsgdError as exc:
        result.status, result.output, result.error = "failed", None, str(exc)
    except OSError as exc:
        result.status, result.output, result.error = "failed", None, f"{result.output}: {exc}"
    emit({"kind": "result", "result": result})
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
