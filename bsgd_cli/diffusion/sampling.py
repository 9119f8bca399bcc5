"""Samplers: the BSGD guided DDIM sampler and AP-BSN's random-replacing refinement (R3).

All functions work in model space ([-1, 1], NCHW) and draw noise only through the per-item
``generators`` (one CPU ``torch.Generator`` per batch item), so a result depends on its own
generator alone, never on batch size, tile order or device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .guidance import X0Fn
from .schedule import ddim_times, signal_and_noise

StepCallback = Callable[[int, int], None]


def randn_per_item(shape: Sequence[int], generators: Sequence[torch.Generator], device, dtype) -> torch.Tensor:
    """Standard normal noise of ``shape`` (N, ...) with item i drawn from ``generators[i]`` on the CPU."""
    if len(generators) != shape[0]:
        raise ValueError(f"need one generator per batch item: {len(generators)} for {shape[0]}")
    items = [torch.randn(tuple(shape[1:]), generator=g, dtype=torch.float32) for g in generators]
    return torch.stack(items).to(device=device, dtype=dtype)


def rand_per_item(shape: Sequence[int], generators: Sequence[torch.Generator], device) -> torch.Tensor:
    """Uniform [0, 1) noise, item i from ``generators[i]`` (see :func:`randn_per_item`)."""
    items = [torch.rand(tuple(shape[1:]), generator=g, dtype=torch.float32) for g in generators]
    return torch.stack(items).to(device=device)


def replacement_masks(
    shape: Sequence[int], runs: int, prob: float, kind: str, generators: Sequence[torch.Generator], device
) -> list[torch.Tensor]:
    """R boolean masks of ``shape``: True where the noisy input is re-injected.

    ``iid``: each pixel and channel independently with probability ``prob``. ``complementary``: the R
    masks partition the pixels and channels, so each value is replaced in exactly one run (``prob`` is
    then 1/R by construction).
    """
    if kind == "complementary":
        assignment = (rand_per_item(shape, generators, device) * runs).long().clamp_max(runs - 1)
        return [assignment == r for r in range(runs)]
    return [rand_per_item(shape, generators, device) < prob for _ in range(runs)]


def sample_bsgd(
    x0_fn: X0Fn,
    noisy: torch.Tensor,
    *,
    generators: Sequence[torch.Generator],
    steps: int,
    t_start: float,
    runs: int,
    replace_prob: float,
    mask: str = "iid",
    schedule: str = "cosine",
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Blind-spot guided DDIM sampling (method.md, "Guided sampling"), eta = 0.

    Args:
        x0_fn: guided x0 estimate (see :func:`~bsgd_cli.diffusion.guidance.blind_spot_guidance`).
        noisy: y, (N, C, H, W) in [-1, 1].
        generators: one per batch item.
        steps: K; t_start: diffusion time the runs start from (0 = the input itself).
        runs: R runs averaged; replace_prob: p; mask: "iid" or "complementary".
        callback: called with (done, total) after every network evaluation step.
    Returns:
        (N, C, H, W) mean of the R final x0 estimates, in [-1, 1].
    """
    n = noisy.shape[0]
    masks = replacement_masks(noisy.shape, runs, replace_prob, mask, generators, noisy.device)
    times = ddim_times(t_start, steps)
    a_start, s_start = (float(v) for v in signal_and_noise(t_start, schedule))
    total = runs * len(times)
    done = 0
    result = torch.zeros_like(noisy)
    for run in range(runs):
        z = a_start * noisy + s_start * randn_per_item(noisy.shape, generators, noisy.device, noisy.dtype)
        x0 = noisy
        for t, t_prev in times:
            t_batch = torch.full((n,), t, device=noisy.device, dtype=torch.float32)
            x0 = x0_fn(z, t_batch)
            if t_prev > 0:
                a_t, s_t = (float(v) for v in signal_and_noise(t, schedule))
                a_prev, s_prev = (float(v) for v in signal_and_noise(t_prev, schedule))
                eps = (z - a_t * x0) / s_t
                x0 = torch.where(masks[run], noisy, x0)
                z = a_prev * x0 + s_prev * eps
            done += 1
            if callback is not None:
                callback(done, total)
        result += x0
    return (result / runs).clamp(-1.0, 1.0)


def refine_r3(
    blind_spot_pd: Callable[[torch.Tensor], torch.Tensor],
    blind_spot_full: Callable[[torch.Tensor], torch.Tensor],
    noisy: torch.Tensor,
    *,
    generators: Sequence[torch.Generator],
    runs: int = 8,
    prob: float = 0.16,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """AP-BSN's random-replacing refinement (Lee et al., CVPR 2022, "R3").

    ``blind_spot_pd`` is B(., 0) through PD stride 2, ``blind_spot_full`` B(., 0) without PD. Each run
    replaces ``prob`` of the PD output's values (per pixel and channel) with the noisy input's, runs
    the full-resolution blind-spot net on that, and the ``runs`` results are averaged.
    """
    base = blind_spot_pd(noisy)
    masks = replacement_masks(noisy.shape, runs, prob, "iid", generators, noisy.device)
    result = torch.zeros_like(noisy)
    for run in range(runs):
        result += blind_spot_full(torch.where(masks[run], noisy, base))
        if callback is not None:
            callback(run + 1, runs)
    return (result / runs).clamp(-1.0, 1.0)
