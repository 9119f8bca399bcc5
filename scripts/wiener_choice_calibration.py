"""Calibrate and check the no-reference choice of the Wiener noise scale (bsgd_cli/engine/wiener_choice.py).

For each model, set and pilot method: the PSNR of the Wiener step at every candidate noise scale
(the best of them is the set's oracle, which needs the clean images), and the scale that the risk
estimate picks for the whole set at each calibration factor, with its PSNR. The factor is chosen on
the tuning split (docs/EVALUATION.md); the report split is for measuring the chosen factor only.
Network outputs come from scripts/protocol.py's cache (computed and stored when missing).

    .venv/bin/python scripts/wiener_choice_calibration.py --split tuning \\
        --models runs/v7.safetensors,runs/v8b/model.safetensors --methods fast --out runs/eval/choice-tuning
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from protocol import SPLITS, cached_pilot, load_set, refine  # scripts/ is on the path when run as a script

from bsgd_cli.benchmark.metrics import psnr_uint8, to_uint8
from bsgd_cli.checkpoint import load_model
from bsgd_cli.engine.wiener import estimate_noise
from bsgd_cli.engine.wiener_choice import CANDIDATE_SCALES, central_crop, sure_group_terms, sure_terms

FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 10.0, 12.0)


def measure(model, method: str, set_name: str, cache: Path, precision: str = "auto") -> list[dict]:
    """Per image: PSNR at each candidate scale (whole image) and the risk terms on the central crop."""
    rows = []
    for index, (_name, noisy, clean) in enumerate(load_set(set_name)):
        estimate, _computed = cached_pilot(model, method, set_name, index, noisy, cache, precision)
        crop_noisy, crop_pilot = (np.ascontiguousarray(central_crop(a)) for a in (noisy, estimate))
        crop_noise = estimate_noise(crop_noisy, crop_pilot, model.sampler.wiener)
        row: dict = {"psnr": {}, "risk": {}}
        groups = sure_group_terms(crop_noisy, crop_pilot, model.sampler.wiener, crop_noise, CANDIDATE_SCALES)
        terms = sure_terms(crop_noisy, crop_pilot, model.sampler.wiener, crop_noise, CANDIDATE_SCALES)
        row["group_risk"] = [{s: {f: g[s].risk(f) for f in FACTORS} for s in CANDIDATE_SCALES} for g in groups]
        row["data"] = (noisy, estimate, clean)
        for scale in CANDIDATE_SCALES:
            out = refine(model, noisy, estimate, noise_scale=scale)
            row["psnr"][scale] = psnr_uint8(clean, to_uint8(out))
            row["risk"][scale] = {f: terms[scale].risk(f) for f in FACTORS}
        rows.append(row)
    return rows


def apart(model, rows: list[dict]) -> dict:
    """Luminance and colour scales each chosen by their own planes' risk (one pair for the set, per
    factor), and the set's mean PSNR at that pair (the colour planes' scale as a multiple of the
    luminance's: chroma_scale = stored chroma_scale x colour pick / luminance pick)."""
    chroma = model.sampler.wiener.chroma_scale
    chosen: dict = {}
    for factor in FACTORS:
        picks = [min(CANDIDATE_SCALES, key=lambda s, g=g: float(np.mean([r["group_risk"][g][s][factor] for r in rows])))
                 for g in range(len(rows[0]["group_risk"]))]
        luma, colour = picks[0], picks[-1]
        pair = (luma, chroma * colour / luma)
        chosen[factor] = pair
    psnr = {}
    for pair in set(chosen.values()):
        psnr[pair] = float(np.mean([psnr_uint8(clean, to_uint8(refine(model, noisy, estimate, noise_scale=pair[0],
                                                                            chroma_scale=pair[1])))
                                    for noisy, estimate, clean in (r["data"] for r in rows)]))
    return {factor: {"scale": pair[0], "chroma_scale": pair[1], "psnr": psnr[pair]} for factor, pair in chosen.items()}


