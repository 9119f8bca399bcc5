"""Self-supervised training of both BSGD branches on a folder of noisy images.

Outputs under ``out_dir``: ``model.safetensors`` (final EMA weights, loads in ``bsgd denoise``),
``best.safetensors`` (best validation signal), ``state.pt`` (everything ``resume`` needs; read with
``weights_only=True``) and ``log.jsonl`` (one JSON object per logging step).
Resuming from ``state.pt`` gives the same weights as an uninterrupted run with the same seed.

A run ends at ``config.steps`` or, given a :class:`bsgd_cli.training.optim.WallClock` budget, after the step
that uses the budget up, whichever comes first. With a budget the learning rate warms up over
``config.warmup`` steps counted from where this call started and then follows a cosine over the
budget's *time*, so it reaches its floor when the time runs out at any step rate; each call with a
budget is one such segment (a warm restart when it resumes). Such runs depend on timing and are not
bit-reproducible; runs by steps alone still are.

On CUDA the diffusion times and noise are drawn on the GPU from a CUDA generator (drawing them on the
CPU would cost more than the step); on other devices from a CPU generator, as before.

Under torchrun (:func:`bsgd_cli.training.distributed.distributed_context`) the model is wrapped in
DistributedDataParallel and ``config.batch`` stays the *global* batch: every rank draws the whole
batch from the same generators and trains on its own slice; rank 0 alone validates and writes files.
docs/SCALING.md says why a step then sees exactly the samples of a single-process step.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__, checks
from ..checkpoint import save_model
from ..config import ModelConfig, SamplerConfig, TrainConfig, from_dict, to_dict
from ..engine.model import BsgdModel, LoadedModel
from ..engine.runtime import autocast_context, resolve_device
from ..errors import BsgdError, TrainingError
from ..events import Progress, ProgressFn, ignore
from .data import NoisyImagePool, PatchPrefetcher, raw_pool, sample_patches
from .distributed import all_reduce_mean, barrier, broadcast_object, on_rank0, rank_and_world, wrap_for_processes
from .losses import BranchLosses, draw_noise
from .optim import WallClock, ema_update, warmup_cosine, warmup_cosine_by_time
from .train_state import STATE_FILE, read_state, state_bytes, write_atomic
from .validation import Validator, make_validator

LOG_FILE = "log.jsonl"
__all__ = ["STATE_FILE", "LOG_FILE", "TrainSummary", "Trainer", "learning_rate", "read_state", "train"]


@dataclass
class TrainSummary:
    out_dir: Path
    steps: int
    seconds: float
    best_step: int
    best_value: float | None
    best_metric: str
    skipped: list[str] = field(default_factory=list)


@dataclass
class _Window:
    """The steps since the last log line: their losses, and when the first of them began."""

    rows: list[dict[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def line(self, step: int, lr: float, batch: int) -> dict[str, Any]:
        """The log line of the window (mean losses, patches per second), and a new window begins."""
        elapsed = time.perf_counter() - self.started
        line = {"step": step, "lr": lr, "patches_per_s": len(self.rows) * batch / max(elapsed, 1e-9),
                **{key: float(np.mean([row[key] for row in self.rows])) for key in self.rows[0]}}
        self.rows, self.started = [], time.perf_counter()
        return line


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5% of ``lr`` at ``steps``."""
    return warmup_cosine(step, peak=config.lr, warmup=config.warmup, total=config.steps)


