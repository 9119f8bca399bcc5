"""Sampler ablation on noisy/clean pairs: bsn vs bsn-r3 vs bsgd at several settings.

Usage (the numbers in docs/BENCHMARKS.md came from this):
    .venv/bin/python scripts/ablation.py --model runs/default/best.safetensors \
        --set polyu=../shared/data/pairs/polyu --set pairs=../shared/data/pairs/nam25 \
        --limit 20 --crop 256 --out docs/ablation
The Wiener pass (issue 6) ran with --grid wiener --limit 30 --crop 0 --precision auto --out docs/ablation-wiener.
Each setting runs over the first --limit images of each set (centre crops of --crop pixels, 0 = whole
image). Writes OUT.json (every row) and OUT.md (a table), appending as it goes so a long sweep can
be read while it runs.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bsgd_cli.benchmark.datasets import load_dataset
from bsgd_cli.benchmark.metrics import psnr_uint8, ssim_skimage, to_uint8
from bsgd_cli.checkpoint import load_model
from bsgd_cli.config import SamplerConfig
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.runtime import resolve_runtime

BASE = SamplerConfig(mode="bsgd", guidance=0.8, steps=2, t_start=0.05, runs=2, replace_prob=0.16, mask="iid", refine="none")
CHOSEN = replace(BASE, guidance=0.5)  # the first pass's best bsgd row (w=0.5), also the student's teacher


def wiener(sampler: SamplerConfig, passes: int, noise: float, stride: int = 2) -> SamplerConfig:
    settings = replace(sampler.wiener, passes=passes, noise_scale=noise, stride=stride)
    return replace(sampler, refine="wiener", wiener=settings)


BSN, FAST = replace(BASE, mode="bsn"), replace(BASE, mode="fast")
GRIDS = {
    "quick": [
        ("bsn", replace(BASE, mode="bsn")),
        ("bsn-r3", replace(BASE, mode="bsn-r3")),
        ("bsgd base", BASE),
    ],
    "full": [
        ("noisy", replace(BASE, mode="bsn")),  # replaced by the identity in main()
        ("bsn", replace(BASE, mode="bsn")),
        ("bsn-r3", replace(BASE, mode="bsn-r3")),
        ("bsgd base", BASE),
        ("t0=0.02", replace(BASE, t_start=0.02)),
        ("t0=0.1", replace(BASE, t_start=0.1)),
        ("t0=0.2 K=4", replace(BASE, t_start=0.2, steps=4)),
        ("w=0.5", replace(BASE, guidance=0.5)),
        ("w=1.0", replace(BASE, guidance=1.0)),
        ("w=1.2", replace(BASE, guidance=1.2)),
        ("K=1", replace(BASE, steps=1)),
        ("K=4", replace(BASE, steps=4)),
        ("R=1", replace(BASE, runs=1)),
        ("p=0", replace(BASE, replace_prob=0.0)),
        ("complementary R=2", replace(BASE, mask="complementary")),
        ("bsn strength 0.3", replace(BASE, mode="bsn", strength=0.3)),
        ("bsn strength 0.4", replace(BASE, mode="bsn", strength=0.4)),
        ("bsn strength 0.5", replace(BASE, mode="bsn", strength=0.5)),
        ("bsn strength 0.7", replace(BASE, mode="bsn", strength=0.7)),
    ],
    # Second pass (issue 6): the Wiener refinement (bsgd_cli/wiener.py) on each mode's output.
    "wiener": [
        ("noisy", BSN),
        ("bsn", BSN),
        ("fast", FAST),
        ("bsn strength 0.4", replace(BSN, strength=0.4)),
        ("fast strength 0.4", replace(FAST, strength=0.4)),
        ("bsn + wiener P=1 n=2", wiener(BSN, 1, 2.0)),
        ("bsn + wiener P=1 n=3", wiener(BSN, 1, 3.0)),
        ("bsn + wiener P=2 n=2", wiener(BSN, 2, 2.0)),
        ("bsn + wiener P=2 n=3", wiener(BSN, 2, 3.0)),
        ("fast + wiener P=1 n=2", wiener(FAST, 1, 2.0)),
        ("fast + wiener P=1 n=3", wiener(FAST, 1, 3.0)),
        ("fast + wiener P=1 n=4", wiener(FAST, 1, 4.0)),
        ("fast + wiener P=2 n=3", wiener(FAST, 2, 3.0)),
        ("fast + wiener P=1 n=3 stride 4", wiener(FAST, 1, 3.0, stride=4)),
        ("bsgd w=0.5", CHOSEN),
        ("bsgd w=0.5 + wiener P=1 n=3", wiener(CHOSEN, 1, 3.0)),
        ("bsgd w=0.5 + wiener P=2 n=3", wiener(CHOSEN, 2, 3.0)),
    ],
}


def centre(image: np.ndarray, size: int) -> np.ndarray:
    if size <= 0:
        return image
    h, w = image.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[y : y + size, x : x + size]


def as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--set", action="append", required=True, help="KIND=ROOT (benchmark data-set kinds)")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full")
    parser.add_argument("--only", default="", help="comma list of setting labels to run")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, or auto (bf16 for fast, fp32 otherwise)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--append", action="store_true", help="keep the rows already in OUT.json")
    args = parser.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    loaded = load_model(args.model)
    sets = []
    for spec in args.set:
        kind, root = spec.split("=", 1)
        data = load_dataset(kind, Path(root), limit=args.limit)
        samples = [(s.name, centre(as_float(s.noisy), args.crop), centre(s.clean, args.crop)) for s in data]
        sets.append((f"{Path(root).name}", samples))
    grid = GRIDS[args.grid]
    if args.only:
        wanted = set(args.only.split(","))
        grid = [item for item in grid if item[0] in wanted]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(args.out.with_suffix(".json").read_text()) if args.append else []
    for label, sampler in grid:
        for set_name, samples in sets:
            psnrs, ssims, seconds, megapixels = [], [], 0.0, 0.0
            for index, (_name, noisy, clean) in enumerate(samples):
                started = time.perf_counter()
                if label == "noisy":
                    out = noisy
                else:
                    out = denoise_array(loaded, noisy, sampler=sampler, seed=0, image_index=index,
                                        runtime=resolve_runtime("cpu", args.precision))
                seconds += time.perf_counter() - started
                megapixels += noisy.shape[0] * noisy.shape[1] / 1e6
                reference = clean if clean.dtype == np.uint8 else to_uint8(clean)
                psnrs.append(psnr_uint8(reference, out))
                ssims.append(ssim_skimage(reference, to_uint8(out)))
            row = {"setting": label, "set": set_name, "images": len(samples), "crop": args.crop,
                   "psnr": round(float(np.mean(psnrs)), 3), "ssim": round(float(np.mean(ssims)), 4),
                   "seconds_per_mp": round(seconds / megapixels, 2), "precision": args.precision,
                   "sampler": {k: v for k, v in sampler.__dict__.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
            args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    lines = ["| setting | " + " | ".join(f"{name} PSNR / SSIM" for name, _ in sets) + " | s/MP (CPU) |",
             "|---|" + "---|" * len(sets) + "---|"]
    labels = list(dict.fromkeys(r["setting"] for r in rows))
    for label in labels:
        cells = {r["set"]: r for r in rows if r["setting"] == label}
        speed = np.mean([r["seconds_per_mp"] for r in cells.values()])
        row = [f"{cells[name]['psnr']:.2f} / {cells[name]['ssim']:.4f}" if name in cells else "not run" for name, _ in sets]
        lines.append(f"| {label} | " + " | ".join(row) + f" | {speed:.1f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