def summarise(rows: list[dict]) -> dict:
    fixed = {s: float(np.mean([r["psnr"][s] for r in rows])) for s in CANDIDATE_SCALES}
    oracle = max(fixed, key=lambda s: fixed[s])
    chosen = {}
    for factor in FACTORS:
        risks = {s: float(np.mean([r["risk"][s][factor] for r in rows])) for s in CANDIDATE_SCALES}
        scale = min(risks, key=lambda s: risks[s])
        chosen[factor] = {"scale": scale, "psnr": fixed[scale]}
    per_image = {}
    for factor in FACTORS:  # each image at the scale its own risk estimate picks
        picks = [min(CANDIDATE_SCALES, key=lambda s, r=r: r["risk"][s][factor]) for r in rows]
        per_image[factor] = float(np.mean([r["psnr"][s] for r, s in zip(rows, picks, strict=True)]))
    image_oracle = float(np.mean([max(r["psnr"].values()) for r in rows]))
    return {"fixed": fixed, "oracle": {"scale": oracle, "psnr": fixed[oracle]}, "chosen": chosen,
            "per_image": per_image, "per_image_oracle": image_oracle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=sorted(SPLITS), default="tuning")
    parser.add_argument("--models", required=True, help="comma list of model files or names")
    parser.add_argument("--methods", default="fast")
    parser.add_argument("--cache", type=Path, default=Path("runs/pilots-protocol"))
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="the networks' precision (as scripts/protocol.py; fp32 reuses older cached outputs)")
    parser.add_argument("--apart", action="store_true",
                        help="also choose the luminance and colour scales apart (each by its own planes' risk)")
    parser.add_argument("--out", type=Path, default=None, help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    results, lines = [], ["| model | method | set | stored scale | oracle scale: PSNR | "
                          + " | ".join(f"factor {f:g}" for f in FACTORS) + " |",
                          "|---|---|---|---|---|" + "---|" * len(FACTORS)]
    apart_lines = ["| model | method | set | " + " | ".join(f"factor {f:g}" for f in FACTORS) + " |",
                   "|---|---|---|" + "---|" * len(FACTORS)]
    image_lines = ["| model | method | set | per-image oracle | "
                   + " | ".join(f"factor {f:g}" for f in FACTORS) + " |",
                   "|---|---|---|---|" + "---|" * len(FACTORS)]
    for model_name in args.models.split(","):
        model = load_model(model_name)
        for method in args.methods.split(","):
            for set_name in SPLITS[args.split]:
                rows = measure(model, method, set_name, args.cache, args.precision)
                summary = summarise(rows)
                if args.apart:
                    summary["apart"] = apart(model, rows)
                    apart_lines.append(f"| {model_name} | {method} | {set_name} | " + " | ".join(
                        f"{c['scale']:g}, x{c['chroma_scale']:.3g}: {c['psnr']:.2f}" for c in summary["apart"].values())
                        + " |")
                stored = model.sampler.wiener.for_mode(method).noise_scale
                stored_psnr = summary["fixed"].get(stored)
                stored_cell = f"{stored:g}" + ("" if stored_psnr is None else f": {stored_psnr:.2f}")
                cells = [f"{c['scale']:g}: {c['psnr']:.2f}" for c in summary["chosen"].values()]
                oracle = f"{summary['oracle']['scale']:g}: {summary['oracle']['psnr']:.2f}"
                row = f"| {model_name} | {method} | {set_name} | {stored_cell} | {oracle} | "
                lines.append(row + " | ".join(cells) + " |")
                image_lines.append(f"| {model_name} | {method} | {set_name} | {summary['per_image_oracle']:.2f} | "
                                   + " | ".join(f"{v:.2f}" for v in summary["per_image"].values()) + " |")
                results.append({"model": model_name, "method": method, "set": set_name, **summary})
                print(lines[-1], flush=True)
    text = ("\n".join(lines) + "\n\nCells: noise scale: mean PSNR dB with the Wiener step at that scale.\n\n"
            "Each image at its own scale (the one its risk estimate picks; the oracle: its best candidate):\n\n"
            + "\n".join(image_lines) + "\n")
    if args.apart:
        text += ("\nLuminance and colour scales chosen apart, each by its own planes' risk (cells: luminance "
                 "scale, colour planes' multiple of it: mean PSNR dB):\n\n" + "\n".join(apart_lines) + "\n")
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
