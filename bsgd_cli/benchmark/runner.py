"""Run denoisers over a benchmark data set: quality, speed and memory per image, then files and reports.

A method is any callable mapping a float32 HxWx3 RGB image in [0, 1] to the same; the identity ``noisy`` is
always run first as the baseline. Metrics follow :mod:`bsgd_cli.benchmark.metrics` (PSNR on AP-BSN-rounded uint8,
SSIM in both the "skimage-uniform" and "gaussian" conventions). Per call the runner measures wall seconds
(reported as seconds per megapixel) and the peak resident memory of the whole process during the call
(sampled from ``/proc/self/statm`` every 5 ms by a background thread; ``ru_maxrss`` where /proc is missing, which
is monotone over the process's life).

Files under ``out_dir``: ``results.json``, ``report.md`` (+ ``psnr.png``, ``speed.png``), ``report.html``
(inline SVG charts), ``crops/NAME.png`` (noisy | each method | clean, 128x128 at 100%), and for hidden-reference
sets (SIDD benchmark, DND) ``submission/<method>/`` with the files of :mod:`.submission`.

Progress events (:class:`~bsgd_cli.events.Progress`): ``start`` (total: images; name: the data set; data:
kind, methods), ``method_done`` (done: the image's number; name: the image; data: method, seconds, psnr),
``sample_done`` (done, total, name), ``submission_written`` (name: the method; data: path), ``done``
(data: out_dir).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bsgd_cli.benchmark.datasets import Dataset
from bsgd_cli.benchmark.metrics import (
    PSNR_CONVENTION,
    SSIM_GAUSSIAN,
    SSIM_SKIMAGE,
    psnr_uint8,
    ssim_gaussian,
    ssim_skimage,
    to_uint8,
)
from bsgd_cli.benchmark.report import save_crop_strip, write_reports
from bsgd_cli.benchmark.submission import write_dnd_submission, write_sidd_submission
from bsgd_cli.errors import BsgdError
from bsgd_cli.events import Progress, ProgressFn, ignore
from bsgd_cli.viz.compare import detail_crop_origin

Method = Callable[[np.ndarray], np.ndarray]
CROP_SIZE = 128
TABLE_HEADERS = ["Dataset", "Method", "PSNR (dB)", f"SSIM ({SSIM_SKIMAGE})", f"SSIM ({SSIM_GAUSSIAN})", "s/MP",
                 "Peak RSS (MB)", "Images"]


@dataclass
class BenchmarkResult:
    """Outcome of :func:`run_benchmark`: per-method means (``results``), per-image rows, and written files."""

    dataset: str
    kind: str
    has_reference: bool
    results: list[dict[str, Any]]
    per_image: list[dict[str, Any]]
    environment: dict[str, Any]
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def identity(noisy: np.ndarray) -> np.ndarray:
    """The ``noisy`` baseline: returns its input (float32 HxWx3 in [0, 1])."""
    return noisy


# ------------------------------------------------------------------------------------------- measuring
def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _maxrss_bytes() -> int:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PeakRss:
    """Context manager: the peak resident memory of this process while the block runs, in ``peak_mb`` (MiB)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        current = _rss_bytes()
        if current is not None:
            self.peak_bytes = max(self.peak_bytes, current)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakRss:
        if _rss_bytes() is None:
            return self
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="bsgd-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            self.peak_bytes = _maxrss_bytes()
            return
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20


