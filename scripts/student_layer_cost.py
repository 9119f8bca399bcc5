"""What the student's element-wise layers cost: one tile through the CPU default path, as it is, with
GroupNorm or SiLU replaced by a no-op, and with GroupNorm as a fixed per-channel scale and shift (wrong
outputs, timing only). ``--also FILE`` times other models' students as the engine runs them (an
affine-norm student folded into its convolutions), in turn with the first, ``--rounds`` times.

    .venv/bin/python scripts/student_layer_cost.py [--model default] [--height 408 --width 464] [--repeats 8]
    .venv/bin/python scripts/student_layer_cost.py --also runs/x/model.safetensors --rounds 3

The tile is the size `bsgd denoise` uses on a 1732x1155 photo (512-pixel tiles laid snug); bf16 autocast,
channels-last input, as in the engine. Prints the best time of each variant in milliseconds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bsgd_cli.engine.threads import prepare_openmp

prepare_openmp()

import torch  # noqa: E402  (after the OpenMP policy is set)
import torch.nn.functional as F  # noqa: E402

import bsgd_cli.nets.unet as unet  # noqa: E402
from bsgd_cli.checkpoint import load_model  # noqa: E402
from bsgd_cli.engine.allocator import tune_allocator  # noqa: E402
from bsgd_cli.engine.threads import configure_torch_threads  # noqa: E402


def best_ms(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) * 1e3


def _student(model: str) -> torch.nn.Module:
    student = load_model(model).model.student
    if student is None:
        raise SystemExit(f"{model} has no student")
    return student.eval()


def _forward(student: torch.nn.Module, tile: torch.Tensor) -> Callable[[], object]:
    def forward() -> object:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return student(tile)
    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--height", type=int, default=408)
    parser.add_argument("--width", type=int, default=464)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--also", action="append", default=[], metavar="FILE",
                        help="time these models' students too, as they are, in turn with --model's")
    parser.add_argument("--rounds", type=int, default=1, help="with --also: rounds of the comparison")
    args = parser.parse_args()
    tune_allocator()
    configure_torch_threads()
    tile = (torch.rand(1, 3, args.height, args.width) * 2 - 1).contiguous(memory_format=torch.channels_last)
    students = {name: _student(name) for name in [args.model, *args.also]}
    if args.also:
        for _round in range(args.rounds):
            times = {name: best_ms(_forward(net, tile), args.repeats) for name, net in students.items()}
            print(" | ".join(f"{name}: {ms:.1f} ms" for name, ms in times.items()))
        return
    student = students[args.model]
    forward = _forward(student, tile)

    group_norm, silu = F.group_norm, unet.F.silu
    print(f"as it is: {best_ms(forward, args.repeats):.1f} ms")
    F.group_norm = lambda x, *_args, **_kwargs: x  # nn.GroupNorm and the folded FiLM path both call it
    print(f"GroupNorm a no-op: {best_ms(forward, args.repeats):.1f} ms")

    def scale_and_shift(x: torch.Tensor, _groups: int, weight: torch.Tensor, bias: torch.Tensor, *_: object) -> torch.Tensor:
        return torch.addcmul(bias[None, :, None, None].to(x.dtype), x, weight[None, :, None, None].to(x.dtype))

    F.group_norm = scale_and_shift  # frozen statistics, not folded into a convolution
    print(f"GroupNorm as a fixed per-channel scale and shift: {best_ms(forward, args.repeats):.1f} ms")
    F.group_norm = group_norm
    unet.F.silu = lambda x, inplace=False: x
    print(f"SiLU a no-op: {best_ms(forward, args.repeats):.1f} ms")
    unet.F.silu = silu


if __name__ == "__main__":
    main()
