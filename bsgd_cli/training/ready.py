"""One command to a ready model: train (from scratch or from an existing model), then distil the student.

``bsgd train`` ends here. With a time budget the training gets the first share of it and the
distillation (teacher outputs and student) the rest, less the time set aside for choosing the Wiener
strength, so the whole command ends in time. The teacher is
the trained model's own pipeline (its stored sampler, Wiener step included, or ``teacher_mode``); the
student starts from the model's own student when it has one (a model started with ``--init default``
does), so a short run refines it rather than starting over (docs/OWN_CAMERA.md has the measurements).

Without ``--val-pairs``, the Wiener step's noise scale is then chosen on the captures themselves, by
the risk estimate of :mod:`bsgd_cli.engine.wiener_choice` with the student's output as the pilot, and
stored in the model (its info says so under ``wiener_choice``).

Files under ``out_dir``: what :func:`bsgd_cli.training.train.train` writes, then ``distill-N/`` (teacher
outputs, log) per round, and ``model.safetensors`` replaced by the trained branches with the distilled
student: the file to denoise with. The branches alone stay in ``branches.safetensors``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..batch.wiener_choice import CHOICE_IMAGES, choose_on_files
from ..checkpoint import load_model, save_model, user_model_dir
from ..config import Mode, ModelConfig, TrainConfig
from ..engine.runtime import resolve_runtime
from ..engine.wiener_choice import WienerChoice
from ..errors import ConfigError
from ..events import Progress, ProgressFn
from ..io import find_images
from .distill import DistillConfig, distill
from .distributed import rank_and_world
from .optim import WallClock
from .train import TrainSummary, train

MODEL_FILE = "model.safetensors"
CHOICE_SECONDS_PER_IMAGE = 2.0
"""Time set aside in a ``--minutes`` budget for the Wiener strength choice, per capture it reads (docs/NOTES.md)."""
BRANCHES_FILE = "branches.safetensors"


@dataclass(frozen=True, kw_only=True)
class ReadyPlan:
    """What a run does after (or instead of) training the branches.

    train_share: the share of a time budget for the branches (the rest: ``rounds`` distillations, each
    taking the previous one's model as its teacher). teacher_mode: None = the model's stored mode.
    choose_wiener: after distilling, choose the Wiener noise scale on the captures (not with val pairs).
    """

    distill: bool = True
    choose_wiener: bool = True
    train_share: float = 0.5
    rounds: int = 1
    teacher_mode: Mode | None = None
    distill_config: DistillConfig = DistillConfig(patch=96, steps=4000, lr=5e-4, warmup=50)


@dataclass
class ReadySummary:
    training: TrainSummary
    model: Path
    distilled: bool
    rounds: int = 0
    wiener: WienerChoice | None = None


def _usable_share(whole: WallClock, noisy_dir: Path) -> float:
    """The share of the budget left to training and distillation once the Wiener strength choice's
    time is set aside (:data:`CHOICE_SECONDS_PER_IMAGE` for each capture it reads); at least half."""
    found, _notes = find_images([Path(noisy_dir)], recursive=True)
    reserved = CHOICE_SECONDS_PER_IMAGE * min(len(found), CHOICE_IMAGES)
    return max(0.5, 1.0 - reserved / whole.seconds)


def _share(whole: WallClock | None, start: float, end: float) -> WallClock | None:
    """The part of ``whole`` from ``start`` to ``end`` (fractions): a clock that expires at ``end``."""
    if whole is None:
        return None
    return WallClock(seconds=whole.seconds * end, started=whole.started)


def train_ready(
    noisy_dir: Path,
    out_dir: Path,
    *,
    model_config: ModelConfig,
    config: TrainConfig,
    plan: ReadyPlan = ReadyPlan(),
    minutes: float | None = None,
    init: Any = None,
    resume: bool = False,
    val_pairs: Path | None = None,
    device: str = "auto",
    callback: ProgressFn | None = None,
    info: dict[str, Any] | None = None,
) -> ReadySummary:
    """Train, then (``plan.distill``) distil the student into the run's model file; see the module docstring.

    ``minutes``: the whole command's budget (training and distillation); ``init``: a
    :class:`~bsgd_cli.engine.model.LoadedModel` to start from. Under torchrun only rank 0 distils (the
    distillation runs in one process); the other ranks return after training.
    """
    if plan.distill and model_config.domain != "srgb":  # refused before any training, not after it
        raise ConfigError("the student is distilled on sRGB photos only; train a RAW model with --no-distill")
    out_dir = Path(out_dir)
    whole = None if minutes is None else WallClock.start(60.0 * minutes)
    choosing = plan.distill and plan.choose_wiener and val_pairs is None
    usable = 1.0 if whole is None or not choosing else _usable_share(whole, noisy_dir)
    train_end = plan.train_share * usable if plan.distill else 1.0
    summary = train(noisy_dir, out_dir, model_config=model_config, config=config, resume=resume, val_pairs=val_pairs,
                    device=device, callback=callback, info=info, budget=_share(whole, 0.0, train_end), init=init)
    model_path = out_dir / MODEL_FILE
    if not plan.distill or rank_and_world()[0] != 0:
        return ReadySummary(summary, model_path, distilled=False)
    shutil.copyfile(model_path, out_dir / BRANCHES_FILE)
    teacher_path = model_path
    for index in range(plan.rounds):
        teacher = load_model(teacher_path)
        sampler = teacher.sampler if plan.teacher_mode is None else replace(teacher.sampler, mode=plan.teacher_mode)
        end = train_end + (usable - train_end) * (index + 1) / plan.rounds
        teacher_path = distill(teacher, noisy_dir, out_dir / f"distill-{index + 1}", config=plan.distill_config,
                               sampler=sampler, store_sampler=teacher.sampler, device=device, callback=callback,
                               budget=_share(whole, 0.0, end))
    os.replace(teacher_path, model_path)
    choice = None
    if choosing:
        choice = choose_wiener(model_path, noisy_dir, device=device, callback=callback)
    return ReadySummary(summary, model_path, distilled=True, rounds=plan.rounds, wiener=choice)


def choose_wiener(model_path: Path, noisy_dir: Path, *, device: str = "auto",
                  callback: ProgressFn | None = None) -> WienerChoice | None:
    """Choose the Wiener step's noise scale on some of the captures in ``noisy_dir``
    (:func:`bsgd_cli.batch.wiener_choice.choose_on_files`, the student's output as the pilot) and store it
    in the model file; None (file unchanged) for a model without a student, Wiener step or sRGB domain,
    or when no capture can be read."""
    model = load_model(model_path)
    if model.model.student is None or model.sampler.refine != "wiener" or model.model.config.domain != "srgb":
        return None
    found, _notes = find_images([Path(noisy_dir)], recursive=True)

    def progress(done: int, total: int) -> None:
        if callback is not None:
            callback(Progress("wiener", done=done, total=total))

    choice = choose_on_files(model, [path for path, _relative in found], mode="fast",
                             runtime=resolve_runtime(device, "auto"), progress=progress)
    if choice is None:
        return None
    previous = model.sampler.wiener.for_mode(choice.mode).noise_scale
    sampler = replace(model.sampler, wiener=model.sampler.wiener.with_noise_scale(choice.noise_scale))
    info = {**model.info, "wiener_choice": {
        "noise_scale": choice.noise_scale, "previous": previous, "images": choice.images, "pilot": choice.mode,
        "by": "SURE on the training captures", "sure_noise_factor": choice.factor,
        "risks": {str(scale): round(risk, 5) for scale, risk in choice.risks.items()}}}
    save_model(model_path, model.model, sampler=sampler, info=info)
    return choice


def safe_name(name: str) -> str:
    """``name`` with only letters, digits, '.', '_', '-' (runs of anything else, and of '-', become one '-')."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._-]+", "-", name)).strip(".-") or "model"


def install_user_model(path: Path, name: str) -> str:
    """Copy a model file into the user model folder as ``NAME.safetensors`` (``bsgd models`` lists it);
    returns the name used (:func:`safe_name`)."""
    safe = safe_name(name)
    folder = user_model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{safe}.safetensors.partial"
    shutil.copyfile(path, temporary)
    os.replace(temporary, folder / f"{safe}.safetensors")
    return safe
