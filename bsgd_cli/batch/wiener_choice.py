"""The Wiener strength chosen on a set of photo files (``bsgd denoise --wiener-noise auto``, and
``bsgd train`` on its captures): a few of them, spread over the list, go to
:func:`bsgd_cli.engine.wiener_choice.choose_noise_scale`. :func:`choose_for_batch` checks first that
the choice was calibrated for what the batch will run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import Mode
from ..engine.denoise import resolve_sampler
from ..engine.model import LoadedModel
from ..engine.runtime import Runtime, resolve_runtime
from ..engine.wiener_choice import WienerChoice, central_crop, choose_noise_scale
from ..errors import BsgdError, ConfigError
from ..io import find_images, read_image
from .denoise import DenoiseOptions

CHOICE_IMAGES = 12
"""The photos (spread evenly over the sorted list) the strength is chosen on."""
AUTO_MODES: tuple[Mode, ...] = ("fast", "bsn")
"""The modes whose output the choice's calibration was measured with (docs/OWN_CAMERA.md)."""


def spread(paths: Sequence[Path], count: int = CHOICE_IMAGES) -> list[Path]:
    """At most ``count`` of ``paths``, evenly spaced, first and last included."""
    if len(paths) <= count:
        return list(paths)
    return [paths[round(i * (len(paths) - 1) / (count - 1))] for i in range(count)]


def choose_on_files(model: LoadedModel, paths: Sequence[Path], *, mode: Mode, runtime: Runtime,
                    progress: Callable[[int, int], None] | None = None) -> WienerChoice | None:
    """The noise scale chosen on up to :data:`CHOICE_IMAGES` of ``paths`` (unreadable ones are left out);
    None when none can be read."""
    images = []
    for path in spread(sorted(paths)):
        try:  # only the central crop is kept: twelve whole 50 MP photos would hold 7 GB
            images.append(np.ascontiguousarray(central_crop(read_image(path).pixels)))
        except BsgdError:
            continue
    if not images:
        return None
    return choose_noise_scale(model, images, mode=mode, runtime=runtime, progress=progress)


@dataclass(frozen=True)
class BatchChoice:
    """What :func:`choose_for_batch` decided: the options to denoise with, the choice, the model's own scale."""

    options: DenoiseOptions
    choice: WienerChoice
    stored: float


def choose_for_batch(inputs: Sequence[Path], output: Path, model: LoadedModel, options: DenoiseOptions) -> BatchChoice:
    """``options`` with the Wiener noise scale chosen on some of the input photos. Refused (ConfigError,
    before any photo is read) where the choice was not calibrated: without the Wiener step, a mode other
    than :data:`AUTO_MODES`, or the RAW domain."""
    runtime = options.runtime or resolve_runtime()
    settings = resolve_sampler(model, options.sampler, runtime.device)
    if settings.refine != "wiener":
        raise ConfigError("--wiener-noise auto chooses the Wiener step's strength; drop --no-wiener")
    if settings.mode not in AUTO_MODES:
        raise ConfigError(f"--wiener-noise auto is calibrated for the modes {' and '.join(AUTO_MODES)}; "
                          f"with --mode {settings.mode} give a number")
    if (options.domain or model.model.config.domain) != "srgb":
        raise ConfigError("--wiener-noise auto works on sRGB photos; give a number for the RAW domain")
    found, _notes = find_images(list(inputs), recursive=options.recursive, exclude=output)
    choice = choose_on_files(model, [path for path, _relative in found], mode=settings.mode, runtime=runtime)
    if choice is None:
        raise ConfigError("--wiener-noise auto found no readable photo among the inputs")
    chosen = replace(options, sampler=replace(options.sampler, wiener_noise=choice.noise_scale))
    return BatchChoice(chosen, choice, settings.wiener.for_mode(settings.mode).noise_scale)
