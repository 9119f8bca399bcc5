"""``bsgd benchmark``: build the method callables (classical baselines and bsgd's modes) and run them.

Kept apart from :mod:`bsgd_cli.benchmark`, which knows nothing of torch or models.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..config import to_dict
from ..errors import ConfigError

MODEL_METHODS = ("bsn", "bsn-r3", "bsgd", "fast")
KNOWN_METHODS = ("noisy", "nlm", "bm3d", *MODEL_METHODS)


@dataclass(frozen=True, kw_only=True)
class BsgdSettings:
    """Model and sampler settings shared by every bsgd mode in one benchmark run."""

    model: str | None = None
    steps: int | None = None
    guidance: float | None = None
    runs: int | None = None
    t_start: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    tile: int = 512
    strength: float | None = None
    refine: str | None = None
    wiener_noise: float | None = None


def build_methods(names: list[str], settings: BsgdSettings) -> tuple[dict[str, Callable[[np.ndarray], np.ndarray]], dict[str, Any]]:
    """Callables for ``names`` (float32 HxWx3 [0, 1] in and out) and the facts to record about them."""
    from .baselines import available_baselines

    unknown = [name for name in names if name not in KNOWN_METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(KNOWN_METHODS)}")
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    environment: dict[str, Any] = {"bsgd_version": __version__, "seed": settings.seed, "threads": torch.get_num_threads()}
    baselines = available_baselines()
    for name in names:
        if name in ("nlm", "bm3d"):
            if name not in baselines:
                raise ConfigError(f"method {name} is not available here: pip install {'bm3d' if name == 'bm3d' else 'opencv-python-headless scikit-image'}")
            methods[name] = baselines[name]
    wanted = [name for name in names if name in MODEL_METHODS]
    if wanted:
        from ..checkpoint import load_model
        from ..engine.denoise import denoise_array
        from ..engine.runtime import resolve_device

        loaded = load_model(settings.model)
        device = resolve_device(settings.device)
        environment.update(
            model=str(loaded.path), model_sha256=loaded.sha256, device=str(device),
            device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else os.uname().machine,
            precision=settings.precision,
        )
        sampler_settings: dict[str, Any] = {}
        counter = {"image": 0}
        for name in wanted:
            if name == "fast" and loaded.model.student is None:
                raise ConfigError("method fast needs a model with a distilled student (bsgd distill)")

            def run(noisy: np.ndarray, mode: str = name) -> np.ndarray:
                counter["image"] += 1
                return denoise_array(
                    loaded, noisy, mode=mode, steps=settings.steps, guidance=settings.guidance, runs=settings.runs,
                    t_start=settings.t_start, seed=settings.seed, tile=settings.tile, device=device,
                    precision=settings.precision, image_index=counter["image"], strength=settings.strength,
                    refine=settings.refine, wiener_noise=settings.wiener_noise,
                )

            methods[name] = run
            effective = loaded.sampler
            sampler_settings[name] = {
                "mode": name,
                "steps": settings.steps or effective.steps,
                "guidance": settings.guidance if settings.guidance is not None else effective.guidance,
                "runs": settings.runs or effective.runs,
                "t_start": settings.t_start if settings.t_start is not None else effective.t_start,
                "replace_prob": effective.replace_prob,
                "mask": effective.mask,
            } if name == "bsgd" else {"mode": name}
            sampler_settings[name]["strength"] = settings.strength if settings.strength is not None else effective.strength
            sampler_settings[name]["refine"] = settings.refine or effective.refine
            if sampler_settings[name]["refine"] == "wiener":
                stored = {key: value for key, value in to_dict(effective).items() if key.startswith("wiener_")}
                sampler_settings[name].update(stored, wiener_noise=settings.wiener_noise or effective.wiener_noise)
        environment["sampler"] = sampler_settings
    return methods, environment


def run_benchmark(
    dataset: str,
    root: Path,
    methods: list[str],
    settings: BsgdSettings,
    *,
    out_dir: Path,
    limit: int | None = None,
    progress: Callable[..., None] | None = None,
    ssim: bool = True,
):  # noqa: ANN201 - BenchmarkResult
    """Open the data set, build the methods, run them, write results.json and the reports (``ssim``: see
    :func:`bsgd_cli.benchmark.runner.run_benchmark`)."""
    from .datasets import load_dataset
    from .runner import run_benchmark as run

    data = load_dataset(dataset, Path(root), limit=limit)
    callables, environment = build_methods([m for m in methods if m != "noisy"], settings)
    environment["dataset"] = dataset
    environment["root"] = str(root)
    return run(data, callables, out_dir=Path(out_dir), progress=progress, environment=environment, ssim=ssim)
