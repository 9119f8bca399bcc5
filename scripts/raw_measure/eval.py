"""Usage: eval.py pd1,pd2 [SRGB_MODEL] > /tmp/rawexp/eval.out. PSNR of RAW-domain bsn denoising vs the noisy input and vs the sRGB path, on the synthetic DNGs."""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bsgd_cli.batch.denoise import tonal_warning
from bsgd_cli.checkpoint import load_model
from bsgd_cli.config import SamplerOverrides
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.runtime import resolve_runtime
from bsgd_cli.io import read_raw
from bsgd_cli.raw.domain import develop_mosaic, planes_to_mosaic, read_planes

torch.set_num_threads(2)
BSN_ALONE = SamplerOverrides(mode="bsn", refine="none")
CPU = resolve_runtime("cpu")
root = Path("/tmp/rawexp")
raw_models = {name: load_model(root / name / "model.safetensors") for name in sys.argv[1].split(",")}
srgb = load_model(sys.argv[2]) if len(sys.argv) > 2 else None


def psnr(x, ref):
    return float(10 * np.log10(1.0 / np.mean((np.clip(x, 0, 1).astype(np.float64) - ref) ** 2)))


rows = []
for noisy_path in sorted((root / "noisy").glob("*.dng")):
    clean_path = root / "clean" / noisy_path.name
    noisy_in, clean_planes = read_planes(noisy_path), read_planes(clean_path).pixels
    dev_clean, dev_noisy = read_raw(clean_path).pixels, read_raw(noisy_path).pixels
    row = {"image": noisy_path.stem, "mosaic_noisy": psnr(noisy_in.pixels, clean_planes), "srgb_noisy": psnr(dev_noisy, dev_clean)}
    for name, model in raw_models.items():
        t = time.perf_counter()
        planes = denoise_array(model, noisy_in.pixels, sampler=BSN_ALONE, runtime=CPU)  # as measured: before the Wiener step
        row[f"sec_{name}"] = time.perf_counter() - t
        row[f"mosaic_{name}"] = psnr(planes, clean_planes)
        row[f"srgb_{name}"] = psnr(develop_mosaic(noisy_path, planes_to_mosaic(planes, noisy_in)), dev_clean)
        row[f"tonal_{name}"] = tonal_warning(noisy_in.pixels, planes)
    if srgb is not None:
        row["srgb_srgbmodel_bsn"] = psnr(denoise_array(srgb, dev_noisy, sampler=BSN_ALONE, runtime=CPU), dev_clean)
    rows.append(row)
    print(json.dumps(row), flush=True)
keys = [k for k in rows[0] if k not in ("image",) and not k.startswith("tonal")]
for iso in ("iso1600", "iso6400"):
    sel = [r for r in rows if r["image"].endswith(iso)]
    print(iso, {k: round(float(np.mean([r[k] for r in sel])), 2) for k in keys})
print("all", {k: round(float(np.mean([r[k] for r in rows])), 2) for k in keys})
