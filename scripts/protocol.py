"""The evaluation protocol of docs/EVALUATION.md: each method alone and with the Wiener step, with controls.

Splits (file names sorted; ``../shared/data`` beside the repository):

* ``tuning``: PolyU pairs 1-40 and the SIDD pair. Settings, checkpoints and designs are chosen here only.
* ``report``: PolyU pairs 41-100 and Nam 25. Numbers only: nothing is chosen by looking at them.

Methods (``--methods``, comma list): ``noisy``; ``blur`` (a Gaussian blur, sigma 1.5: the classical floor of
the Wiener step, which turns any pilot into its estimate); the model's modes ``bsn``, ``bsn-r3``, ``fast``,
``bsgd``; and the sampler's limit cases ``bsgd-w0`` (diffusion branch alone) and ``bsgd-w1`` (blind-spot
branch alone inside the sampler), or any guidance between (``bsgd-w0.25``), with the model's other stored
sampler settings.

Each method's network output (the "pilot") is computed once per image on the CPU and cached under
``--cache`` (keyed by the model file's hash); the row "alone" scores it, "+ Wiener" scores the model's
stored Wiener step on it (noise measured on each image, exactly as ``bsgd denoise`` does, whole image
in one pass). PSNR on uint8 after AP-BSN rounding, mean over images; SSIM skimage (7x7 uniform).

    .venv/bin/python scripts/protocol.py --split report --out docs/eval/report-default
    .venv/bin/python scripts/protocol.py --split tuning --model runs/x/model.safetensors --methods noisy,fast
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from set_sampler import parse_changes  # scripts/ is on the path when run as a script

from bsgd_cli.benchmark.datasets import load_dataset
from bsgd_cli.benchmark.metrics import psnr_uint8, ssim_skimage, to_uint8
from bsgd_cli.checkpoint import load_model
from bsgd_cli.config import SamplerConfig, to_dict
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.model import LoadedModel
from bsgd_cli.engine.runtime import resolve_precision, resolve_runtime
from bsgd_cli.engine.wiener import estimate_noise, wiener_refine

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# name -> (dataset kind, root, first image (0-based), end (exclusive) or None)
SETS: dict[str, tuple[str, Path, int, int | None]] = {
    "polyu-1-40": ("polyu", SHARED / "pairs" / "polyu", 0, 40),
    "sidd-pair": ("sidd-pair", SHARED / "pairs" / "sidd-danet", 0, None),
    "polyu-41-100": ("polyu", SHARED / "pairs" / "polyu", 40, 100),
    "nam25": ("pairs", SHARED / "pairs" / "nam25", 0, None),
}
SPLITS = {"tuning": ["polyu-1-40", "sidd-pair"], "report": ["polyu-41-100", "nam25"]}
DEFAULT_METHODS = "noisy,blur,bsn,fast,bsgd,bsgd-w0,bsgd-w1"


def load_set(name: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(sample name, noisy float32 HxWx3 [0, 1], clean uint8) of one named set."""
    kind, root, first, end = SETS[name]
    samples = []
    for index, sample in enumerate(load_dataset(kind, root)):
        if index < first or (end is not None and index >= end):
            continue
        noisy = sample.noisy.astype(np.float32) / 255.0 if sample.noisy.dtype == np.uint8 else sample.noisy
        assert sample.clean is not None
        samples.append((sample.name, noisy.astype(np.float32), sample.clean))
    return samples


