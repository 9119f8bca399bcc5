"""A GroupNorm student turned into an affine-norm one (``StudentConfig(norm="affine")`` or ``"mixed"``),
the start of its fine-tuning by ``bsgd distill --norm affine`` (or ``mixed``).

Each GroupNorm normalises by the statistics of the tile it sees. Here they are frozen at their average
over calibration images (the distillation's own noisy images): the norm becomes a fixed per-channel
scale and shift, which inference folds into the convolutions (:mod:`bsgd_cli.nets.folded`). Frozen
statistics alone lose quality (the per-tile ones tell how noisy and how bright a tile is), so the
student is fine-tuned afterwards (docs/LEARNING.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch
from torch import nn

CALIBRATION_SIDE = 256  # the centre crop of each calibration image, at most this side
CALIBRATION_IMAGES = 48


def calibration_images(noisy: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """Up to :data:`CALIBRATION_IMAGES` images spread over ``noisy`` (uint16 H x W x C), centre crops of
    at most :data:`CALIBRATION_SIDE`, as (1, C, H, W) float32 in [-1, 1]."""
    count = min(len(noisy), CALIBRATION_IMAGES)
    picks = np.linspace(0, len(noisy) - 1, count).round().astype(int)
    images = []
    for index in picks:
        image = noisy[index]
        height, width = image.shape[:2]
        top, left = max(0, (height - CALIBRATION_SIDE) // 2), max(0, (width - CALIBRATION_SIDE) // 2)
        crop = image[top : top + CALIBRATION_SIDE, left : left + CALIBRATION_SIDE].astype(np.float32) / 65535.0
        images.append(torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None] * 2 - 1)
    return images


def group_norm_statistics(
    student: nn.Module, images: Sequence[torch.Tensor]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per GroupNorm of ``student`` (by module name): each group's mean and variance, the mean over
    ``images`` of the ones it computed on each (float64 sums, float32 out)."""
    sums: dict[str, list] = {}

    def record(name: str, norm: nn.GroupNorm):
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            grouped = inputs[0].double().reshape(inputs[0].shape[0], norm.num_groups, -1)
            entry = sums.setdefault(name, [0.0, 0.0, 0])
            entry[0] = entry[0] + grouped.mean(-1).sum(0)
            entry[1] = entry[1] + grouped.var(-1, unbiased=False).sum(0)
            entry[2] += grouped.shape[0]
        return hook

    norms = {name: module for name, module in student.named_modules() if isinstance(module, nn.GroupNorm)}
    handles = [norm.register_forward_pre_hook(record(name, norm)) for name, norm in norms.items()]
    was_training = student.training
    try:
        student.eval()
        with torch.no_grad():
            for image in images:
                student(image)
    finally:
        student.train(was_training)
        for handle in handles:
            handle.remove()
    return {name: (mean / count, variance / count) for name, (mean, variance, count) in sums.items()}


def affine_state(
    student: nn.Module, images: Sequence[torch.Tensor], names: Collection[str]
) -> dict[str, torch.Tensor]:
    """``student``'s state dict with the weight and bias of each GroupNorm named in ``names`` replaced by
    the per-channel scale and shift that its average statistics on ``images`` give: the weights of a
    network of the same shape with affine norms there (``UNet(norm="affine")`` or ``"mixed"``)."""
    statistics = group_norm_statistics(student, images)
    state = {name: tensor.detach().clone() for name, tensor in student.state_dict().items()}
    for name, (mean, variance) in statistics.items():
        if name not in names:
            continue
        norm = student.get_submodule(name)
        assert isinstance(norm, nn.GroupNorm)
        per_group = norm.num_channels // norm.num_groups
        scale = norm.weight.detach().double() / torch.sqrt(variance.repeat_interleave(per_group) + norm.eps)
        state[f"{name}.weight"] = scale.float()
        state[f"{name}.bias"] = (norm.bias.detach().double() - mean.repeat_interleave(per_group) * scale).float()
    return state
