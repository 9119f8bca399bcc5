"""Own-camera training as a user meets it: `bsgd train --minutes M` on a few noisy captures, then denoise them.

The captures are the noisy SIDD images of ../shared/data (the four SIDD benchmark blocks, the SIDD-style crop
and the SIDD pair's noisy half: strong phone noise); the score is the SIDD pair's PSNR after
`bsgd denoise` with the run's model (the CPU default mode, the model's stored Wiener step), against its
clean reference. († protocol: a self-supervised method may train on the very images it denoises.)
Each run is the whole `bsgd train` command, timed; the untrained starting model is scored too.

    .venv/bin/python scripts/own_camera.py --minutes 2 5 15 --init default --out docs/own-camera
    .venv/bin/python scripts/own_camera.py --minutes 5 --init default --extra "--rounds 2 --train-share 0.2"
    .venv/bin/python scripts/own_camera.py --minutes 5 15 --init scratch
Results append to OUT.jsonl; OUT.md is rewritten with every row so far.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from bsgd_cli.benchmark.metrics import psnr_uint8
from bsgd_cli.checkpoint import load_model
from bsgd_cli.config import SamplerOverrides
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.runtime import resolve_runtime

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BSGD = Path(sys.executable).with_name("bsgd")


def captures(folder: Path) -> tuple[Path, np.ndarray]:
    """Write the captures folder; returns (the SIDD pair's noisy file in it, its clean reference)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in (SHARED / "noisy" / "sidd-blocks").glob("*.png"):
        shutil.copy(path, folder / path.name)
    pair = SHARED / "pairs" / "sidd-danet"
    noisy = scipy.io.loadmat(pair / "noisy.mat")["im_noisy"]
    Image.fromarray(noisy).save(folder / "sidd_pair_noisy.png")
    return folder / "sidd_pair_noisy.png", scipy.io.loadmat(pair / "gt.mat")["im_gt"]


def score(model: str, noisy_file: Path, clean: np.ndarray) -> dict[str, float]:
    """PSNR of the model's CPU default mode with its stored Wiener step ("psnr") and alone ("alone")."""
    noisy = np.asarray(Image.open(noisy_file).convert("RGB"), dtype=np.float32) / 255.0
    loaded, runtime = load_model(model), resolve_runtime("cpu")
    return {"psnr": psnr_uint8(clean, denoise_array(loaded, noisy, runtime=runtime)),
            "alone": psnr_uint8(clean, denoise_array(loaded, noisy, sampler=SamplerOverrides(refine="none"),
                                                     runtime=runtime))}


def run(minutes: float, init: str, extra: str, work: Path, capture_dir: Path) -> tuple[Path, float]:
    name = f"{init}-{minutes:g}min" + ("-" + "_".join(extra.replace("--", "").split()) if extra else "")
    run_dir = work / name
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [str(BSGD), "train", "--noisy-dir", str(capture_dir), "-o", str(run_dir), "--minutes", str(minutes),
               "-q", *shlex.split(extra)]
    if init != "scratch":
        command += ["--init", init]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "BSGD_MODEL_DIR": str(work / "models")})
    return run_dir / "model.safetensors", time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", required=True)
    parser.add_argument("--init", default="default", help="a model, or scratch")
    parser.add_argument("--extra", default="", help="more bsgd train options")
    parser.add_argument("--work", type=Path, default=Path("runs/own"))
    parser.add_argument("--out", type=Path, default=Path("runs/own/results"))
    args = parser.parse_args()
    noisy_file, clean = captures(args.work / "captures")
    rows = []
    if args.init != "scratch":
        rows.append({"init": args.init, "minutes": 0, "extra": "", **score(args.init, noisy_file, clean),
                     "command_s": 0.0})
        print(json.dumps(rows[-1]), flush=True)
    for minutes in args.minutes:
        model, seconds = run(minutes, args.init, args.extra, args.work, noisy_file.parent)
        rows.append({"init": args.init, "minutes": minutes, "extra": args.extra,
                     **score(str(model), noisy_file, clean), "command_s": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".jsonl").open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    every = [json.loads(line) for line in args.out.with_suffix(".jsonl").read_text().splitlines()]
    lines = ["| start | budget (min) | options | SIDD pair: pipeline | alone (`--no-wiener`) "
             "| whole `bsgd train` (s) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['init']} | {r['minutes']:g} | {r['extra']} | {r['psnr']:.2f} "
              f"| {r.get('alone', float('nan')):.2f} | {r['command_s']:.0f} |" for r in every]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
