"""Sweep the Wiener refinement's settings on cached network outputs (the third ablation, issue 6).

The refinement (bsgd_cli/wiener.py) runs after the networks, so its settings can be compared on one
set of network outputs: each mode's pilot (``refine="none"``, strength 1, the model's stored sampler,
default seed) is computed once per image and cached as .npy, then every row of the grid refines the
same pilots. A row costs seconds instead of the minutes a `bsgd benchmark` run of `bsgd` takes.

Usage (docs/ablation-colour.md came from ``--grid third``, docs/ablation-chroma-blocks.md from
``--grid fourth``):
    .venv/bin/python scripts/wiener_sweep.py --set polyu=polyu:../shared/data/pairs/polyu \
        --set nam=pairs:../shared/data/pairs/nam25 --limit 40 --modes bsgd,fast \
        --cache runs/pilots --grid fourth --out docs/ablation-chroma-blocks
``--set NAME=KIND:ROOT`` (KIND as in `bsgd benchmark --dataset`). The cache lives outside the
project's tracked files (it holds data-set images). Whole images, one pass each (no tiles): 512x512.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bsgd_cli.benchmark.datasets import load_dataset
from bsgd_cli.benchmark.metrics import psnr_uint8, ssim_skimage, to_uint8
from bsgd_cli.checkpoint import load_model
from bsgd_cli.config import SamplerOverrides, WienerConfig
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.runtime import resolve_runtime
from bsgd_cli.engine.wiener import estimate_noise, wiener_refine

RGB = dict(opponent=False, chroma_scale=1.0)
SAME = dict(chroma_patch=16, chroma_stride=4)  # the colour planes in the luminance's blocks (third ablation)
# (label, settings, run for every mode; False: only for the first mode given)
Grid = list[tuple[str, WienerConfig | None, bool]]
GRIDS: dict[str, Grid] = {
    "third": [  # docs/ablation-colour.md: colour planes, block size, noise scales
        ("pilot alone (no refinement)", None, True),
        ("RGB 8/2 n3 (previous default)", WienerConfig(noise_scale=3.0, patch=8, stride=2, **RGB), True),  # type: ignore[arg-type]
        ("RGB 16/4 n3", WienerConfig(noise_scale=3.0, **RGB), False),  # type: ignore[arg-type]
        ("opponent 16/4 n3 chroma x1", WienerConfig(chroma_scale=1.0, **SAME), False),
        ("opponent 16/4 n3 chroma x2", WienerConfig(chroma_scale=2.0, **SAME), False),
        ("opponent 16/4 n3 chroma x4 (chosen then)", WienerConfig(chroma_scale=4.0, **SAME), True),
        ("opponent 16/4 n3 chroma x6", WienerConfig(chroma_scale=6.0, **SAME), False),
        ("opponent 16/4 n4 chroma x3", WienerConfig(noise_scale=4.0, chroma_scale=3.0, **SAME), False),
        ("opponent 16/2 n3 chroma x4", WienerConfig(chroma_scale=4.0, chroma_patch=16, chroma_stride=2, stride=2), False),
    ],
    "fourth": [  # docs/ablation-chroma-blocks.md: larger blocks for the colour planes
        ("luminance 16/4 n3, colour 16/4 x4 (third ablation's choice)", WienerConfig(chroma_scale=4.0, **SAME), True),
        ("colour 32/8 x4", WienerConfig(chroma_scale=4.0), False),
        ("colour 32/8 x6 (default)", WienerConfig(), True),
        ("colour 32/8 x8", WienerConfig(chroma_scale=8.0), False),
        ("colour 32/8 x10", WienerConfig(chroma_scale=10.0), False),
        ("colour 32/4 x6", WienerConfig(chroma_stride=4), False),
        ("colour 24/6 x6", WienerConfig(chroma_patch=24, chroma_stride=6), False),
        ("colour 64/16 x8", WienerConfig(chroma_patch=64, chroma_stride=16, chroma_scale=8.0), False),
        ("luminance 32/8, colour 32/8 x6", WienerConfig(patch=32, stride=8), False),
    ],
}


def cache_pilots(model_path: str | None, name: str, kind: str, root: Path, limit: int, mode: str, cache: Path) -> int:
    """Write NAME_III_{noisy,clean,MODE}.npy for the first ``limit`` images; returns the count."""
    model = load_model(model_path)
    count = 0
    for index, sample in enumerate(load_dataset(kind, root, limit=limit)):
        count += 1
        stem = cache / f"{name}_{index:03d}"
        if Path(f"{stem}_{mode}.npy").exists():
            continue
        noisy = sample.noisy.astype(np.float32) / 255 if sample.noisy.dtype == np.uint8 else sample.noisy
        pilot = denoise_array(model, noisy, sampler=SamplerOverrides(mode=mode, refine="none", strength=1.0),
                              runtime=resolve_runtime("cpu"))
        np.save(f"{stem}_noisy.npy", noisy)
        np.save(f"{stem}_clean.npy", sample.clean)
        np.save(f"{stem}_{mode}.npy", pilot)
    return count


def refine(noisy: np.ndarray, pilot: np.ndarray, settings: WienerConfig | None) -> np.ndarray:
    if settings is None:
        return pilot
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]  # noqa: E731
    refined = wiener_refine(as_tensor(noisy), as_tensor(pilot), settings, estimate_noise(noisy, pilot, settings))
    return refined[0].permute(1, 2, 0).clamp(0, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model file (default: the embedded model)")
    parser.add_argument("--set", action="append", required=True, help="NAME=KIND:ROOT")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--modes", default="bsgd,fast")
    parser.add_argument("--cache", type=Path, default=Path("runs/pilots"))
    parser.add_argument("--grid", choices=sorted(GRIDS), default="fourth", help="which ablation's rows")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    args.cache.mkdir(parents=True, exist_ok=True)
    sets = []
    for item in args.set:
        name, spec = item.split("=", 1)
        kind, root = spec.split(":", 1)
        sets.append((name, kind, Path(root)))
    modes = args.modes.split(",")
    rows = []
    for mode in modes:
        counts = {name: cache_pilots(args.model, name, kind, root, args.limit, mode, args.cache) for name, kind, root in sets}
        for label, settings, every_mode in GRIDS[args.grid]:
            if not every_mode and mode != modes[0]:
                continue
            row: dict = {"mode": mode, "setting": label}
            for name, _, _ in sets:
                psnrs, ssims, started = [], [], time.perf_counter()
                for index in range(counts[name]):
                    stem = args.cache / f"{name}_{index:03d}"
                    noisy, clean = np.load(f"{stem}_noisy.npy"), np.load(f"{stem}_clean.npy")
                    out = to_uint8(refine(noisy, np.load(f"{stem}_{mode}.npy"), settings))
                    psnrs.append(psnr_uint8(out, clean))
                    ssims.append(ssim_skimage(out, clean))
                megapixels = counts[name] * noisy.shape[0] * noisy.shape[1] / 1e6
                row[name] = {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "images": counts[name],
                             "refine_s_per_mp": (time.perf_counter() - started) / megapixels}
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    names = [name for name, _, _ in sets]
    lines = ["| mode | Wiener setting (patch/stride, noise scale, colour planes' factor) | "
             + " | ".join(f"{n} PSNR / SSIM" for n in names) + " | s/MP (refinement + scoring) |",
             "|---|---|" + "---|" * len(names) + "---|"]
    for row in rows:
        cells = " | ".join(f"{row[n]['psnr']:.3f} / {row[n]['ssim']:.4f}" for n in names)
        lines.append(f"| {row['mode']} | {row['setting']} | {cells} | {row[names[0]]['refine_s_per_mp']:.2f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
