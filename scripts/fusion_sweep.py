"""Choose the bsn mode's fusion settings (window, scale) on the tuning split (docs/EVALUATION.md).

The blind-spot prediction (fusion off) is computed once per image; each grid row fuses it with the
noisy image (bsgd_cli/engine/fusion.py, whole image) and scores PSNR alone and with the model's Wiener
step. Only the tuning split: PolyU pairs 1-40 and the SIDD pair.

    .venv/bin/python scripts/fusion_sweep.py --model runs/v8/model.safetensors --out runs/eval/fusion-sweep
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from protocol import SPLITS, load_set, refine  # scripts/ is on the path when run as a script

from bsgd_cli.benchmark.metrics import psnr_uint8
from bsgd_cli.checkpoint import load_model
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.fusion import fusion_pass
from bsgd_cli.engine.runtime import resolve_runtime

GRID = [(window, scale) for window in (5, 7, 9, 11) for scale in (1.0, 1.5, 2.0, 3.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model = load_model(args.model)
    sampler = replace(model.sampler, mode="bsn", bsn_fusion=False, refine="none", strength=1.0)
    rows: dict[tuple[int, float], dict[str, list[float]]] = {}
    for set_name in SPLITS["tuning"]:
        for index, (_name, noisy, clean) in enumerate(load_set(set_name)):
            prediction = denoise_array(model, noisy, sampler=sampler, runtime=resolve_runtime("cpu"), image_index=index)
            base = psnr_uint8(clean, noisy)
            for window, scale in GRID:
                fused = fusion_pass(noisy, prediction.copy(), window, scale)
                row = rows.setdefault((window, scale), {})
                row.setdefault(f"{set_name} alone", []).append(psnr_uint8(clean, fused) - base)
                row.setdefault(f"{set_name} + Wiener", []).append(psnr_uint8(clean, refine(model, noisy, fused)) - base)
    columns = list(next(iter(rows.values())))
    lines = ["Gain over the noisy input (dB), mean over images.", "",
             "| window | scale | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for (window, scale), row in rows.items():
        lines.append(f"| {window} | {scale} | " + " | ".join(f"{np.mean(row[c]):+.2f}" for c in columns) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(
        [{"window": w, "scale": s, **{c: float(np.mean(v)) for c, v in r.items()}} for (w, s), r in rows.items()],
        indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
