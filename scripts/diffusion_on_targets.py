"""Issue 17, item 4: train the diffusion branch toward pseudo-clean images instead of noisy ones.

The diffusion branch of every shipped model was trained on noisy photos, so at the sampler's small
t_start it learned to reproduce their noise and acts as a smoother. Here it is fine-tuned on the
pseudo-clean targets a distillation run stored (its teacher pipeline's outputs, ``targets.npz``), on
diffusion times up to ``--t-max`` (the sampler starts at t_start 0.05), the model's other branches and
student kept. Then compare on the tuning split (docs/EVALUATION.md):

    .venv/bin/python scripts/diffusion_on_targets.py --targets runs/sd2/targets.npz \\
        --init runs/v8b/model.safetensors --out runs/diff-pc --minutes 50
    .venv/bin/python scripts/protocol.py --split tuning --model runs/diff-pc/model.safetensors \\
        --methods bsgd,bsgd-w0,bsgd-w1 --out runs/eval/tuning-diff-pc

``--resume`` continues the run from its state.pt for another ``--minutes``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from bsgd_cli.checkpoint import load_model
from bsgd_cli.config import UNCAPPED_STEPS, TrainConfig
from bsgd_cli.training.optim import WallClock
from bsgd_cli.training.train import init_config, train


def write_targets(targets: Path, folder: Path) -> int:
    """The stored targets as 8-bit PNGs in ``folder`` (once); returns how many there are."""
    folder.mkdir(parents=True, exist_ok=True)
    stored = np.load(targets)
    names = sorted(name for name in stored.files if name.startswith("target_"))
    for name in names:
        path = folder / f"{name}.png"
        if not path.exists():
            array = stored[name]
            scale = 65535.0 if array.dtype == np.uint16 else 255.0 if array.dtype == np.uint8 else 1.0
            pixels = np.clip(np.rint(array.astype(np.float64) / scale * 255.0), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path)
    return len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=Path, required=True, help="a distillation run's targets.npz")
    parser.add_argument("--init", required=True, help="the model whose diffusion branch is fine-tuned")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=50.0)
    parser.add_argument("--t-max", type=float, default=0.15)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=120)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    images = args.out.parent / f"{args.out.name}-targets"
    count = write_targets(args.targets, images)
    init = load_model(args.init)
    config = TrainConfig(steps=UNCAPPED_STEPS, batch=args.batch, patch=args.patch, lr=args.lr, warmup=50,
                         t_max=args.t_max, branch="diffusion", precision="bf16", val_every=UNCAPPED_STEPS,
                         checkpoint_every=500, log_every=50)
    summary = train(images, args.out, model_config=init_config(init, "srgb"), config=config, resume=args.resume,
                    device="cpu", budget=WallClock.start(60.0 * args.minutes), init=None if args.resume else init,
                    info={"diffusion_trained_on": f"{count} pseudo-clean targets of {args.targets}",
                          "t_max": args.t_max})
    print(f"{summary.steps} steps in {summary.seconds:.0f} s -> {args.out / 'model.safetensors'}")


if __name__ == "__main__":
    main()
