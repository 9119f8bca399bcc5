"""Distil the BSGD sampler into a compact single-pass student: the ``fast`` mode.

Self-supervised end to end: the teacher (both branches plus the guided sampler) runs over crops of
the same noisy training images, and a small ordinary U-Net learns to map each noisy crop to the
sampler's output (L1). No clean image is involved anywhere. The student is attached to a copy of
the teacher's model file, so one file serves every mode.

Outputs under ``out_dir``: ``targets.npz`` (teacher outputs, reused on a rerun), ``log.jsonl`` and
``model.safetensors`` (teacher + student).

Given a :class:`bsgd_cli.optim.WallClock` budget, the student stops after the step that uses it up
(or at ``config.steps``), its learning rate following a cosine over the budget's time; the teacher's
targets are always made whole first.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import LoadedModel, save_model
from .config import SamplerConfig, StudentConfig, to_dict
from .data import NoisyImagePool, augment
from .errors import TrainingError
from .inference import autocast_context, denoise_tensor, resolve_device, tile_generator
from .losses import student_loss
from .optim import WallClock, ema_update, warmup_cosine, warmup_cosine_by_time

Callback = Callable[[dict[str, Any]], None]
TARGETS_FILE = "targets.npz"


@dataclass(frozen=True, kw_only=True)
class DistillConfig:
    """crops_per_image crops of side ``crop`` are run through the teacher; the student trains on
    random ``patch`` sub-crops of those pairs for ``steps`` steps."""

    crops_per_image: int = 2
    crop: int = 128
    patch: int = 96
    steps: int = 2000
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 50
    ema: float = 0.995
    seed: int = 0
    log_every: int = 50
    precision: str = "bf16"
    teacher_precision: str = "fp32"
    teacher_batch: int = 4


def make_targets(
    teacher: LoadedModel,
    pool: NoisyImagePool,
    config: DistillConfig,
    sampler: SamplerConfig,
    device: torch.device,
    callback: Callback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, target) uint16 arrays (N, crop, crop, 3) scaled by 65535: random crops and the teacher's output."""
    rng = np.random.default_rng([config.seed, 7])
    crops = []
    for index in range(len(pool)):
        height, width = pool._sizes[index]
        image = pool.image(index)
        for _ in range(config.crops_per_image):
            y = int(rng.integers(height - config.crop + 1))
            x = int(rng.integers(width - config.crop + 1))
            crops.append(image[y : y + config.crop, x : x + config.crop])
    noisy = np.stack(crops).astype(np.float32)
    targets = np.empty_like(noisy)
    net = teacher.model.to(device).eval()
    for first in range(0, len(noisy), config.teacher_batch):
        chunk = torch.from_numpy(noisy[first : first + config.teacher_batch]).permute(0, 3, 1, 2).to(device)
        generators = [tile_generator(config.seed, 10_000_000 + first + i, 0) for i in range(chunk.shape[0])]
        with torch.inference_mode(), autocast_context(device, config.teacher_precision):
            out = denoise_tensor(net, chunk, sampler, generators)
        targets[first : first + chunk.shape[0]] = out.permute(0, 2, 3, 1).cpu().numpy()
        if callback is not None:
            callback({"kind": "targets", "done": min(first + config.teacher_batch, len(noisy)), "total": len(noisy)})
    scale = 65535.0
    return (np.round(noisy * scale).astype(np.uint16), np.round(np.clip(targets, 0, 1) * scale).astype(np.uint16))


def _batch(noisy: np.ndarray, target: np.ndarray, rng: np.random.Generator, config: DistillConfig) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    size = noisy.shape[1]
    for _ in range(config.batch):
        index = int(rng.integers(len(noisy)))
        y = int(rng.integers(size - config.patch + 1))
        x = int(rng.integers(size - config.patch + 1))
        code = int(rng.integers(8))
        xs.append(augment(noisy[index, y : y + config.patch, x : x + config.patch], code))
        ys.append(augment(target[index, y : y + config.patch, x : x + config.patch], code))
    to_tensor = lambda items: torch.from_numpy(np.stack(items).astype(np.float32) / 65535.0).permute(0, 3, 1, 2)  # noqa: E731
    return to_tensor(xs) * 2 - 1, to_tensor(ys) * 2 - 1


def distill(
    teacher: LoadedModel,
    noisy_dir: Path,
    out_dir: Path,
    *,
    student: StudentConfig | None = None,
    config: DistillConfig | None = None,
    sampler: SamplerConfig | None = None,
    device: str = "auto",
    callback: Callback | None = None,
    budget: WallClock | None = None,
) -> Path:
    """Train a student on the teacher's BSGD outputs; returns the path of the combined model file.

    ``budget``: stop early when it is used up (module docstring); start it where the time counts from.
    """
    config = config or DistillConfig()
    student = student or StudentConfig()
    sampler = replace(sampler or teacher.sampler, mode="bsgd")
    if config.patch > config.crop:
        raise TrainingError(f"distill patch {config.patch} must not exceed the crop {config.crop}")
    torch_device = resolve_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets_path = out_dir / TARGETS_FILE
    if targets_path.is_file():
        stored = np.load(targets_path)
        noisy, target = stored["noisy"], stored["target"]
    else:
        pool = NoisyImagePool.from_folder(Path(noisy_dir), min_side=config.crop)
        noisy, target = make_targets(teacher, pool, config, sampler, torch_device, callback)
        np.savez(targets_path, noisy=noisy, target=target)

    torch.manual_seed(config.seed)
    model = copy.deepcopy(teacher.model).cpu()
    model.add_student(student)
    model.to(torch_device)
    assert model.student is not None
    ema = copy.deepcopy(model.student).eval()
    optimizer = torch.optim.AdamW(model.student.parameters(), lr=config.lr, weight_decay=1e-4)
    rng = np.random.default_rng([config.seed, 8])
    log_path = out_dir / "log.jsonl"
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
        x, y = _batch(noisy, target, rng, config)
        model.student.train()
        with autocast_context(torch_device, config.precision):
            loss = student_loss(model, x.to(torch_device), y.to(torch_device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.student.parameters(), 1.0)
        optimizer.step()
        ema_update(ema, model.student, step, config.ema)
        window.append(float(loss.detach()))
        step += 1
        last = step == config.steps or (budget is not None and budget.expired())
        if step % config.log_every == 0 or last:
            event = {"step": step, "loss_student": float(np.mean(window)), "lr": lr,
                     "seconds": round(time.perf_counter() - started, 1)}
            window = []
            with log_path.open("a") as handle:
                handle.write(json.dumps(event) + "\n")
            if callback is not None:
                callback({"kind": "log", "total": config.steps, **event})
    model.student.load_state_dict(ema.state_dict())
    info = {
        **teacher.info,
        "student": {"distill_config": to_dict(config), "teacher_sampler": to_dict(sampler),
                    "teacher_sha256": teacher.sha256, "pairs": int(len(noisy)), "steps_done": step,
                    "seconds": round(time.perf_counter() - started, 1)},
    }
    path = out_dir / "model.safetensors"
    save_model(path, model.cpu(), sampler=teacher.sampler, info=info)
    return path
