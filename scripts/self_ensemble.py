"""Does a geometric self-ensemble make a better pilot (or teacher)? The mean of a mode's network output
over the eight rotations and flips of the input (x1, x2, x4, x8 of them), alone and with the model's
Wiener step, on the tuning split (docs/EVALUATION.md). Per-transform outputs are kept under --cache.

    .venv/bin/python scripts/self_ensemble.py --model runs/v10/model.safetensors --method fast
    .venv/bin/python scripts/self_ensemble.py --model runs/v10/model.safetensors --method bsgd --sets polyu-1-40
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from protocol import SPLITS, load_set, pilot, refine  # scripts/ is on the path when run as a script

from bsgd_cli.benchmark.metrics import psnr_uint8, to_uint8
from bsgd_cli.checkpoint import load_model

TRANSFORMS = [(0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True)]
"""(quarter turns, mirrored): the first two, four, eight make the x2, x4, x8 ensembles."""


def forward(image: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    turned = np.rot90(image, turns)
    return np.ascontiguousarray(turned[:, ::-1] if mirror else turned)


def inverse(image: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image[:, ::-1] if mirror else image, -turns))


def outputs(model, method: str, set_name: str, index: int, noisy: np.ndarray, cache: Path) -> list[np.ndarray]:
    """The mode's output under each transform, mapped back to the input's orientation."""
    found = []
    for number, (turns, mirror) in enumerate(TRANSFORMS):
        path = cache / f"{set_name}_{index:03d}_{number}.npy"
        if not path.is_file():
            np.save(path, inverse(pilot(model, method, forward(noisy, turns, mirror), index), turns, mirror))
        found.append(np.load(path))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--method", default="fast")
    parser.add_argument("--sets", default=",".join(SPLITS["tuning"]))
    parser.add_argument("--cache", type=Path, default=Path("runs/self-ensemble"))
    args = parser.parse_args()
    model = load_model(args.model)
    cache = args.cache / f"{model.sha256[:12]}-{args.method}"
    cache.mkdir(parents=True, exist_ok=True)
    print("| set | method | ensemble | alone | + Wiener |\n|---|---|---|---|---|")
    for set_name in args.sets.split(","):
        scores: dict[tuple[int, str], list[float]] = {}
        for index, (_name, noisy, clean) in enumerate(load_set(set_name)):
            found = outputs(model, args.method, set_name, index, noisy, cache)
            for count in (1, 2, 4, 8):
                mean = np.mean(found[:count], axis=0).astype(np.float32)
                scores.setdefault((count, "alone"), []).append(psnr_uint8(clean, to_uint8(mean)))
                scores.setdefault((count, "wiener"), []).append(psnr_uint8(clean, to_uint8(refine(model, noisy, mean))))
        for count in (1, 2, 4, 8):
            print(
                f"| {set_name} | {args.method} | x{count} | {np.mean(scores[(count, 'alone')]):.2f} | "
                f"{np.mean(scores[(count, 'wiener')]):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
