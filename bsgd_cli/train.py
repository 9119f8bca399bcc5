"""Self-supervised training of both BSGD branches on a folder of noisy images.

Outputs under ``out_dir``: ``model.safetensors`` (final EMA weights, loads in ``bsgd denoise``),
``best.safetensors`` (best validation signal), ``state.pt`` (everything ``resume`` needs; read with
``weights_only=True``) and ``log.jsonl`` (one JSON object per logging step).
Resuming from ``state.pt`` gives the same weights as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .checkpoint import save_model
from .config import ModelConfig, SamplerConfig, TrainConfig, from_dict, to_dict
from .data import NoisyImagePool, sample_patches
from .errors import TrainingError
from .inference import autocast_context, resolve_device
from .losses import blind_spot_loss, diffusion_loss
from .model import BsgdModel
from .validation import Validator, make_validator

Callback = Callable[[dict[str, Any]], None]
STATE_FILE = "state.pt"
LOG_FILE = "log.jsonl"


@dataclass
class TrainSummary:
    out_dir: Path
    steps: int
    seconds: float
    best_step: int
    best_value: float | None
    best_metric: str
    skipped: list[str] = field(default_factory=list)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5% of ``lr`` at ``steps``."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _check(model_config: ModelConfig, config: TrainConfig) -> None:
    stride = model_config.blind_spot.pd_train
    if config.patch % stride or (config.patch // stride) < 8:
        raise TrainingError(
            f"--patch {config.patch} must be a multiple of the PD stride {stride} and at least {8 * stride}"
        )
    if config.steps < 1 or config.batch < 1:
        raise TrainingError("--steps and --batch must be at least 1")


def _state_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class Trainer:
    """One training run; ``run()`` drives it. State lives in explicit fields, saved by ``save_state``."""

    def __init__(
        self,
        noisy_dir: Path,
        out_dir: Path,
        *,
        model_config: ModelConfig,
        config: TrainConfig,
        val_pairs: Path | None = None,
        device: str = "auto",
        init_from: BsgdModel | None = None,
        sampler: SamplerConfig | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        _check(model_config, config)
        self.out_dir = Path(out_dir)
        self.config = config
        self.device = resolve_device(device)
        self.sampler = sampler or SamplerConfig()
        self.info = dict(info or {})
        torch.manual_seed(config.seed)
        self.model = BsgdModel(model_config).to(self.device)
        if init_from is not None:
            self.model.load_state_dict(init_from.state_dict())
        self.ema = copy.deepcopy(self.model).eval()
        for parameter in self.ema.parameters():
            parameter.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self._parameters(), lr=config.lr, weight_decay=config.weight_decay)
        pool = NoisyImagePool.from_folder(Path(noisy_dir), min_side=config.patch, cache_megabytes=config.cache_megabytes)
        self.skipped = pool.skipped
        split_rng = np.random.default_rng([config.seed, 1])
        self.pool, held_out = pool.split(config.val_fraction if val_pairs is None else 0.0, split_rng)
        self.validator: Validator = make_validator(val_pairs, held_out, config)
        self.rng = np.random.default_rng([config.seed, 2])
        self.generator = torch.Generator().manual_seed(config.seed + 3)
        self.step = 0
        self.best_value: float | None = None
        self.best_step = 0
        self.seconds = 0.0

    def _parameters(self) -> list[torch.nn.Parameter]:
        branch = self.config.branch
        if branch == "bsn":
            return list(self.model.blind_spot_net.parameters())
        if branch == "diffusion":
            return list(self.model.unet.parameters())
        return list(self.model.blind_spot_net.parameters()) + list(self.model.unet.parameters())

    # -- state -----------------------------------------------------------------------------------
    def save_state(self) -> None:
        state = {
            "bsgd_version": __version__,
            "model_config": json.dumps(to_dict(self.model.config)),
            "train_config": json.dumps(to_dict(self.config)),
            "sampler": json.dumps(to_dict(self.sampler)),
            "info": json.dumps(self.info),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "seconds": self.seconds,
            "best_value": self.best_value if self.best_value is not None else float("nan"),
            "best_step": self.best_step,
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "torch_rng": self.generator.get_state(),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.out_dir / STATE_FILE, _state_bytes(state))
        save_model(self.out_dir / "last.safetensors", self.ema, sampler=self.sampler, info=self._info())

    def load_state(self, path: Path) -> None:
        state = read_state(path)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.seconds = float(state["seconds"])
        best = float(state["best_value"])
        self.best_value = None if math.isnan(best) else best
        self.best_step = int(state["best_step"])
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        self.generator.set_state(state["torch_rng"])

    def _info(self) -> dict[str, Any]:
        return {**self.info, "train_config": to_dict(self.config), "steps_done": self.step, "train_seconds": round(self.seconds, 1)}

    # -- loop ------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        config = self.config
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, config)
        patches = torch.from_numpy(sample_patches(self.pool, self.rng, config.batch, config.patch)).to(self.device)
        noisy = patches * 2.0 - 1.0
        losses: dict[str, torch.Tensor] = {}
        with autocast_context(self.device, config.precision):
            if config.branch in ("bsn", "both"):
                losses["loss_bsn"] = blind_spot_loss(self.model, noisy, self.generator, config, config.t_max)
            if config.branch in ("diffusion", "both"):
                losses["loss_diffusion"] = diffusion_loss(self.model, noisy, self.generator, config.t_max)
        total = sum(losses.values())
        assert isinstance(total, torch.Tensor)
        if not torch.isfinite(total):
            raise TrainingError(f"the loss became {total.item()} at step {self.step}; lower --lr or use --precision fp32")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self._parameters(), config.grad_clip)
        self.optimizer.step()
        decay = min(config.ema, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for ema_param, param in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                ema_param.lerp_(param, 1.0 - decay)
        self.step += 1
        return {name: float(value.detach()) for name, value in losses.items()}

    def run(self, callback: Callback | None = None) -> TrainSummary:
        config = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.out_dir / LOG_FILE
        window: list[dict[str, float]] = []
        window_start = time.perf_counter()
        try:
            while self.step < config.steps:
                started = time.perf_counter()
                window.append(self.train_step())
                self.seconds += time.perf_counter() - started
                event: dict[str, Any] | None = None
                if self.step % config.log_every == 0 or self.step == config.steps:
                    elapsed = time.perf_counter() - window_start
                    event = {
                        "step": self.step,
                        "lr": learning_rate(self.step - 1, config),
                        "patches_per_s": len(window) * config.batch / max(elapsed, 1e-9),
                        **{k: float(np.mean([w[k] for w in window])) for k in window[0]},
                    }
                    window, window_start = [], time.perf_counter()
                if self.step % config.val_every == 0 or self.step == config.steps:
                    event = event or {"step": self.step}
                    self._validate(event)
                if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                    self.save_state()
                if event is not None:
                    event["seconds"] = round(self.seconds, 2)
                    with log_path.open("a") as handle:
                        handle.write(json.dumps(event) + "\n")
                    if callback is not None:
                        callback({"kind": "log", "total": config.steps, **event})
                elif callback is not None:
                    callback({"kind": "step", "step": self.step, "total": config.steps})
        except KeyboardInterrupt:
            self.save_state()
            raise
        save_model(self.out_dir / "model.safetensors", self.ema, sampler=self.sampler, info=self._info())
        if not (self.out_dir / "best.safetensors").exists():
            save_model(self.out_dir / "best.safetensors", self.ema, sampler=self.sampler, info=self._info())
        return TrainSummary(
            self.out_dir, self.step, self.seconds, self.best_step, self.best_value, self.validator.metric, self.skipped
        )

    def _validate(self, event: dict[str, Any]) -> None:
        value = self.validator.evaluate(self.ema, self.device)
        if value is None:
            return
        event[self.validator.metric] = value
        if self.best_value is None or self.validator.better(value, self.best_value):
            self.best_value, self.best_step = value, self.step
            info = {**self._info(), "best_metric": self.validator.metric, "best_value": value}
            save_model(self.out_dir / "best.safetensors", self.ema, sampler=self.sampler, info=info)
        event["best_step"] = self.best_step


def read_state(path: Path) -> dict[str, Any]:
    """A training state saved by :class:`Trainer` (loaded with ``weights_only=True``: no code runs)."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise TrainingError(f"{path}: no training state to resume from; start without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means a damaged or foreign file
        raise TrainingError(f"{path}: cannot read the training state ({exc}); start a fresh run") from exc


def train(
    noisy_dir: Path,
    out_dir: Path,
    *,
    model_config: ModelConfig,
    config: TrainConfig,
    resume: bool = False,
    val_pairs: Path | None = None,
    device: str = "auto",
    callback: Callback | None = None,
    info: dict[str, Any] | None = None,
) -> TrainSummary:
    """Train (or resume training of) a BSGD model; see the module docstring for the outputs.

    On resume the stored model config is used; ``config.steps`` may extend the run.
    """
    out_dir = Path(out_dir)
    if resume:
        state = read_state(out_dir)
        model_config = from_dict(ModelConfig, json.loads(state["model_config"]))
        stored = from_dict(TrainConfig, json.loads(state["train_config"]))
        from dataclasses import replace

        config = replace(stored, steps=config.steps)
    trainer = Trainer(
        noisy_dir, out_dir, model_config=model_config, config=config, val_pairs=val_pairs, device=device, info=info
    )
    if resume:
        trainer.load_state(out_dir / STATE_FILE)
    return trainer.run(callback)
