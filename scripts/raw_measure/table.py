"""Markdown table of eval.py's output (/tmp/rawexp/eval.out) plus two training-free references."""
import json

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from bsgd_cli.nets.blind_spot import neighbour_mean
from bsgd_cli.raw.domain import read_planes

torch.set_num_threads(1)


def psnr(x, ref): return float(10 * np.log10(1.0 / np.mean((np.clip(x, 0, 1).astype(np.float64) - ref) ** 2)))
rows = [json.loads(line) for line in open("/tmp/rawexp/eval.out") if line.startswith("{")]
print("| image | noisy mosaic | 8-nbr mean | blur s=0.7 | bsn pd1 | bsn pd2 | noisy developed | pd1 developed | pd2 developed | sRGB model (bsn) on developed |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    n = read_planes(f"/tmp/rawexp/noisy/{r['image']}.dng").pixels
    c = read_planes(f"/tmp/rawexp/clean/{r['image']}.dng").pixels
    nm = neighbour_mean(torch.from_numpy(n).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    bl = np.stack([gaussian_filter(n[..., k], 0.7) for k in range(4)], -1)
    r["nm"], r["blur"] = psnr(nm, c), psnr(bl, c)
    print(f"| {r['image']} | {r['mosaic_noisy']:.2f} | {r['nm']:.2f} | {r['blur']:.2f} | {r['mosaic_pd1']:.2f} | {r['mosaic_pd2']:.2f} | {r['srgb_noisy']:.2f} | {r['srgb_pd1']:.2f} | {r['srgb_pd2']:.2f} | {r['srgb_srgbmodel_bsn']:.2f} |")
for iso in ("iso1600", "iso6400", ""):
    sel = [r for r in rows if r["image"].endswith(iso)]
    k = ["mosaic_noisy", "nm", "blur", "mosaic_pd1", "mosaic_pd2", "srgb_noisy", "srgb_pd1", "srgb_pd2", "srgb_srgbmodel_bsn"]
    print(f"| mean {iso or 'all'} | " + " | ".join(f"{np.mean([r[x] for r in sel]):.2f}" for x in k) + " |")