def collect_environment(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Python, library versions, platform and CPU facts, and the metric conventions; ``extra`` wins on clashes."""
    versions = {}
    for dist in ("numpy", "scipy", "scikit-image", "opencv-python-headless", "pillow", "h5py", "bm3d", "torch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    affinity = getattr(os, "sched_getaffinity", None)
    collected: dict[str, Any] = {
        "python": platform.python_version(),
        "versions": versions,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(affinity(0)) if affinity else os.cpu_count(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "psnr_convention": PSNR_CONVENTION,
        "ssim_conventions": {
            "ssim": f"{SSIM_SKIMAGE}: skimage structural_similarity, 7x7 uniform window, channel_axis=-1",
            "ssim_gaussian": f"{SSIM_GAUSSIAN}: gaussian_weights, sigma 1.5, use_sample_covariance=False",
        },
    }
    collected.update(extra or {})
    return collected


# ---------------------------------------------------------------------------------------------- running
def _as_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)


def _call(method_name: str, method: Method, noisy: np.ndarray, sample_name: str) -> tuple[np.ndarray, float, float]:
    """Run one method on a copy of ``noisy``; returns (output float32 [0, 1], seconds, peak RSS MiB)."""
    with PeakRss() as memory:
        start = time.perf_counter()
        output = method(noisy.copy())
        seconds = time.perf_counter() - start
    output = np.asarray(output, dtype=np.float32)
    if output.shape != noisy.shape:
        raise BsgdError(f"method {method_name!r} returned shape {list(output.shape)} for {sample_name} "
                        f"{list(noisy.shape)}; a method must return an image of its input's size")
    if not np.isfinite(output).all():
        raise BsgdError(f"method {method_name!r} returned NaN or infinite values for {sample_name}")
    return np.clip(output, 0.0, 1.0), seconds, memory.peak_mb


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "item"


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _summarise(dataset: str, per_image: list[dict[str, Any]]) -> list[dict[str, Any]]:
    methods = list(dict.fromkeys(row["method"] for row in per_image))
    results = []
    for method in methods:
        rows = [r for r in per_image if r["method"] == method]
        results.append({
            "dataset": dataset,
            "method": method,
            "psnr": _mean([r["psnr"] for r in rows]),
            "ssim": _mean([r["ssim"] for r in rows]),
            "ssim_gaussian": _mean([r["ssim_gaussian"] for r in rows]),
            "seconds_per_mp": _mean([r["seconds_per_mp"] for r in rows]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
            "images": len(rows),
        })
    return sorted(results, key=lambda r: (r["dataset"], r["psnr"] is None, -(r["psnr"] or 0.0),
                                          r["seconds_per_mp"] or 0.0, r["method"]))


def run_benchmark(
    dataset: Dataset,
    methods: Mapping[str, Method],
    *,
    out_dir: Path,
    crops: int = 4,
    progress: ProgressFn | None = None,
    environment: dict[str, Any] | None = None,
    ssim: bool = True,
) -> BenchmarkResult:
    """Run ``noisy`` (identity) and every method over ``dataset``; write results, reports and submissions.

    ``crops``: how many images (the first ones) get a before/after strip. ``environment``: facts the caller
    knows (seed, model hash, device, threads ...), merged over those collected here. ``ssim=False`` leaves
    both SSIMs out (None): on a GPU they cost more than the denoising. Returns the means per method sorted
    by PSNR (highest first; by speed when there is no reference) and the per-image rows.
    Only the current sample is held, except SIDD benchmark outputs (uint8, ~250 MB per method for the full set)
    and one DND image's 20 crops per method, kept until their submission file is written.
    """
    emit = progress or ignore
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_methods: dict[str, Method] = {"noisy": identity, **{k: v for k, v in methods.items() if k != "noisy"}}
    result = BenchmarkResult(dataset.name, dataset.kind, dataset.has_reference, [], [],
                             collect_environment(environment), out_dir)
    emit(Progress("start", total=len(dataset), name=dataset.name,
                  data={"kind": dataset.kind, "methods": list(all_methods)}))
    sidd_blocks: dict[str, dict[tuple[int, int], np.ndarray]] = {m: {} for m in all_methods}
    dnd_crops: dict[str, dict[int, list[np.ndarray]]] = {m: {} for m in all_methods}
    grid: tuple[int, int] | None = None
    total = len(dataset)
    for index, sample in enumerate(dataset):
        noisy = _as_float(sample.noisy)
        reference = None if sample.clean is None else (
            sample.clean if sample.clean.dtype == np.uint8 else to_uint8(sample.clean))
        megapixels = noisy.shape[0] * noisy.shape[1] / 1e6
        tiles: dict[str, np.ndarray] = {}
        if index < crops:
            size = min(CROP_SIZE, noisy.shape[0], noisy.shape[1])
            top, left = detail_crop_origin(reference if reference is not None else noisy, size)
            window = (slice(top, top + size), slice(left, left + size))
        for method_name, method in all_methods.items():
            output, seconds, peak_mb = _call(method_name, method, noisy, sample.name)
            row: dict[str, Any] = {"dataset": dataset.name, "name": sample.name, "method": method_name,
                                   "height": noisy.shape[0], "width": noisy.shape[1], "seconds": seconds,
                                   "seconds_per_mp": seconds / megapixels, "peak_rss_mb": peak_mb,
                                   "psnr": None, "ssim": None, "ssim_gaussian": None}
            if reference is not None:
                denoised_u8 = to_uint8(output)
                row.update(psnr=psnr_uint8(reference, denoised_u8))
                if ssim:
                    row.update(
                        ssim=ssim_skimage(reference, denoised_u8), ssim_gaussian=ssim_gaussian(reference, denoised_u8)
                    )
            result.per_image.append(row)
            if index < crops:
                tiles[method_name] = to_uint8(output[window])
            if method_name != "noisy" and dataset.submission == "sidd":
                grid = tuple(sample.meta["grid"])  # type: ignore[assignment]
                sidd_blocks[method_name][(sample.meta["image"], sample.meta["block"])] = to_uint8(output)
            elif method_name != "noisy" and dataset.submission == "dnd":
                pending = dnd_crops[method_name].setdefault(sample.meta["image_index"], [])
                pending.append(output)
                if len(pending) == sample.meta["crops_in_image"]:
                    _write_dnd(result, method_name, sample.meta["image_index"], pending, emit)
                    del dnd_crops[method_name][sample.meta["image_index"]]
            emit(Progress("method_done", done=index + 1, total=total, name=sample.name,
                          data={"method": method_name, "seconds": seconds, "psnr": row["psnr"]}))
        if index < crops:
            if reference is not None:
                tiles["clean"] = reference[window]
            result.files.append(save_crop_strip(out_dir / "crops" / f"{_safe(sample.name)}.png", tiles))
        emit(Progress("sample_done", done=index + 1, total=total, name=sample.name))
    for method_name, pending_images in dnd_crops.items():
        for image_index, pending in pending_images.items():
            _write_dnd(result, method_name, image_index, pending, emit)
    result.results = _summarise(dataset.name, result.per_image)
    for method_name, blocks in sidd_blocks.items():
        if blocks and grid is not None:
            _write_sidd(result, method_name, blocks, grid, emit)
    result.files += _write_outputs(result, dataset)
    emit(Progress("done", data={"out_dir": str(out_dir)}))
    return result


def _write_dnd(result: BenchmarkResult, method: str, image_index: int, crops: list[np.ndarray],
               emit: ProgressFn) -> None:
    partial = len(crops) != 20
    if partial:
        result.notes.append(f"{method}: DND image {image_index:04d} has {len(crops)}/20 crops; not for upload")
    path = write_dnd_submission(result.out_dir / "submission" / _safe(method), image_index, crops,
                                allow_partial=partial)
    result.files.append(path)
    emit(Progress("submission_written", name=method, data={"path": str(path)}))


def _write_sidd(result: BenchmarkResult, method: str, blocks: dict[tuple[int, int], np.ndarray],
                grid: tuple[int, int], emit: ProgressFn) -> None:
    missing = grid[0] * grid[1] - len(blocks)
    if missing:
        result.notes.append(f"{method}: SIDD submission lacks {missing} blocks (zero-filled); not for upload")
    speed = next(r["seconds_per_mp"] for r in result.results if r["method"] == method)
    path = write_sidd_submission(result.out_dir / "submission" / _safe(method) / "SubmitSrgb.mat", blocks,
                                 speed or 0.0, method_name=method, grid=grid, allow_partial=missing > 0)
    result.files.append(path)
    emit(Progress("submission_written", name=method, data={"path": str(path)}))


def _json_ready(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _finite(v) if isinstance(v, float) else v for k, v in row.items()} for row in rows]


def _write_outputs(result: BenchmarkResult, dataset: Dataset) -> list[Path]:
    document = {
        "environment": result.environment,
        "dataset": {"name": dataset.name, "kind": dataset.kind, "root": str(dataset.root),
                    "has_reference": dataset.has_reference, "samples": len(dataset)},
        "results": _json_ready(result.results),
        "per_image": _json_ready(result.per_image),
        "notes": result.notes,
    }
    path = result.out_dir / "results.json"
    path.write_text(json.dumps(document, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    crop_files = sorted(p for p in result.files if p.parent.name == "crops")
    return [path, *write_reports(result.out_dir, format_results_table(result), result.results, crop_files,
                                 title=f"{dataset.name} ({dataset.kind})", notes=result.notes,
                                 environment=result.environment)]


def _fmt(value: float | None, decimals: int) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{decimals}f}"


def format_results_table(result: BenchmarkResult) -> list[list[str]]:
    """The means as strings, first row the headers: PSNR 2 decimals, SSIM 4, s/MP 3, RSS 0."""
    rows = [list(TABLE_HEADERS)]
    for r in result.results:
        rows.append([r["dataset"], r["method"], _fmt(r["psnr"], 2), _fmt(r["ssim"], 4),
                     _fmt(r["ssim_gaussian"], 4), _fmt(r["seconds_per_mp"], 3), _fmt(r["peak_rss_mb"], 0),
                     str(r["images"])])
    return rows
