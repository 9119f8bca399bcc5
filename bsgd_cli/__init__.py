"""bsgd: batch photo denoising with Blind-Spot Guided Diffusion, trained on noisy photos alone.

Public API (imported lazily, so ``bsgd_cli.io`` and ``bsgd_cli.benchmark`` stay free of torch)::

    load_model(path_or_name=None)            -> LoadedModel   (embedded default when None)
    denoise_array(model, image, *, sampler, tiling, runtime, seed, image_index, progress)
                                             -> float32 H x W x 3 in [0, 1]
    denoise_paths(inputs, out_dir, model, options, *, on_event) -> list[FileResult]
    train(noisy_dir, out_dir, *, model_config, config, ...) -> TrainSummary
    run_benchmark(dataset, root, methods, *, out_dir, model, sampler, tiling, runtime, seed) -> BenchmarkResult

``sampler`` is a :class:`~bsgd_cli.config.SamplerOverrides` (changes to the model's stored defaults) or
a whole :class:`~bsgd_cli.config.SamplerConfig`; ``tiling`` a :class:`~bsgd_cli.config.TilingConfig`;
``runtime`` from :func:`bsgd_cli.engine.runtime.resolve_runtime`. The README's "Architecture" maps
the packages.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_model": ("checkpoint", "load_model"),
    "denoise_array": ("engine.denoise", "denoise_array"),
    "denoise_paths": ("batch.denoise", "denoise_paths"),
    "DenoiseOptions": ("batch.denoise", "DenoiseOptions"),
    "train": ("training.train", "train"),
    "run_benchmark": ("benchmark.evaluate", "run_benchmark"),
    "BsgdError": ("errors", "BsgdError"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attribute = _API[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
