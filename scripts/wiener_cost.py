"""Time the Wiener step alone (noise estimate given, as in `bsgd denoise`) for a few settings.

Usage: .venv/bin/python scripts/wiener_cost.py [--side 1024] [--repeats 5]
Prints the best of ``repeats`` runs in seconds per megapixel on one random side x side RGB image.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bsgd_cli.config import WienerConfig
from bsgd_cli.engine.wiener import estimate_noise, wiener_refine

SETTINGS = {
    "colour 16/4 x4 (previous default)": WienerConfig(chroma_scale=4.0, chroma_patch=16, chroma_stride=4),
    "colour 32/8 x6 (default)": WienerConfig(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    noisy = rng.random((args.side, args.side, 3), dtype=np.float32)
    pilot = (noisy * 0.5 + 0.25).astype(np.float32)
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    megapixels = args.side * args.side / 1e6
    with torch.inference_mode():
        for name, settings in SETTINGS.items():
            noise = estimate_noise(noisy, pilot, settings)
            wiener_refine(as_tensor(noisy), as_tensor(pilot), settings, noise)  # warm-up
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                wiener_refine(as_tensor(noisy), as_tensor(pilot), settings, noise)
                best = min(best, time.perf_counter() - start)
            print(f"{name}: {best / megapixels:.3f} s/MP")


if __name__ == "__main__":
    main()
