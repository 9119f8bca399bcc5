"""The Wiener strength chosen on a set of photo files (``bsgd denoise --wiener-noise auto``, and
``bsgd train`` on its captures): a few of them, spread over the list, go to
:func:`bsgd_cli.engine.wiener_choice.choose_noise_scale`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import Mode
from ..engine.model import LoadedModel
from ..engine.runtime import Runtime
from ..engine.wiener_choice import WienerChoice, choose_noise_scale
from ..errors import BsgdError
from ..io import read_image

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
        try:
            images.append(read_image(path).pixels)
        except BsgdError:
            continue
    if not images:
        return None
    return choose_noise_scale(model, images, mode=mode, runtime=runtime, progress=progress)
