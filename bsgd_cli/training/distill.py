"""Distil a teacher pipeline into a compact single-pass student: the ``fast`` mode (self-distillation).

Self-supervised end to end: the teacher (any mode of a model, by default with its Wiener step, exactly
as ``bsgd denoise`` runs it) denoises the same noisy training images, and a small ordinary U-Net learns
to map each noisy image to the teacher's output (L1 on random augmented patches). No clean image is
involved anywhere. This is the recipe of the strongest published self-supervised sRGB denoisers
(AT-BSN(D), APR-RD, TM-BSN(D)): a non-blind student on pseudo-clean targets from a blind-spot teacher
plus refinement. Run it again with the result as the teacher for a second round.

The student starts from the teacher's own student when it has one of the same shape (``init="teacher"``)
or from random weights (``init="fresh"``). A GroupNorm teacher student also starts an affine-norm one
of the same shape (``StudentConfig(norm="affine")``, faster on a CPU): its norms' statistics frozen at
their average over the training images (:mod:`.affine_norm`), then fine-tuned. It is attached to a
copy of the teacher's model file, so one file serves every mode.

Outputs under ``out_dir``: ``targets.npz`` (noisy images and teacher outputs as uint16, reused on a
rerun with the same teacher and settings), ``log.jsonl`` and ``model.safetensors`` (teacher + student).
With ``targets_from`` another run's folder gives the targets instead (:func:`stored_targets`): several
students (widths, budgets) from one teacher run, which for the guided sampler costs minutes per run.

Given a :class:`bsgd_cli.training.optim.WallClock` budget, the student stops after the step that uses it up
(or at ``config.steps``), its learning rate following a cosine over the budget's time; the teacher's
targets are always made whole first.
"""

from __future__ import annotations

import copy
import json
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checks
from ..checkpoint import save_model
from ..config import SamplerConfig, StudentConfig, StudentInit, from_dict, to_dict
from ..engine.denoise import denoise_array
from ..engine.model import LoadedModel
from ..engine.runtime import autocast_context, resolve_device, resolve_runtime, training_precision
from ..errors import BsgdError, ConfigError, TrainingError
from ..events import Progress, ProgressFn
from ..nets.unet import ChannelAffine
from .affine_norm import affine_state, calibration_images
from .data import NoisyImagePool, augment, photometric_apply, photometric_draw
from .losses import student_loss
from .optim import WallClock, ema_update, warmup_cosine, warmup_cosine_by_time

TARGETS_FILE = "targets.npz"
MIN_PATCH = 32  # the smallest image side the student trains on
_SCALE = 65535.0


@dataclass(frozen=True, kw_only=True)
class DistillConfig:
    """How the targets are made and the student trained.

    crop: None runs the teacher on each whole training image (its Wiener step then measures the
    noise on the whole image, as for a user); a side in pixels runs it on ``crops_per_image`` random
    crops of that side instead (cheaper with a slow teacher). The student trains on random ``patch``
    sub-crops for ``steps`` steps (or until a time budget passed to :func:`distill` is used up).
    init: "teacher" fine-tunes the teacher's student when it has one of the requested shape; "fresh"
    starts from random weights. photometric: random darkening and channel order, applied to the noisy
    patch and its target alike. precision: the student's training precision ("auto": bf16 where the
    device computes it natively, else fp32; resolved by :func:`distill`).
    """

    crop: int | None = None
    crops_per_image: int = 2
    patch: int = 96
    steps: int = 2000
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 50
    ema: float = 0.995
    seed: int = 0
    log_every: int = 50
    precision: str = "auto"
    teacher_precision: str = "auto"
    init: StudentInit = "teacher"
    photometric: bool = True


