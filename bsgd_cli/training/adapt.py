"""``bsgd denoise --adapt MINUTES``: fit the model to the very photos being denoised, then denoise them.

The photos a user denoises are noisy captures of their own camera: self-supervised training needs no
more. The model is adapted with :func:`bsgd_cli.training.ready.train_ready` for the given minutes,
started from the camera's earlier adapted model when there is one (so each folder refines it), else
from the model given (sRGB) or from scratch (RAW domain: no shipped RAW model measured useful as a
start, docs/RAW.md). The result is saved in the user model folder as ``adapted-<camera>`` (the EXIF
Make and Model; ``-raw`` for the RAW domain), where ``bsgd models`` lists it and the next ``--adapt``
finds it.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..checkpoint import load_model, user_model_dir
from ..config import PRESETS, UNCAPPED_STEPS, TrainConfig
from ..engine.model import LoadedModel
from ..engine.runtime import resolve_device, training_precision
from ..errors import TrainingError
from ..events import ProgressFn
from ..io import camera_name, find_images
from ..raw.domain import training_model_config
from .ready import ReadyPlan, install_user_model, safe_name, train_ready
from .train import init_config

# The own-camera recipe: the blind-spot branch at t = 0, then one distillation round. docs/OWN_CAMERA.md has
# what it measured; a budget split with more distillation measured no better.
SRGB_PLAN = ReadyPlan(train_share=0.5, rounds=1)
SRGB_TRAINING = TrainConfig(steps=UNCAPPED_STEPS, batch=8, patch=120, lr=3e-4, branch="bsn", t_zero_prob=1.0,
                            checkpoint_every=UNCAPPED_STEPS, val_every=UNCAPPED_STEPS, log_every=10)
RAW_TRAINING = TrainConfig(steps=UNCAPPED_STEPS, batch=8, patch=64, lr=3e-4, branch="both",
                           checkpoint_every=UNCAPPED_STEPS, val_every=UNCAPPED_STEPS, log_every=10, val_fraction=0.0)


@dataclass
class Adapted:
    model: LoadedModel
    name: str
    started_from: str
    camera: str | None
    others: list[str] = field(default_factory=list)
    """Other cameras among the photos (the model is named after ``camera``, the most common)."""


def adapted_name(camera: str | None, domain: str) -> str:
    """``adapted-<camera>`` (``-raw`` in the RAW domain), safe as a file name."""
    return safe_name(f"adapted-{camera or 'unknown-camera'}" + ("-raw" if domain == "raw" else ""))


def _image_folder(inputs: list[Path], recursive: bool, into: Path) -> tuple[int, list[str]]:
    """Links to the input images in ``into`` (the training pool reads a folder); (count, the cameras
    named in their EXIF, most photos first)."""
    images, _notes = find_images(inputs, recursive=recursive)
    cameras: Counter[str] = Counter()
    for index, (path, _relative) in enumerate(images):
        os.symlink(Path(path).resolve(), into / f"{index:06d}{Path(path).suffix.lower()}")
        name = camera_name(Path(path))
        if name:
            cameras[name] += 1
    return len(images), [name for name, _count in cameras.most_common()]


def adapt(
    inputs: list[Path], *, base: LoadedModel | None, domain: str, minutes: float, recursive: bool, device: str = "auto",
    callback: ProgressFn | None = None,
) -> Adapted:
    """Adapt a model to the images under ``inputs`` for ``minutes``; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="bsgd-adapt-") as work:
        folder = Path(work) / "images"
        folder.mkdir()
        count, cameras = _image_folder(inputs, recursive, folder)
        if count == 0:
            raise TrainingError("--adapt found no image to learn from among the inputs")
        camera = cameras[0] if cameras else None  # the model is named after the most common camera
        name = adapted_name(camera, domain)
        earlier = user_model_dir() / f"{name}.safetensors"
        start = load_model(earlier) if earlier.is_file() else (base if domain == "srgb" else None)
        if start is not None:
            model_config = init_config(start, domain)
            started_from = f"{name} (earlier adaptation)" if earlier.is_file() else str(start.path)
        else:
            model_config = training_model_config(PRESETS["small"], domain)
            started_from = "scratch"
        config = SRGB_TRAINING if domain == "srgb" else RAW_TRAINING
        config = replace(config, precision=training_precision("auto", resolve_device(device)))
        plan = SRGB_PLAN if domain == "srgb" else ReadyPlan(distill=False)
        ready = train_ready(folder, Path(work) / "run", model_config=model_config, config=config, plan=plan,
                            minutes=minutes, init=start, device=device, callback=callback,
                            info={"adapted_to": camera or "unknown camera", "images": count})
        installed = install_user_model(ready.model, name)
        return Adapted(load_model(user_model_dir() / f"{installed}.safetensors"), installed, started_from, camera,
                       others=cameras[1:])
