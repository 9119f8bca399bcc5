"""Own-camera training as a user meets it: `bsgd train --minutes M` on a few noisy captures, then denoise them.

Two sets of captures (``--captures``), both from ../shared/data and both in the tuning split:
``sidd``: the SIDD benchmark blocks and the SIDD pair's noisy half (strong phone noise; the blocks are in
the v8 training pool), scored on the SIDD pair; ``polyu-tuning``: the noisy halves of PolyU pairs 1-40
(DSLR noise no shipped model trained on), each scored against its reference. The score is the mean PSNR
of the run's model in the CPU default mode with its stored Wiener step, and alone (`--no-wiener`).
(† protocol: a self-supervised method may train on the very images it denoises.) Each run is the whole
`bsgd train` command, timed; the untrained starting model is scored too.

    .venv/bin/python scripts/own_camera.py --minutes 2 5 15 --init default --out docs/own-camera
    .venv/bin/python scripts/own_camera.py --minutes 5 --init default --extra "--rounds 2 --train-share 0.2"
    .venv/bin/python scripts/own_camera.py --minutes 5 15 --init scratch
    .venv/bin/python scripts/own_camera.py --minutes 5 --init default --captures polyu-tuning
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
from protocol import refine  # scripts/ is on the path when run as a script

from bsgd_cli.benchmark.metrics import psnr_uint8
from bsgd_cli.checkpoint import load_model
from bsgd_cli.config import SamplerOverrides
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.runtime import resolve_runtime

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BSGD = Path(sys.executable).with_name("bsgd")


def sidd_captures(folder: Path) -> list[tuple[Path, np.ndarray]]:
    """The SIDD captures (strong phone noise; the blocks are in the v8 training pool, the pair is not);
    returns the scored (noisy file, clean reference) pairs: the SIDD pair."""
    for path in (SHARED / "noisy" / "sidd-blocks").glob("*.png"):
        shutil.copy(path, folder / path.name)
    pair = SHARED / "pairs" / "sidd-danet"
    noisy = scipy.io.loadmat(pair / "noisy.mat")["im_noisy"]
    Image.fromarray(noisy).save(folder / "sidd_pair_noisy.png")
    return [(folder / "sidd_pair_noisy.png", scipy.io.loadmat(pair / "gt.mat")["im_gt"])]


def polyu_captures(folder: Path) -> list[tuple[Path, np.ndarray]]:
    """PolyU tuning pairs 1-40 (sorted by name; DSLR noise no shipped model was trained on): the noisy
    halves are the captures, and every one is scored against its reference."""
    real = sorted((SHARED / "pairs" / "polyu").glob("*_real.JPG"))[:40]
    pairs = []
    for path in real:
        shutil.copy(path, folder / path.name)
        clean = np.asarray(Image.open(str(path).replace("_real", "_mean")).convert("RGB"))
        pairs.append((folder / path.name, clean))
    return pairs


CAPTURES = {"sidd": sidd_captures, "polyu-tuning": polyu_captures}


def captures(folder: Path, which: str) -> list[tuple[Path, np.ndarray]]:
    """Write the captures folder; returns the (noisy file in it, clean reference) pairs to score."""
    folder.mkdir(parents=True, exist_ok=True)
    return CAPTURES[which](folder)


def score(model: str, pairs: list[tuple[Path, np.ndarray]]) -> dict[str, float]:
    """Mean PSNR of the model's CPU default mode with its stored Wiener step ("psnr") and alone ("alone")."""
    loaded, runtime = load_model(model), resolve_runtime("cpu")
    piped, alone = [], []
    for noisy_file, clean in pairs:  # one network pass per image; the Wiener step on its output, as denoise does
        noisy = np.asarray(Image.open(noisy_file).convert("RGB"), dtype=np.float32) / 255.0
        output = denoise_array(loaded, noisy, sampler=SamplerOverrides(refine="none"), runtime=runtime)
        alone.append(psnr_uint8(clean, output))
        piped.append(psnr_uint8(clean, refine(loaded, noisy, output)))
    return {"psnr": float(np.mean(piped)), "alone": float(np.mean(alone))}


def run(minutes: float, init: str, extra: str, work: Path, capture_dir: Path) -> tuple[Path, float]:
    """One whole ``bsgd train`` command on ``capture_dir``; (its model file, wall seconds)."""
    label = Path(init).parent.name if init.endswith(".safetensors") else init  # runs/v8/model.safetensors: v8
    options = "-" + "_".join(extra.replace("--", "").split()) if extra else ""
    name = f"{capture_dir.name}-{label}-{minutes:g}min{options}"
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
    parser.add_argument("--captures", choices=sorted(CAPTURES), default="sidd")
    parser.add_argument("--work", type=Path, default=Path("runs/own"))
    parser.add_argument("--out", type=Path, default=Path("runs/own/results"))
    args = parser.parse_args()
    pairs = captures(args.work / f"captures-{args.captures}", args.captures)
    rows = []
    if args.init != "scratch":
        rows.append({"captures": args.captures, "init": args.init, "minutes": 0, "extra": "", **score(args.init, pairs),
                     "command_s": 0.0})
        print(json.dumps(rows[-1]), flush=True)
    for minutes in args.minutes:
        model, seconds = run(minutes, args.init, args.extra, args.work, pairs[0][0].parent)
        rows.append({"captures": args.captures, "init": args.init, "minutes": minutes, "extra": args.extra,
                     **score(str(model), pairs), "command_s": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".jsonl").open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    every = [json.loads(line) for line in args.out.with_suffix(".jsonl").read_text().splitlines()]
    lines = ["| captures | start | budget (min) | options | pipeline (dB) | alone (`--no-wiener`) "
             "| whole `bsgd train` (s) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.get('captures', 'sidd')} | {r['init']} | {r['minutes']:g} | {r['extra']} | {r['psnr']:.2f} "
              f"| {r.get('alone', float('nan')):.2f} | {r['command_s']:.0f} |" for r in every]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
