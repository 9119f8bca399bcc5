"""Probe: does averaging the pipelines of different modes beat the best one? (tuning split, cached outputs)

Each mode's network output comes from the protocol's cache (scripts/protocol.py computes it when absent);
the Wiener step runs at the scales given. Scores each pipeline, their mean and the Wiener step on the
mean of the pilots.

    .venv/bin/python scripts/mode_average_probe.py --sets polyu-1-40,sidd-pair

Result in docs/LEARNING.md ("Other second stages"): no average beats the `bsgd` pipeline alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from protocol import cached_pilot, load_set, refine  # scripts/ is on the path when run as a script

from bsgd_cli.benchmark.metrics import psnr_uint8, to_uint8
from bsgd_cli.checkpoint import load_model


def outputs_of(model, set_name: str, index: int, noisy: np.ndarray, cache: Path) -> dict[str, np.ndarray]:
    pilots = {mode: cached_pilot(model, mode, set_name, index, noisy, cache)[0] for mode in ("fast", "bsgd", "bsn")}
    out = {"fast + W3": refine(model, noisy, pilots["fast"], noise_scale=3.0),
           "bsgd + W4": refine(model, noisy, pilots["bsgd"], noise_scale=4.0),
           "bsn + W4": refine(model, noisy, pilots["bsn"], noise_scale=4.0)}
    out["mean(fast, bsgd) pipelines"] = (out["fast + W3"] + out["bsgd + W4"]) / 2
    out["mean(fast, bsgd, bsn) pipelines"] = (out["fast + W3"] + out["bsgd + W4"] + out["bsn + W4"]) / 3
    out["0.7 fast + 0.3 bsgd pipelines"] = 0.7 * out["fast + W3"] + 0.3 * out["bsgd + W4"]
    out["W3 on mean(fast, bsgd) pilots"] = refine(model, noisy, (pilots["fast"] + pilots["bsgd"]) / 2, noise_scale=3.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--sets", default="polyu-1-40,sidd-pair")
    parser.add_argument("--cache", type=Path, default=Path("runs/pilots-protocol"))
    args = parser.parse_args()
    model = load_model(args.model)
    for set_name in args.sets.split(","):
        scores: dict[str, list[float]] = {}
        for index, (_name, noisy, clean) in enumerate(load_set(set_name)):
            for name, output in outputs_of(model, set_name, index, noisy, args.cache).items():
                scores.setdefault(name, []).append(psnr_uint8(clean, to_uint8(np.clip(output, 0, 1))))
        print(set_name, json.dumps({name: round(float(np.mean(v)), 3) for name, v in scores.items()}), flush=True)


if __name__ == "__main__":
    main()
