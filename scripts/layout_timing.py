"""Time the networks of each mode with contiguous and with channels-last weights (docs/NOTES.md, `inference_net`).

    .venv/bin/python scripts/layout_timing.py --modes fast,bsn,bsgd --side 768
    .venv/bin/python scripts/layout_timing.py --modes bsn-r3 --side 384

One synthetic image (a seeded grey field with texture), the network pass only (no Wiener step), the
model's stored sampler otherwise, ``--precision auto`` as ``bsgd denoise`` resolves it. Prints each
layout's wall time after one warm-up call and the largest difference between the two outputs.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

import bsgd_cli.engine.denoise as engine
from bsgd_cli.checkpoint import load_model
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.model import BsgdModel, LoadedModel
from bsgd_cli.engine.runtime import resolve_runtime

original = engine.inference_net


def contiguous(model: LoadedModel, device: torch.device, mode: str) -> BsgdModel:
    """``inference_net`` without the layout choice: the weights in torch's default (contiguous) layout."""
    return original(model, device, mode).to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def channels_last(model: LoadedModel, device: torch.device, mode: str) -> BsgdModel:
    """``inference_net`` with channels-last weights whatever the mode."""
    return original(model, device, mode).to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model file or name (default: the embedded model)")
    parser.add_argument("--modes", default="fast,bsn,bsgd")
    parser.add_argument("--side", type=int, default=768, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    rng = np.random.default_rng(0)
    image = (0.45 + 0.1 * rng.random((args.side, args.side, 3), dtype=np.float32)).astype(np.float32)
    runtime = resolve_runtime("cpu", "auto")
    for mode in args.modes.split(","):
        sampler = replace(model.sampler, mode=mode, refine="none")
        outputs = {}
        for layout in (torch.contiguous_format, torch.channels_last):
            engine.inference_net = channels_last if layout == torch.channels_last else contiguous
            denoise_array(model, image[:128, :128], sampler=sampler, runtime=runtime)
            started = time.perf_counter()
            outputs[layout] = denoise_array(model, image, sampler=sampler, runtime=runtime)
            seconds = time.perf_counter() - started
            print(f"{mode} {str(layout).removeprefix('torch.')}: {seconds:.2f} s", flush=True)
        difference = float(np.abs(outputs[torch.channels_last] - outputs[torch.contiguous_format]).max())
        print(f"{mode}: largest difference {difference:.2e}", flush=True)


if __name__ == "__main__":
    main()