@dataclass
class Pairs:
    """Noisy images and the teacher's outputs, uint16 H x W x C scaled by 65535 (sizes may differ)."""

    noisy: list[np.ndarray]
    target: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.noisy)

    def save(self, path: Path) -> None:
        arrays = {f"noisy_{i}": n for i, n in enumerate(self.noisy)}
        arrays.update({f"target_{i}": t for i, t in enumerate(self.target)})
        np.savez(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path, patch: int) -> Pairs:
        """The pairs an earlier run saved; a damaged or foreign file is refused in one line."""
        remedy = "delete it to compute the teacher outputs again"
        try:
            with np.load(path, allow_pickle=False) as stored:
                count = sum(1 for key in stored.files if key.startswith("noisy_"))
                pairs = cls([stored[f"noisy_{i}"] for i in range(count)], [stored[f"target_{i}"] for i in range(count)])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
            raise TrainingError(
                f"{path}: damaged or not bsgd teacher outputs ({type(exc).__name__}: {exc}); {remedy}"
            ) from exc
        shapes_ok = all(
            n.dtype == np.uint16 and n.shape == t.shape and n.ndim == 3
            for n, t in zip(pairs.noisy, pairs.target, strict=True)
        )
        if not pairs.noisy or not shapes_ok:
            raise TrainingError(f"{path}: does not hold bsgd teacher outputs; {remedy}")
        if min(min(n.shape[:2]) for n in pairs.noisy) < patch:
            raise TrainingError(f"{path}: its images are smaller than the {patch}-px patch; {remedy}")
        return pairs


def _to_uint16(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * _SCALE).astype(np.uint16)


def _teacher_inputs(pool: NoisyImagePool, config: DistillConfig) -> list[np.ndarray]:
    """Whole images, or ``crops_per_image`` random crops of each (float32 H x W x C in [0, 1])."""
    if config.crop is None:
        return [pool.image(index) for index in range(len(pool))]
    rng = np.random.default_rng([config.seed, 7])
    crops = []
    for index in range(len(pool)):
        height, width = pool._sizes[index]
        image = pool.image(index)
        for _ in range(config.crops_per_image):
            y = int(rng.integers(height - config.crop + 1))
            x = int(rng.integers(width - config.crop + 1))
            crops.append(image[y : y + config.crop, x : x + config.crop])
    return crops


def make_targets(
    teacher: LoadedModel,
    pool: NoisyImagePool,
    config: DistillConfig,
    sampler: SamplerConfig,
    device: torch.device,
    callback: ProgressFn | None = None,
) -> Pairs:
    """Run the teacher (``sampler``: mode, Wiener step and all) over the pool's images or crops."""
    inputs = _teacher_inputs(pool, config)
    runtime = resolve_runtime(device, config.teacher_precision)
    noisy, target = [], []
    for index, image in enumerate(inputs):
        output = denoise_array(teacher, image, sampler=sampler, runtime=runtime, seed=config.seed,
                               image_index=10_000_000 + index)
        noisy.append(_to_uint16(image))
        target.append(_to_uint16(output))
        if callback is not None:
            callback(Progress("targets", done=index + 1, total=len(inputs)))
    return Pairs(noisy, target)


