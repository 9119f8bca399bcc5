"""``bsgd benchmark``: build the method callables (classical baselines and bsgd's modes) and run them.

With :mod:`.speed`, the only benchmark modules that use torch and models; the package's ``__init__``
does not import them, so the data sets, baselines, runner and reports load without torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..checkpoint import load_model
from ..config import MODES, SamplerConfig, SamplerOverrides, TilingConfig, to_dict
from ..engine.denoise import denoise_array
from ..engine.runtime import Runtime, resolve_runtime
from ..errors import ConfigError
from ..events import ProgressFn
from .baselines import available_baselines
from .datasets import load_dataset
from .runner import BenchmarkResult
from .runner import run_benchmark as run_methods

Method = Callable[[np.ndarray], np.ndarray]
MODEL_METHODS = MODES
KNOWN_METHODS = ("noisy", "nlm", "bm3d", *MODEL_METHODS)


def _sampler_record(mode: str, sampler: SamplerConfig) -> dict[str, Any]:
    """What results.json records of the sampler a method ran with."""
    record: dict[str, Any] = {"mode": mode}
    if mode == "bsgd":
        record.update(steps=sampler.steps, guidance=sampler.guidance, runs=sampler.runs, t_start=sampler.t_start,
                      replace_prob=sampler.replace_prob, mask=sampler.mask)
    record.update(strength=sampler.strength, refine=sampler.refine)
    if sampler.refine == "wiener":
        record["wiener"] = to_dict(sampler.wiener.for_mode(mode))
    return record


def _baselines(names: list[str]) -> dict[str, Method]:
    baselines = available_baselines()
    methods = {}
    for name in names:
        if name in ("nlm", "bm3d"):
            if name not in baselines:
                wanted = "bm3d" if name == "bm3d" else "opencv-python-headless scikit-image"
                raise ConfigError(f"method {name} is not available here: pip install {wanted}")
            methods[name] = baselines[name]
    return methods


def build_methods(
    names: list[str],
    *,
    model: str | Path | None = None,
    sampler: SamplerOverrides | None = None,
    tiling: TilingConfig | None = None,
    runtime: Runtime | None = None,
    seed: int = 0,
) -> tuple[dict[str, Method], dict[str, Any]]:
    """Callables for ``names`` (float32 HxWx3 [0, 1] in and out) and the facts to record about them.

    The model's modes (``bsn``, ``bsgd`` ...) run ``model`` (a file or name; None: the embedded one)
    with ``sampler``'s changes to its stored defaults, each with its own mode.
    """
    unknown = [name for name in names if name not in KNOWN_METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(KNOWN_METHODS)}")
    methods = _baselines(names)
    environment: dict[str, Any] = {"bsgd_version": __version__, "seed": seed, "threads": torch.get_num_threads()}
    wanted = [name for name in names if name in MODEL_METHODS]
    if wanted:
        runtime = runtime or resolve_runtime()
        overrides = sampler or SamplerOverrides()
        loaded = load_model(model)
        device = runtime.device
        environment.update(
            model=str(loaded.path), model_sha256=loaded.sha256, device=str(device),
            device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else os.uname().machine,
            precision=runtime.precision,
        )
        records: dict[str, Any] = {}
        counter = {"image": 0}
        for name in wanted:
            if name == "fast" and loaded.model.student is None:
                raise ConfigError("method fast needs a model with a distilled student (bsgd distill)")
            mode_sampler = replace(overrides, mode=name).apply(loaded.sampler)

            def run(noisy: np.ndarray, mode_sampler: SamplerConfig = mode_sampler) -> np.ndarray:
                counter["image"] += 1
                return denoise_array(loaded, noisy, sampler=mode_sampler, tiling=tiling, runtime=runtime, seed=seed,
                                     image_index=counter["image"])

            methods[name] = run
            records[name] = _sampler_record(name, mode_sampler)
        environment["sampler"] = records
    return methods, environment


def run_benchmark(
    dataset: str,
    root: Path,
    methods: list[str],
    *,
    out_dir: Path,
    model: str | Path | None = None,
    sampler: SamplerOverrides | None = None,
    tiling: TilingConfig | None = None,
    runtime: Runtime | None = None,
    seed: int = 0,
    limit: int | None = None,
    progress: ProgressFn | None = None,
    ssim: bool = True,
) -> BenchmarkResult:
    """Open the data set, build the methods (see :func:`build_methods`), run them, write results.json and
    the reports (``ssim``: see :func:`bsgd_cli.benchmark.runner.run_benchmark`)."""
    data = load_dataset(dataset, Path(root), limit=limit)
    callables, environment = build_methods([m for m in methods if m != "noisy"], model=model, sampler=sampler,
                                           tiling=tiling, runtime=runtime, seed=seed)
    environment["dataset"] = dataset
    environment["root"] = str(root)
    return run_methods(data, callables, out_dir=Path(out_dir), progress=progress, environment=environment, ssim=ssim)
