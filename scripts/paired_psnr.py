"""Is a small difference between two candidates real? Per image of one tuning set, the PSNR of candidate A
minus candidate B (each a model, a method and a Wiener noise scale), alone and with the Wiener step:
the mean difference, its standard error and on how many images A is better. Network outputs come from
scripts/protocol.py's cache. Used for ties on the tuning split (docs/LEARNING.md, "Round 6").

    .venv/bin/python scripts/paired_psnr.py --set polyu-1-40 \\
        --a runs/sd7/model.safetensors:fast:5 --b runs/v10/model.safetensors:fast:4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from protocol import cached_pilot, load_set, refine  # scripts/ is on the path when run as a script

from bsgd_cli.benchmark.metrics import psnr_uint8, to_uint8
from bsgd_cli.checkpoint import load_model


def scores(candidate: str, set_name: str, cache: Path) -> tuple[list[float], list[float]]:
    """Per image (alone, with the Wiener step) of ``MODEL:METHOD:SCALE``."""
    model_name, method, scale = candidate.rsplit(":", 2)
    model = load_model(model_name)
    alone, piped = [], []
    for index, (_name, noisy, clean) in enumerate(load_set(set_name)):
        estimate, _computed = cached_pilot(model, method, set_name, index, noisy, cache)
        alone.append(psnr_uint8(clean, to_uint8(estimate)))
        piped.append(psnr_uint8(clean, to_uint8(refine(model, noisy, estimate, noise_scale=float(scale)))))
    return alone, piped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="polyu-1-40")
    parser.add_argument("--a", required=True, help="MODEL:METHOD:SCALE")
    parser.add_argument("--b", required=True, help="MODEL:METHOD:SCALE")
    parser.add_argument("--cache", type=Path, default=Path("runs/pilots-protocol"))
    args = parser.parse_args()
    first, second = scores(args.a, args.set, args.cache), scores(args.b, args.set, args.cache)
    for label, a, b in (("alone", first[0], second[0]), ("+ Wiener", first[1], second[1])):
        gain = np.subtract(a, b)
        error = gain.std(ddof=1) / np.sqrt(len(gain))
        print(
            f"{label}: A - B {gain.mean():+.3f} dB, standard error {error:.3f}, A better on "
            f"{int((gain > 0).sum())} of {len(gain)}"
        )


if __name__ == "__main__":
    main()