def gaussian_blur(image: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect").astype(np.float32)


def pilot_sampler(model: LoadedModel, method: str) -> SamplerConfig:
    """The sampler of a model method's network output (no Wiener step, strength 1)."""
    sampler = replace(model.sampler, refine="none", strength=1.0)
    if method.startswith("bsgd-w"):  # bsgd-w0, bsgd-w1, or any other guidance: bsgd-w0.25
        return replace(sampler, mode="bsgd", guidance=float(method.removeprefix("bsgd-w")))
    return replace(sampler, mode=method)


def pilot(model: LoadedModel, method: str, noisy: np.ndarray, index: int, precision: str = "auto") -> np.ndarray:
    """The network output of ``method`` (no Wiener step, strength 1) on one image."""
    if method == "noisy":
        return noisy
    if method == "blur":
        return gaussian_blur(noisy)
    sampler = pilot_sampler(model, method)
    return denoise_array(model, noisy, sampler=sampler, runtime=resolve_runtime("cpu", precision), image_index=index)


def cache_key(model: LoadedModel, method: str, precision: str = "auto") -> str:
    """The model file's hash with the method's sampler and the code's version: a stale cache is not reused."""
    import hashlib

    from bsgd_cli import __version__

    if method in ("noisy", "blur"):
        settings, tag = "", ""
    else:  # the precision the networks ran in; keys made before bsn ran in bf16 stay as they were
        sampler = to_dict(pilot_sampler(model, method))
        for name in ("sure_factor", "mode_noise_scale"):  # Wiener settings that change no network output
            sampler["wiener"].pop(name)
        settings = json.dumps(sampler, sort_keys=True)
        mode = sampler["mode"]
        resolved = resolve_precision(precision, mode, torch.device("cpu"))
        tag = "" if resolved == ("bf16" if mode == "fast" else "fp32") else f"|{resolved}"
    return hashlib.sha256(f"{model.sha256}|{settings}|{__version__}|fusion-2{tag}".encode()).hexdigest()[:16]


def cached_pilot(model: LoadedModel, method: str, set_name: str, index: int, noisy: np.ndarray, cache: Path,
                 precision: str = "auto") -> tuple[np.ndarray, bool]:
    """(the network output of ``method`` on image ``index`` of ``set_name``, whether it was computed now):
    read from ``cache`` when there, else computed and stored (noisy and blur are never stored)."""
    path = cache / cache_key(model, method, precision) / method / f"{set_name}_{index:03d}.npy"
    if path.is_file():
        return np.load(path), False
    estimate = pilot(model, method, noisy, index, precision)
    if method not in ("noisy", "blur"):
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, estimate)
    return estimate, True


def wiener_overrides(model: LoadedModel, pairs: list[str]) -> dict[str, float]:
    """``FIELD=VALUE`` pairs as WienerConfig overrides, typed as the model's own values
    (scripts/set_sampler.py's parser)."""
    changed = parse_changes(model.sampler, [f"wiener.{pair}" for pair in pairs]).wiener
    return {field: getattr(changed, field) for field in (pair.partition("=")[0] for pair in pairs)}


def method_mode(method: str) -> str:
    """The mode whose stored Wiener scale a method's pilot gets (``noisy`` and ``blur``: the shared one)."""
    return "bsgd" if method.startswith("bsgd-w") else method


def refine(model: LoadedModel, noisy: np.ndarray, estimate: np.ndarray, mode: str = "fast",
           **overrides: float) -> np.ndarray:
    """The model's stored Wiener step on a pilot of ``mode`` (``overrides``: WienerConfig fields such as
    noise_scale), whole image, noise measured on the image."""
    settings = replace(model.sampler.wiener.for_mode(mode), **overrides)
    noise = estimate_noise(noisy, estimate, settings)
    if noise is None:
        return estimate
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]  # noqa: E731
    with torch.inference_mode():
        refined = wiener_refine(as_tensor(noisy), as_tensor(estimate), settings, noise)
    return refined[0].permute(1, 2, 0).clamp(0, 1).numpy()