def sample_pairs(pairs: Pairs, rng: np.random.Generator, config: DistillConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of (noisy, target) patches, (N, C, patch, patch) in [-1, 1], with the same augmentation."""
    xs, ys = [], []
    for _ in range(config.batch):
        index = int(rng.integers(len(pairs)))
        height, width = pairs.noisy[index].shape[:2]
        y = int(rng.integers(height - config.patch + 1))
        x = int(rng.integers(width - config.patch + 1))
        code = int(rng.integers(8))
        window = (slice(y, y + config.patch), slice(x, x + config.patch))
        noisy = augment(pairs.noisy[index][window], code).astype(np.float32) / _SCALE
        target = augment(pairs.target[index][window], code).astype(np.float32) / _SCALE
        if config.photometric:
            gain, order = photometric_draw(rng, noisy.shape[2])
            noisy, target = photometric_apply(noisy, gain, order), photometric_apply(target, gain, order)
        xs.append(np.ascontiguousarray(noisy).transpose(2, 0, 1))
        ys.append(np.ascontiguousarray(target).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(xs)) * 2 - 1, torch.from_numpy(np.stack(ys)) * 2 - 1


def _load_or_make_targets(
    teacher: LoadedModel, noisy_dir: Path, out_dir: Path, config: DistillConfig, sampler: SamplerConfig,
    device: torch.device, callback: ProgressFn | None,
) -> Pairs:
    """Targets from ``out_dir/targets.npz`` when it was made by this teacher and settings, else anew."""
    targets_path = out_dir / TARGETS_FILE
    key_path = out_dir / "targets.json"
    key = {"teacher_sha256": teacher.sha256, "sampler": to_dict(sampler), "crop": config.crop,
           "crops_per_image": config.crops_per_image, "seed": config.seed, "noisy_dir": str(noisy_dir)}
    if targets_path.is_file() and key_path.is_file() and _stored_key(key_path) == key:
        return Pairs.load(targets_path, MIN_PATCH)
    pool = NoisyImagePool.from_folder(Path(noisy_dir), min_side=config.crop or MIN_PATCH)
    pairs = make_targets(teacher, pool, config, sampler, device, callback)
    pairs.save(targets_path)
    key_path.write_text(json.dumps(key, indent=1) + "\n")
    return pairs


def check_sources(noisy_dir: Path | None, targets_from: Path | None) -> None:
    """Exactly one source of training pairs: photos for the teacher, or an earlier run's outputs."""
    if noisy_dir is None and targets_from is None:
        raise ConfigError("give --noisy-dir (the photos the teacher runs on) or --targets-from (an earlier "
                          "bsgd distill -o folder)")
    if noisy_dir is not None and targets_from is not None:
        raise ConfigError("--noisy-dir and --targets-from exclude each other: the stored targets were made on "
                          "their own run's photos; leave out one")


def stored_targets(folder: Path) -> tuple[Pairs, dict[str, Any]]:
    """The targets an earlier ``bsgd distill -o FOLDER`` made, and the key that says which teacher and
    settings made them (``targets.json``: teacher_sha256, sampler, crop, seed, noisy_dir)."""
    folder = Path(folder)
    key_path = folder / "targets.json"
    key = _stored_key(key_path) if key_path.is_file() and (folder / TARGETS_FILE).is_file() else None
    if key is None:
        raise TrainingError(
            f"{folder}: no teacher outputs there ({TARGETS_FILE} and targets.json); give the folder of an "
            "earlier bsgd distill -o run, or leave out --targets-from to run the teacher"
        )
    return Pairs.load(folder / TARGETS_FILE, MIN_PATCH), key


def _stored_key(path: Path) -> dict[str, Any] | None:
    """The key an earlier run stored beside its targets, its sampler read as a model file's would be
    (flat ``wiener_*`` keys of older runs nested), so targets made before an upgrade are reused."""
    try:
        key = json.loads(path.read_text())
        key["sampler"] = to_dict(from_dict(SamplerConfig, key["sampler"]))
    except (ValueError, TypeError, KeyError, BsgdError):
        return None
    return key


def _student_model(teacher: LoadedModel, student: StudentConfig, init: str, pairs: Pairs) -> tuple[Any, str]:
    """A copy of the teacher's model with a student of config ``student``, and where it started from."""
    model = copy.deepcopy(teacher.model).cpu()
    own = model.config.student
    if init == "teacher" and model.student is not None and own == student:
        return model, "the teacher's student"
    if init == "teacher" and model.student is not None and own is not None and own.norm == "group" \
            and replace(own, norm=student.norm) == student:
        images = calibration_images(pairs.noisy)
        group_student = model.student
        model.add_student(student)
        affine = {name for name, module in model.student.named_modules() if isinstance(module, ChannelAffine)}
        model.student.load_state_dict(affine_state(group_student, images, affine))  # type: ignore[union-attr]
        return model, f"the teacher's student, GroupNorm statistics frozen on {len(images)} training images"
    model.add_student(student)
    return model, "random weights"


def distill(
    teacher: LoadedModel,
    noisy_dir: Path | None,
    out_dir: Path,
    *,
    student: StudentConfig | None = None,
    config: DistillConfig | None = None,
    sampler: SamplerConfig | None = None,
    store_sampler: SamplerConfig | None = None,
    device: str = "auto",
    callback: ProgressFn | None = None,
    budget: WallClock | None = None,
    targets_from: Path | None = None,
) -> Path:
    """Train a student on the teacher's outputs; returns the path of the combined model file.

    sampler: the teacher pipeline (default: the teacher model's stored sampler, the one ``bsgd denoise``
    runs on a GPU). store_sampler: the sampler defaults written into the new file (default: the
    teacher's). student: the student's shape (default: the teacher's student, else StudentConfig()).
    budget: stop early when it is used up (module docstring); start it where the time counts from.
    targets_from: train on the targets stored in that earlier run's folder (:func:`stored_targets`);
    ``teacher`` then only gives the branches and the student to start from, and the file records the
    targets' own teacher and sampler.
    """
    config = config or DistillConfig()
    student = student or teacher.model.config.student or StudentConfig()
    sampler = sampler or teacher.sampler
    checks.TRAIN_STEPS.check("--steps", config.steps)
    checks.CROP.check("--crop", config.crop)
    checks.CROPS_PER_IMAGE.check("--crops-per-image", config.crops_per_image)
    checks.SEED.check("--seed", config.seed)
    checks.STUDENT_WIDTH.check("--width", student.width)
    if config.crop is not None and config.patch > config.crop:
        raise TrainingError(f"distill patch {config.patch} must not exceed the crop {config.crop}")
    torch_device = resolve_device(device)
    config = replace(config, precision=training_precision(config.precision, torch_device))
    check_sources(noisy_dir, targets_from)
    stored = None if targets_from is None else stored_targets(targets_from)  # before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if stored is None:
        assert noisy_dir is not None
        pairs = _load_or_make_targets(teacher, noisy_dir, out_dir, config, sampler, torch_device, callback)
        made_by = {"teacher_sampler": to_dict(sampler), "teacher_sha256": teacher.sha256}
    else:
        pairs, key = stored
        made_by = {"teacher_sampler": key["sampler"], "teacher_sha256": key["teacher_sha256"],
                   "targets_from": str(targets_from)}
    smallest = min(min(image.shape[:2]) for image in pairs.noisy)
    if smallest < config.patch:  # small photos (a phone's crops): patches as large as they allow
        config = replace(config, patch=smallest)

    torch.manual_seed(config.seed)
    model, started_from = _student_model(teacher, student, config.init, pairs)
    model.to(torch_device)
    steps, seconds = train_student(model, pairs, config, torch_device, out_dir / "log.jsonl", callback, budget)
    info = {
        **teacher.info,
        "student": {"distill_config": to_dict(config), **made_by, "pairs": len(pairs),
                    "started_from": started_from,
                    "steps_done": steps, "seconds": round(seconds, 1)},
    }
    path = out_dir / "model.safetensors"
    save_model(path, model.cpu(), sampler=store_sampler or teacher.sampler, info=info)
    return path


def train_student(
    model: Any, pairs: Pairs, config: DistillConfig, device: torch.device, log_path: Path,
    callback: ProgressFn | None = None, budget: WallClock | None = None,
) -> tuple[int, float]:
    """L1 training of ``model.student`` on the pairs (EMA weights kept); returns (steps, seconds)."""
    assert model.student is not None
    precision = training_precision(config.precision, device)
    ema = copy.deepcopy(model.student).eval()
    optimizer = torch.optim.AdamW(model.student.parameters(), lr=config.lr, weight_decay=1e-4)
    rng = np.random.default_rng([config.seed, 8])
    window: list[float] = []
    started = time.perf_counter()
    step = 0
    while step < config.steps and not (step > 0 and budget is not None and budget.expired()):  # one step at least
        if budget is None:
            lr = warmup_cosine(step, peak=config.lr, warmup=config.warmup, total=config.steps)
        else:
            lr = warmup_cosine_by_time(step, budget.fraction(), peak=config.lr, warmup=config.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = sample_pairs(pairs, rng, config)
        model.student.train()
        with autocast_context(device, precision):
            loss = student_loss(model, x.to(device), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.student.parameters(), 1.0)
        optimizer.step()
        ema_update(ema, model.student, step, config.ema)
        step += 1
        window.append(float(loss.detach()))
        last = step == config.steps or (budget is not None and budget.expired())
        if step % config.log_every == 0 or last:
            event = {"step": step, "loss_student": float(np.mean(window)), "lr": lr,
                     "seconds": round(time.perf_counter() - started, 1)}
            window = []
            with log_path.open("a") as handle:
                handle.write(json.dumps(event) + "\n")
            if callback is not None:
                callback(Progress("log", done=step, total=config.steps, data=event))
    model.student.load_state_dict(ema.state_dict())
    return step, time.perf_counter() - started
