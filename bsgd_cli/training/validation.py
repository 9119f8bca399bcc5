"""Validation signals while training: PSNR on noisy/clean pairs, or a no-reference held-out loss.

Self-supervised denoisers are known to peak before the end of training, so the trainer keeps the
best checkpoint by this signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..benchmark.datasets import Dataset, load_dataset
from ..benchmark.metrics import psnr_uint8, to_uint8
from ..config import TrainConfig
from ..engine.model import BsgdModel
from ..errors import BsgdError, TrainingError
from .data import NoisyImagePool, sample_patches

_CROP = 256
_MAX_PAIRS = 8


def _as_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32)


def _centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    y, x = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return image[y : y + size, x : x + size]


def open_pairs(root: Path, limit: int | None = None) -> Dataset:
    """Open a folder of noisy/clean pairs in any layout the benchmark knows (pairs, polyu/cc, sidd-pair)."""
    errors = []
    for kind in ("pairs", "polyu", "sidd-pair"):
        try:
            return load_dataset(kind, Path(root), limit=limit)
        except BsgdError as exc:
            errors.append(f"{kind}: {exc}")
    raise TrainingError(f"{root}: not a folder of noisy/clean pairs ({'; '.join(errors)})")


@dataclass
class Validator:
    """``evaluate(model)`` returns the signal or None; ``metric`` names it; higher PSNR / lower loss wins."""

    metric: str
    pairs: list[tuple[np.ndarray, np.ndarray]] | None = None
    patches: torch.Tensor | None = None
    config: TrainConfig | None = None

    def better(self, value: float, best: float) -> bool:
        return value > best if self.metric == "val_psnr" else value < best

    @torch.no_grad()
    def evaluate(self, model: BsgdModel, device: torch.device) -> float | None:
        model.eval()
        if self.pairs is not None:
            stride = model.config.blind_spot.pd_infer
            scores = []
            for noisy, clean in self.pairs:
                y = torch.from_numpy(noisy).permute(2, 0, 1)[None].to(device) * 2 - 1
                out = model.blind_spot(y, torch.zeros(1, device=device), stride)
                denoised = ((out + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
                scores.append(min(psnr_uint8(to_uint8(clean), denoised), 100.0))
            return float(np.mean(scores))
        if self.patches is not None:
            assert self.config is not None
            y = self.patches.to(device)
            prediction = model.blind_spot(y, torch.zeros(y.shape[0], device=device), model.config.blind_spot.pd_train)
            return float(torch.mean(torch.abs(prediction - y)))
        return None


def make_validator(val_pairs: Path | None, held_out: NoisyImagePool | None, config: TrainConfig) -> Validator:
    """PSNR in ``bsn`` mode on up to 8 centre crops of ``val_pairs``, else the held-out blind-spot L1 loss."""
    if val_pairs is not None:
        dataset = open_pairs(val_pairs, limit=_MAX_PAIRS)
        pairs = []
        for sample in dataset:
            assert sample.clean is not None
            pairs.append((_centre_crop(_as_float(sample.noisy), _CROP), _centre_crop(_as_float(sample.clean), _CROP)))
        return Validator(metric="val_psnr", pairs=pairs)
    if held_out is not None and len(held_out) > 0:
        rng = np.random.default_rng([config.seed, 99])
        patches = torch.from_numpy(sample_patches(held_out, rng, 32, config.patch)) * 2 - 1
        return Validator(metric="val_loss", patches=patches, config=config)
    return Validator(metric="none")
