"""Synthetic RAW noise with ground truth: clean sRGB -> linear / WB -> RGGB mosaic -> Poisson-Gaussian -> DNG."""
from pathlib import Path

import numpy as np

from bsgd_cli.io import write_dng
from bsgd_cli.viz.samples import WB_GAINS, _fit, _load_source, noise_parameters, srgb_to_linear

BLACK, WHITE = 512, 16383
root = Path("/tmp/rawexp")
for sub in ("noisy", "clean"):
    (root / sub).mkdir(parents=True, exist_ok=True)
neutral = tuple(float(v) for v in 1.0 / WB_GAINS)
for i, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
    scene = _fit(_load_source(name), 384)
    linear = srgb_to_linear(scene) / WB_GAINS
    mosaic = np.empty(linear.shape[:2], np.float32)
    mosaic[0::2, 0::2] = linear[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = linear[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = linear[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = linear[1::2, 1::2, 2]
    def save(path, x):
        values = np.clip(np.rint(BLACK + x * (WHITE - BLACK)), 0, WHITE).astype(np.uint16)
        write_dng(path, values, cfa_pattern="RGGB", black_level=BLACK, white_level=WHITE, as_shot_neutral=neutral)
    for iso in (1600, 6400):
        rng = np.random.default_rng([i, iso])
        a, b = noise_parameters(iso)
        noisy = a * rng.poisson(mosaic / a) + rng.normal(0, b, mosaic.shape)
        save(root / "noisy" / f"{name}_iso{iso}.dng", noisy.astype(np.float32))
        save(root / "clean" / f"{name}_iso{iso}.dng", mosaic)
        print(name, iso, f"a={a:.4g} b={b:.4g}", f"noise std on mosaic {float(np.std(noisy - mosaic)):.4f}")
