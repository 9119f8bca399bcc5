"""Does this CPU compute bf16 natively, and what does bf16 cost here? (docs/NOTES.md, "bf16 without AVX512")

Prints torch's CPU capability, bsgd's answer (``native_bf16``: what ``--precision auto`` follows) and the
time of one 3x3 convolution, 32 to 32 channels on a 256x256 image (the student's full-resolution layer),
in fp32 and under bf16 autocast, with contiguous and channels-last tensors, median of ``--repeats``.

    .venv/bin/python scripts/bf16_check.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bsgd_cli.engine.runtime import native_bf16


def conv_seconds(precision: str, layout: torch.memory_format, repeats: int) -> float:
    """Median seconds of one convolution; bf16 runs under CPU autocast whatever the CPU (the emulated path)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1).to(memory_format=layout)  # type: ignore[call-overload]
    x = torch.randn(1, 32, 256, 256).contiguous(memory_format=layout)
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        conv(x)  # warm-up: oneDNN picks and caches its kernel
        for _ in range(repeats):
            started = time.perf_counter()
            conv(x)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16: {native_bf16(torch.device('cpu'))}, {args.threads} threads")
    for layout, name in ((torch.contiguous_format, "contiguous"), (torch.channels_last, "channels-last")):
        fp32, bf16 = (conv_seconds(p, layout, args.repeats) for p in ("fp32", "bf16"))
        print(f"{name}: fp32 {fp32 * 1e3:.1f} ms, bf16 {bf16 * 1e3:.1f} ms ({bf16 / fp32:.1f}x)")


if __name__ == "__main__":
    main()
