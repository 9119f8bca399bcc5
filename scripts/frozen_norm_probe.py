"""Would the student keep its quality with GroupNorm's statistics frozen? A probe for a GroupNorm-free student.

    cd scripts && ../.venv/bin/python frozen_norm_probe.py [--model ../runs/v10/model.safetensors] [--calibrate 32] [--set polyu-1-40 ...]
        [--fine-tune-minutes 25 --targets ../runs/sd7 [--out ../runs/frozen-student.pt]]

It probes a GroupNorm student: v10's (the default until v11, whose student is partly affine). The
library's version of the same conversion is bsgd_cli/training/affine_norm.py (there the variance is
the mean of each tile's own, here the pooled one). Each GroupNorm of the student normalises its input
by the statistics of the tile it sees. Frozen, it uses their average over calibration images (the first N of the training pool's DND crops and all of its
SIDD blocks, ../shared/data): a fixed per-channel scale and shift, which a later step could fold into the
neighbouring convolutions (docs/PROFILE.md). Scores the student's output alone and with the model's
Wiener step, as it is and frozen, on tuning-split sets (scripts/protocol.py's sets and Wiener step), CPU,
bf16 as the CPU default runs it. Without --fine-tune-minutes: what the frozen statistics cost as they
are. With it, the frozen student (scales and shifts now trained too) is then fine-tuned by
distillation on the teacher outputs an earlier ``bsgd distill -o DIR`` stored (DIR/targets.npz), with
``bsgd distill``'s own loop and a time budget, and scored again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from protocol import SHARED, load_set, pilot, refine  # scripts/ is on the path when run as a script
from torch import nn

from bsgd_cli.benchmark.metrics import psnr_uint8, to_uint8
from bsgd_cli.checkpoint import load_model
from bsgd_cli.engine.model import LoadedModel
from bsgd_cli.training.distill import DistillConfig, Pairs, train_student
from bsgd_cli.training.optim import WallClock


class FrozenGroupNorm(nn.Module):
    """A GroupNorm with fixed per-group mean and variance: a per-channel scale and shift."""

    def __init__(self, norm: nn.GroupNorm, mean: torch.Tensor, variance: torch.Tensor) -> None:
        super().__init__()
        per_group = norm.num_channels // norm.num_groups
        scale = norm.weight.detach() / torch.sqrt(variance.repeat_interleave(per_group) + norm.eps)
        shift = norm.bias.detach() - mean.repeat_interleave(per_group) * scale
        self.scale = nn.Parameter(scale[None, :, None, None].clone())
        self.shift = nn.Parameter(shift[None, :, None, None].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift.to(x.dtype), x, self.scale.to(x.dtype))


def _norms(student: nn.Module) -> dict[str, nn.GroupNorm]:
    return {name: module for name, module in student.named_modules() if isinstance(module, nn.GroupNorm)}


def calibrate(model: LoadedModel, images: list[np.ndarray]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per GroupNorm, the mean over the images' tiles of each group's mean and mean square (float64)."""
    sums: dict[str, list] = {}

    def record(name: str, norm: nn.GroupNorm):
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].double()
            grouped = x.reshape(x.shape[0], norm.num_groups, -1)
            entry = sums.setdefault(name, [0.0, 0.0, 0])
            entry[0] = entry[0] + grouped.mean(-1).sum(0)
            entry[1] = entry[1] + grouped.square().mean(-1).sum(0)
            entry[2] += x.shape[0]
        return hook

    handles = [norm.register_forward_pre_hook(record(name, norm)) for name, norm in _norms(model.model.student).items()]
    try:
        for image in images:
            pilot(model, "fast", image, 0)
    finally:
        for handle in handles:
            handle.remove()
    stats = {}
    for name, (total, squares, count) in sums.items():
        mean, square = total / count, squares / count
        stats[name] = (mean.float(), (square - mean.square()).float())
    return stats


def freeze(model: LoadedModel, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    student = model.model.student
    for name, norm in _norms(student).items():
        parent_name, _, attribute = name.rpartition(".")
        parent = student.get_submodule(parent_name) if parent_name else student
        setattr(parent, attribute, FrozenGroupNorm(norm, *stats[name]))


def score(model: LoadedModel, set_name: str) -> tuple[float, float]:
    """Mean PSNR of the student alone and with the model's Wiener step over one set."""
    alone, piped = [], []
    for index, (_name, noisy, clean) in enumerate(load_set(set_name)):
        estimate = pilot(model, "fast", noisy, index)
        alone.append(psnr_uint8(to_uint8(estimate), clean))
        piped.append(psnr_uint8(to_uint8(refine(model, noisy, estimate)), clean))
    return float(np.mean(alone)), float(np.mean(piped))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--calibrate", type=int, default=32, help="DND crops to calibrate on (first N, sorted)")
    parser.add_argument("--set", action="append", dest="sets", help="tuning sets (default: polyu-1-40, sidd-pair)")
    parser.add_argument("--fine-tune-minutes", type=float, default=0.0)
    parser.add_argument("--targets", type=Path, help="a bsgd distill -o folder holding targets.npz")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--out", type=Path, help="save the fine-tuned student's state_dict here (torch.save)")
    args = parser.parse_args()
    sets = args.sets or ["polyu-1-40", "sidd-pair"]
    model = load_model(args.model)
    paths = sorted((SHARED / "train" / "dnd").glob("*.png"))[: args.calibrate]
    paths += sorted((SHARED / "noisy" / "sidd-blocks").glob("*.png"))
    images = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0 for p in paths]
    as_is = {name: score(model, name) for name in sets}
    freeze(model, calibrate(model, images))
    frozen = {name: score(model, name) for name in sets}
    tuned = {}
    if args.fine_tune_minutes > 0:
        config = DistillConfig(steps=1_000_000, lr=args.lr)
        pairs = Pairs.load(args.targets / "targets.npz", config.patch)
        steps, seconds = train_student(model.model, pairs, config, torch.device("cpu"), Path("/dev/null"),
                                       budget=WallClock.start(args.fine_tune_minutes * 60))
        print(f"fine-tuned {steps} steps in {seconds:.0f} s on {len(pairs)} pairs from {args.targets}")
        model.model.student.eval()
        if args.out is not None:
            torch.save(model.model.student.state_dict(), args.out)
        tuned = {name: score(model, name) for name in sets}
    print(f"calibration: {len(images)} images ({Path(paths[0]).parent.name} ...)\n")
    head = " | fine-tuned: alone / + Wiener" if tuned else ""
    print(f"| set | as it is: alone / + Wiener | frozen statistics: alone / + Wiener{head} |")
    print("|---|---|---|" + ("---|" if tuned else ""))
    for name in sets:
        row = f"| {name} | {as_is[name][0]:.2f} / {as_is[name][1]:.2f} | {frozen[name][0]:.2f} / {frozen[name][1]:.2f} |"
        if tuned:
            row += f" {tuned[name][0]:.2f} / {tuned[name][1]:.2f} |"
        print(row)


if __name__ == "__main__":
    main()
