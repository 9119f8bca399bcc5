"""``bsgd benchmark --speed``: megapixels per second and peak memory per mode on a generated image.

The same run times OpenCV non-local means on the same image, so the ratio to a well-known
classical filter is comparable across machines. Timings exclude model loading and include tiling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..checks import MEGAPIXELS
from ..errors import ConfigError
from ..events import Progress, ProgressFn
from .runner import PeakRss


def synthetic_photo(megapixels: float, seed: int = 0) -> np.ndarray:
    """A float32 H x W x 3 image of about ``megapixels`` MP (3:2) with texture, edges and noise."""
    width = int(round((megapixels * 1e6 * 1.5) ** 0.5))
    height = int(round(width / 1.5))
    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    image = np.empty((height, width, 3), dtype=np.float32)
    for channel in range(3):
        image[:, :, channel] = 0.45 + 0.25 * np.sin(40 * xx + 7 * channel) * np.cos(30 * yy) + 0.1 * (xx > 0.5)
    image += rng.normal(0, 0.03, size=image.shape).astype(np.float32)
    np.clip(image, 0, 1, out=image)
    return image


@dataclass
class SpeedRow:
    method: str
    megapixels: float
    seconds: float
    peak_rss_mb: float
    gpu_peak_mb: float | None

    @property
    def megapixels_per_second(self) -> float:
        return self.megapixels / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "megapixels": round(self.megapixels, 3), "seconds": round(self.seconds, 3),
                "megapixels_per_second": round(self.megapixels_per_second, 4),
                "seconds_per_megapixel": round(self.seconds / self.megapixels, 3),
                "peak_rss_mb": round(self.peak_rss_mb, 1),
                "gpu_peak_mb": None if self.gpu_peak_mb is None else round(self.gpu_peak_mb, 1)}


def time_method(name: str, method: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> SpeedRow:
    """Run ``method`` once on ``image``; wall time, process peak RSS and (CUDA) peak GPU memory."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    with PeakRss() as rss:
        started = time.perf_counter()
        result = method(image)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    if result.shape != image.shape:
        raise ConfigError(f"method {name} returned shape {result.shape} for {image.shape}")
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return SpeedRow(name, image.shape[0] * image.shape[1] / 1e6, seconds, rss.peak_mb, gpu)


def run_speed_benchmark(
    methods: dict[str, Callable[[np.ndarray], np.ndarray]],
    *,
    megapixels: float = 1.0,
    seed: int = 0,
    warmup: bool = True,
    progress: ProgressFn | None = None,
    image: np.ndarray | None = None,
) -> list[SpeedRow]:
    """Time every method on one generated image (after a small warm-up call per method).

    ``image``: time on this float32 H x W x 3 image instead of generating one (to time methods one
    call at a time without generating the same image again).
    """
    MEGAPIXELS.check("--megapixels", megapixels)
    image = synthetic_photo(megapixels, seed) if image is None else image
    rows = []
    for index, (name, method) in enumerate(methods.items()):
        if warmup:
            method(image[:64, :64].copy())
        rows.append(time_method(name, method, image))
        if progress is not None:
            progress(Progress("method_done", done=index + 1, total=len(methods), name=name))
    return rows