def _check(model_config: ModelConfig, config: TrainConfig) -> None:
    stride = model_config.blind_spot.pd_train
    if config.patch % stride or (config.patch // stride) < 8:
        raise TrainingError(
            f"--patch {config.patch} must be a multiple of the PD stride {stride} and at least {8 * stride}"
        )
    checks.TRAIN_STEPS.check("--steps", config.steps)
    checks.TRAIN_BATCH.check("--batch", config.batch)
    checks.LEARNING_RATE.check("--lr", config.lr)
    checks.SEED.check("--seed", config.seed)
    for name in ("checkpoint_every", "log_every", "val_every"):
        checks.EVERY.check(f"--{name.replace('_', '-')}", getattr(config, name))


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
        self.rank, self.world = rank_and_world()
        if config.batch % self.world:
            raise TrainingError(
                f"--batch {config.batch} is the global batch and must be divisible by the {self.world} processes"
            )
        self.local_batch = config.batch // self.world
        self.out_dir = Path(out_dir)
        self.config = config
        self.device = resolve_device(device)
        self.sampler = sampler or SamplerConfig()
        self.info = dict(info or {})
        torch.manual_seed(config.seed)
        self.model = BsgdModel(model_config).to(self.device)
        if init_from is not None:
            self.model.load_state_dict(init_from.state_dict())
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.ema = copy.deepcopy(self.model).eval()
        for parameter in self.ema.parameters():
            parameter.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self._parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.loss_module = wrap_for_processes(BranchLosses(self.model, config), self._parameters(), self.device)
        if model_config.domain == "raw":  # packed Bayer planes from RAW files (bsgd_cli.raw)
            if val_pairs is not None:
                raise TrainingError("--val-pairs holds sRGB pairs and cannot validate a RAW-domain model; leave it out")
            pool = raw_pool(Path(noisy_dir), patch=config.patch, cache_megabytes=config.cache_megabytes)
        else:
            pool = NoisyImagePool.from_folder(
                Path(noisy_dir), min_side=config.patch, cache_megabytes=config.cache_megabytes
            )
        self.skipped = pool.skipped
        split_rng = np.random.default_rng([config.seed, 1])
        self.pool, held_out = pool.split(config.val_fraction if val_pairs is None else 0.0, split_rng)
        self.validator: Validator = make_validator(val_pairs, held_out, config)
        self.rng = np.random.default_rng([config.seed, 2])
        # The patch generator's state after the last batch trained on: what a checkpoint saves.
        # With a prefetcher the generator itself is already a batch or two further on.
        self.rng_state_consumed: Mapping[str, Any] = self.rng.bit_generator.state
        self.prefetcher: PatchPrefetcher | None = None
        self.generator = torch.Generator(self.device if self.device.type == "cuda" else "cpu").manual_seed(
            config.seed + 3
        )
        self.step = 0
        self.best_value: float | None = None
        self.best_step = 0
        self.seconds = 0.0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _parameters(self) -> list[torch.nn.Parameter]:
        branch = self.config.branch
        if branch == "bsn":
            return list(self.model.blind_spot_net.parameters())
        if branch == "diffusion":
            return list(self.model.unet.parameters())
        return list(self.model.blind_spot_net.parameters()) + list(self.model.unet.parameters())

    # -- state -----------------------------------------------------------------------------------
    def save_state(self) -> None:
        """Write state.pt and last.safetensors (rank 0 only; the other ranks hold the same state)."""
        if not self.is_main:
            return
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
            "numpy_rng": json.dumps(self.rng_state_consumed),
            "torch_rng": self.generator.get_state(),
            "torch_rng_device": self.generator.device.type,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.out_dir / STATE_FILE, state_bytes(state))
        save_model(self.out_dir / "last.safetensors", self.ema, sampler=self.sampler, info=self._info())

    def load_state(self, path: Path) -> None:
        self.apply_state(read_state(path))

    def apply_state(self, state: dict[str, Any]) -> None:
        """Continue from a state saved by :meth:`save_state` (with any number of processes).

        A compact state (:func:`bsgd_cli.training.train_state.compact_state`) has no raw weights: training
        continues from its EMA weights. Its bfloat16 tensors load into the float32 model and
        optimizer. A noise generator saved on another kind of device (CUDA vs CPU) cannot be
        restored; it is then seeded from (seed, step) and ``info["noise_reseeded_at_step"]`` says so.
        """
        self.model.load_state_dict(state["model"] if "model" in state else state["ema"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.seconds = float(state["seconds"])
        best = float(state["best_value"])
        self.best_value = None if math.isnan(best) else best
        self.best_step = int(state["best_step"])
        if "sampler" in state:  # a run started from another model keeps that model's measured defaults
            self.sampler = from_dict(SamplerConfig, json.loads(state["sampler"]))
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        self.rng_state_consumed = self.rng.bit_generator.state
        if state.get("torch_rng_device", "cpu") == self.generator.device.type:
            self.generator.set_state(state["torch_rng"])
        else:
            self.generator.manual_seed(self.config.seed + 3 + self.step)
            self.info["noise_reseeded_at_step"] = self.step

    def _info(self) -> dict[str, Any]:
        info = {
            **self.info,
            "train_config": to_dict(self.config),
            "steps_done": self.step,
            "train_seconds": round(self.seconds, 1),
        }
        if self.world > 1:
            info["world_size"] = self.world
        return info

    # -- loop ------------------------------------------------------------------------------------
    def train_step(self, lr: float | None = None) -> dict[str, float]:
        """One optimiser step at ``lr`` (default: the step schedule's). Returns the losses and
        ``data_s``, the seconds spent getting the patches (cutting them, or waiting for the prefetch
        thread: then near 0 unless the CPU falls behind)."""
        config = self.config
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, config) if lr is None else lr
        # The whole global batch is drawn on every rank (same generators, same states); each rank
        # keeps rows [lo, hi). With one process that is the whole batch, drawn as before.
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        data_started = time.perf_counter()
        if self.prefetcher is not None:
            patches, self.rng_state_consumed = self.prefetcher.next()
        else:
            patches = sample_patches(
                self.pool, self.rng, config.batch, config.patch, photometric_augment=config.photometric
            )
            self.rng_state_consumed = self.rng.bit_generator.state
        data_seconds = time.perf_counter() - data_started
        noisy = torch.from_numpy(patches[lo:hi] if self.world > 1 else patches).to(self.device) * 2.0 - 1.0
        if config.channels_last:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        shape = (config.batch, *patches.shape[1:])
        draws: list[torch.Tensor | None] = [None, None, None, None]
        if config.branch in ("bsn", "both"):
            draws[0:2] = draw_noise(shape, self.generator, config.t_max, config.t_zero_prob)
        if config.branch in ("diffusion", "both"):
            draws[2:4] = draw_noise(shape, self.generator, config.t_max, 0.0)
        if self.world > 1:
            draws = [None if d is None else d[lo:hi] for d in draws]
        with autocast_context(self.device, config.precision):
            losses = self.loss_module(noisy, *draws)
        total = sum(losses.values())
        assert isinstance(total, torch.Tensor)
        if self.world > 1:
            # Every rank logs (and checks) the global-batch mean, so all ranks stop together.
            means = all_reduce_mean(torch.stack([value.detach().float() for value in losses.values()]))
            reported = dict(zip(losses, means, strict=True))
            check = means.sum()
        else:
            reported, check = losses, total
        if not torch.isfinite(check):
            raise TrainingError(
                f"the loss became {check.item()} at step {self.step}; lower --lr or use --precision fp32"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self._parameters(), config.grad_clip)
        self.optimizer.step()
        ema_update(self.ema, self.model, self.step, config.ema)
        self.step += 1
        return {**{name: float(value.detach()) for name, value in reported.items()}, "data_s": data_seconds}

    def _out_of_time(self, budget: WallClock | None) -> bool:
        """Every rank stops after the same step: rank 0's clock decides."""
        if budget is None:
            return False
        if self.world == 1:
            return budget.expired()
        return bool(broadcast_object(budget.expired() if self.is_main else None))

    def run(self, callback: ProgressFn | None = None, budget: WallClock | None = None) -> TrainSummary:
        """Train until ``config.steps`` or, with ``budget``, until it is used up (module docstring)."""
        config, emit = self.config, callback or ignore
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        window = _Window()
        first_step = self.step
        last = self.step >= config.steps or self._out_of_time(budget)
        if config.prefetch and not last:
            self.prefetcher = PatchPrefetcher(self.pool, self.rng, config.batch, config.patch,
                                              photometric_augment=config.photometric, depth=config.prefetch)
        try:
            while not last:
                lr = self._learning_rate(first_step, budget)
                started = time.perf_counter()
                window.rows.append(self.train_step(lr))
                self.seconds += time.perf_counter() - started
                last = self.step >= config.steps or self._out_of_time(budget)
                self._after_step(lr, window, last, budget, emit)
        except KeyboardInterrupt:
            self.save_state()
            raise
        finally:
            if self.prefetcher is not None:
                self.prefetcher.close()
                self.prefetcher = None
                self.rng.bit_generator.state = self.rng_state_consumed  # forget the batches drawn ahead
        if self.is_main:
            save_model(self.out_dir / "model.safetensors", self.ema, sampler=self.sampler, info=self._info())
            if not (self.out_dir / "best.safetensors").exists():
                save_model(self.out_dir / "best.safetensors", self.ema, sampler=self.sampler, info=self._info())
        barrier()  # every rank returns once rank 0's files are complete
        return TrainSummary(
            self.out_dir, self.step, self.seconds, self.best_step, self.best_value, self.validator.metric, self.skipped
        )

    def _learning_rate(self, first_step: int, budget: WallClock | None) -> float:
        """By steps; with a budget, warm-up from this call's first step, then a cosine over the time."""
        config = self.config
        if budget is None:
            return learning_rate(self.step, config)
        return warmup_cosine_by_time(self.step - first_step, budget.fraction(), peak=config.lr, warmup=config.warmup)

    def _after_step(self, lr: float, window: _Window, last: bool, budget: WallClock | None, emit: ProgressFn) -> None:
        """The log line, validation and checkpoint a step is due for, and its progress event."""
        config = self.config
        event = window.line(self.step, lr, config.batch) if self.step % config.log_every == 0 or last else None
        if self.step % config.val_every == 0 or last:
            event = event or {"step": self.step}
            self._validate(event)
        if self.step % config.checkpoint_every == 0 or last:
            self.save_state()
            emit(Progress("checkpoint", done=self.step, total=config.steps))
        if event is None:
            emit(Progress("step", done=self.step, total=config.steps))
            return
        event["seconds"] = round(self.seconds, 2)
        if budget is not None:
            event["budget_fraction"] = round(budget.fraction(), 4)
        if self.is_main:
            with (self.out_dir / LOG_FILE).open("a") as handle:
                handle.write(json.dumps(event) + "\n")
        emit(Progress("log", done=self.step, total=config.steps, data=event))

    def _validate(self, event: dict[str, Any]) -> None:
        """Rank 0 only (the EMA is the same on every rank); the others wait at the next collective."""
        if not self.is_main:
            return
        value = self.validator.evaluate(self.ema, self.device)
        if value is None:
            return
        event[self.validator.metric] = value
        if self.best_value is None or self.validator.better(value, self.best_value):
            self.best_value, self.best_step = value, self.step
            info = {**self._info(), "best_metric": self.validator.metric, "best_value": value}
            save_model(self.out_dir / "best.safetensors", self.ema, sampler=self.sampler, info=info)
        event["best_step"] = self.best_step


def train(
    noisy_dir: Path,
    out_dir: Path,
    *,
    model_config: ModelConfig,
    config: TrainConfig,
    resume: bool = False,
    val_pairs: Path | None = None,
    device: str = "auto",
    callback: ProgressFn | None = None,
    info: dict[str, Any] | None = None,
    budget: WallClock | None = None,
    stored_config: bool = True,
    init: LoadedModel | None = None,
) -> TrainSummary:
    """Train (or resume training of) a BSGD model; see the module docstring for the outputs.

    On resume the stored model config is used, and the stored training config with only
    ``config.steps`` (the new total) taken from ``config``; with ``stored_config=False`` ``config`` is
    used whole (a new segment with other settings, e.g. another batch size on another machine).
    ``budget``: stop after the step that uses it up, with the learning rate fitted to it (module
    docstring); start it where the time should count from. Under torchrun rank 0 reads the state
    and sends it to the others (no shared folder needed to resume).
    ``init``: start from this model's weights (both branches and its student) and keep its architecture
    and stored sampler defaults; ``model_config`` must then be the init model's (see :func:`init_config`).
    """
    out_dir = Path(out_dir)
    state: dict[str, Any] = {}
    if resume:
        state = on_rank0(lambda: read_state(out_dir), TrainingError)
        try:
            model_config = from_dict(ModelConfig, json.loads(state["model_config"]))
            if stored_config:
                stored = from_dict(TrainConfig, json.loads(state["train_config"]))
                config = replace(stored, steps=config.steps)
        except (TypeError, ValueError, BsgdError) as exc:
            raise TrainingError(
                f"{out_dir / STATE_FILE}: its stored config is damaged ({exc}); start a fresh run"
            ) from exc
    if init is not None and not resume and model_config.student != init.model.config.student:
        raise TrainingError("the model config differs from the --init model's; build it with init_config()")
    trainer = Trainer(
        noisy_dir, out_dir, model_config=model_config, config=config, val_pairs=val_pairs, device=device, info=info,
        init_from=None if resume or init is None else init.model, sampler=None if init is None else init.sampler,
    )
    if resume:
        try:
            trainer.apply_state(state)
        except (RuntimeError, ValueError, TypeError, KeyError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            raise TrainingError(
                f"{out_dir / STATE_FILE}: does not fit its own config ({reason}); start a fresh run"
            ) from exc
    return trainer.run(callback, budget)


def init_config(
    init: LoadedModel, domain: str, *, pd_train: int | None = None, pd_infer: int | None = None
) -> ModelConfig:
    """The model config of a run started from ``init`` (``bsgd train --init``): its own architecture.

    A clear error when the data's domain is not the model's (an sRGB model cannot start a RAW-domain run,
    whose inputs are 4 packed Bayer planes, nor the other way round). PD stride overrides apply.
    """
    config = init.model.config
    if config.domain != domain:
        raise TrainingError(
            f"--init {init.path}: an {config.domain} model ({config.channels} channels) cannot start a {domain} run; "
            f"give --domain {config.domain}, or an --init model made for {domain} data"
        )
    return config.with_pd_strides(pd_train, pd_infer)
