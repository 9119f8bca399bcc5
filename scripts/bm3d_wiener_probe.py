"""Probe: BM3D's collaborative Wiener step (block matching, 3-D transform) instead of bsgd's own Wiener step.

bsgd's Wiener step is BM3D's second step without the block matching. This scores the real thing, driven by
the same pilot (a mode's cached network output, as scripts/protocol.py stores it), on the tuning split:
the pilot alone, bsgd's Wiener step, and BM3D's Wiener stage in opponent colour planes (matching on the
luminance, as CBM3D) at white-noise levels measured on the residual, times ``--scales``.

Needs the ``bm3d`` package (binary, non-commercial terms; not a dependency of bsgd), e.g.
``.venv/bin/pip install --target /tmp/bmlib bm3d bm4d --no-deps``, then

    PYTHONPATH=/tmp/bmlib .venv/bin/python scripts/bm3d_wiener_probe.py --limit 10 --scales 1,1.5

Result in docs/LEARNING.md ("Other second stages"): worse than bsgd's Wiener step and than the pilot alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from protocol import cached_pilot, load_set, refine  # scripts/ is on the path when run as a script

from bsgd_cli.benchmark.metrics import psnr_uint8, to_uint8
from bsgd_cli.checkpoint import load_model

if not hasattr(np, "trapz"):  # the bm3d package still calls numpy's old name
    np.trapz = np.trapezoid  # type: ignore[attr-defined]

_OPPONENT = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], dtype=np.float64)
_OPPONENT /= np.linalg.norm(_OPPONENT, axis=1, keepdims=True)  # orthonormal rows: white noise stays white


def bm3d_wiener(noisy: np.ndarray, pilot: np.ndarray, scale: float) -> np.ndarray:
    """BM3D's Wiener stage on ``noisy`` with ``pilot`` (both (H, W, 3) in [0, 1]), in opponent planes."""
    import bm3d

    z, p = noisy.astype(np.float64) @ _OPPONENT.T, pilot.astype(np.float64) @ _OPPONENT.T
    residual = z - p
    sigma = np.median(np.abs(residual - np.median(residual, axis=(0, 1))), axis=(0, 1)) / 0.6745 * scale
    out = np.empty_like(z)
    out[..., 0], matches = bm3d.bm3d(z[..., 0], sigma[0], stage_arg=p[..., 0], blockmatches=(False, True))
    for plane in (1, 2):
        out[..., plane] = bm3d.bm3d(z[..., plane], sigma[plane], stage_arg=p[..., plane], blockmatches=(False, matches))
    return np.clip(out @ _OPPONENT, 0, 1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--set", default="polyu-1-40", choices=["polyu-1-40", "sidd-pair"])
    parser.add_argument("--method", default="fast")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--scales", default="1,1.5")
    parser.add_argument("--cache", type=Path, default=Path("runs/pilots-protocol"))
    args = parser.parse_args()
    model = load_model(args.model)
    scores: dict[str, list[float]] = {}
    for index, (_name, noisy, clean) in enumerate(load_set(args.set)[: args.limit]):
        pilot, _ = cached_pilot(model, args.method, args.set, index, noisy, args.cache)
        outputs = {"alone": pilot, "bsgd Wiener": refine(model, noisy, pilot, args.method)}
        for scale in (float(s) for s in args.scales.split(",")):
            outputs[f"BM3D Wiener x{scale:g}"] = bm3d_wiener(noisy, pilot, scale)
        for name, output in outputs.items():
            scores.setdefault(name, []).append(psnr_uint8(clean, to_uint8(output)))
    print(json.dumps({name: round(float(np.mean(v)), 3) for name, v in scores.items()}))


if __name__ == "__main__":
    main()