def evaluate(model: LoadedModel, sets: list[str], methods: list[str], cache: Path, limit: int | None,
             precision: str = "auto", **overrides: float) -> list[dict]:
    rows = []
    for set_name in sets:
        samples = load_set(set_name)[:limit]
        for method in methods:
            alone, piped, ssim_alone, ssim_piped, seconds = [], [], [], [], 0.0
            for index, (_name, noisy, clean) in enumerate(samples):
                started = time.perf_counter()
                estimate, computed = cached_pilot(model, method, set_name, index, noisy, cache, precision)
                seconds += time.perf_counter() - started if computed else 0.0
                refined = refine(model, noisy, estimate, method_mode(method), **overrides)
                out_alone, out_piped = to_uint8(estimate), to_uint8(refined)
                alone.append(psnr_uint8(clean, out_alone))
                piped.append(psnr_uint8(clean, out_piped))
                ssim_alone.append(ssim_skimage(clean, out_alone))
                ssim_piped.append(ssim_skimage(clean, out_piped))
            row = {"set": set_name, "method": method, "images": len(samples),
                   "alone_psnr": float(np.mean(alone)), "alone_ssim": float(np.mean(ssim_alone)),
                   "wiener_psnr": float(np.mean(piped)), "wiener_ssim": float(np.mean(ssim_piped)),
                   "network_seconds_uncached": round(seconds, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict], model: LoadedModel, overrides: dict[str, float] | None = None,
             sampler_set: list[str] | None = None) -> str:
    sets = list(dict.fromkeys(r["set"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["set"], r["method"]): r for r in rows}
    lines = [f"Model `{model.path}` (sha256 {model.sha256[:12]}); PSNR dB / SSIM (skimage); "
             "alone = the method's own output (`--no-wiener`), + Wiener = with the model's Wiener step.", "",
             "| method | " + " | ".join(f"{s} alone | {s} + Wiener" for s in sets) + " |",
             "|---|" + "---|---|" * len(sets)]
    for method in methods:
        cells = []
        for s in sets:
            r = by.get((s, method))
            cells += ["" if r is None else f"{r['alone_psnr']:.2f} / {r['alone_ssim']:.3f}",
                      "" if r is None else f"{r['wiener_psnr']:.2f} / {r['wiener_ssim']:.3f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    images = ", ".join(f"{s}: {by[(s, methods[0])]['images']} images" for s in sets)
    changed = "; Wiener step with " + ", ".join(f"{k}={v}" for k, v in overrides.items()) if overrides else ""
    changed += "; stored sampler changed first: " + " ".join(f"`{pair}`" for pair in sampler_set) if sampler_set else ""
    return "\n".join(lines) + f"\n\n({images}{changed})\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=sorted(SPLITS), default="tuning")
    parser.add_argument("--sets", default=None, help="comma list of set names instead of a split: " + ", ".join(SETS))
    parser.add_argument("--model", default=None, help="model file or name (default: the embedded model)")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    parser.add_argument("--cache", type=Path, default=Path("runs/pilots-protocol"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="writes OUT.json and OUT.md")
    parser.add_argument("--wiener-noise", type=float, default=None, help="override the model's Wiener noise scale")
    parser.add_argument("--wiener-chroma", type=float, default=None, help="override the colour planes' factor")
    parser.add_argument("--wiener", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override Wiener settings for the '+ Wiener' column only (WienerConfig fields, e.g. "
                             "chroma_stride=16 chroma_scale=12); the cached network outputs are reused")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="the networks' precision (auto: bsgd denoise's choice per mode)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="sampler settings to change first, as scripts/set_sampler.py (e.g. steps=1 runs=1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    if args.set:
        model = replace(model, sampler=parse_changes(model.sampler, args.set))
    sets = args.sets.split(",") if args.sets else SPLITS[args.split]
    if args.split == "report" and not args.sets:
        print("report split: numbers only, choose nothing by them (docs/EVALUATION.md)", flush=True)
    overrides = {k: v for k, v in (("noise_scale", args.wiener_noise), ("chroma_scale", args.wiener_chroma)) if v}
    overrides.update(wiener_overrides(model, args.wiener))
    rows = evaluate(model, sets, args.methods.split(","), args.cache, args.limit, args.precision, **overrides)
    text = markdown(rows, model, overrides, args.set)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"model": str(model.path), "sha256": model.sha256, "wiener_overrides": overrides,
                  "sampler_set": args.set, "rows": rows}
        stem = args.out.with_suffix("") if args.out.suffix in (".json", ".md") else args.out  # keeps "n2.5"
        stem.with_name(stem.name + ".json").write_text(json.dumps(record, indent=1) + "\n")
        stem.with_name(stem.name + ".md").write_text(text)


if __name__ == "__main__":
    main()
