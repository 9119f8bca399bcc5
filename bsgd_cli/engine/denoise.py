"""Denoise arrays with a loaded model: mode dispatch, devices, precision, tiling, seeds.

The one public entry point is :func:`denoise_array` (float32 H x W x 3 in [0, 1] in and out).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..config import SamplerConfig, replace
from ..diffusion.guidance import blind_spot_guidance
from ..diffusion.sampling import refine_r3, sample_bsgd
from ..errors import ConfigError, DenoiseError
from .model import BsgdModel, LoadedModel
from .runtime import autocast_context, resolve_device, resolve_precision
from .tiling import Tile, apply_tiled, plan_tiles
from .wiener import WienerSettings, estimate_noise, wiener_refine

ProgressFn = Callable[[int, int], None]
_MIN_TILE = 64
MIN_SIDE = 32
"""Images with a side under this many pixels are denoised with their mirror image around them
(:func:`mirror_pad`): alone they give the networks too little context and the Wiener step no block to
measure the noise on, and their result drifted in brightness by up to 26% (3x3, 1x1) with the
embedded model; padded, the drift stays under 1% (docs/RELIABILITY.md)."""


def mirror_pad(image: np.ndarray, side: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """(image, window): ``image`` (H, W, C) mirrored (symmetric, edge pixel repeated) on both sides of
    each axis shorter than ``side`` up to ``side``, and the window that crops the original back out."""
    height, width = image.shape[:2]
    pad_h, pad_w = max(0, side - height), max(0, side - width)
    if not pad_h and not pad_w:
        return image, (slice(None), slice(None))
    top, left = pad_h // 2, pad_w // 2
    padded = np.pad(image, ((top, pad_h - top), (left, pad_w - left), (0, 0)), mode="symmetric")
    return padded, (slice(top, top + height), slice(left, left + width))


def tile_generator(seed: int, image_index: int, tile_index: int) -> torch.Generator:
    """A CPU generator seeded from (seed, image index, tile index) alone (order-independent)."""
    digest = hashlib.sha256(f"bsgd:{seed}:{image_index}:{tile_index}".encode()).digest()
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return generator


def denoise_tensor(
    model: BsgdModel,
    noisy: torch.Tensor,
    sampler: SamplerConfig,
    generators: Sequence[torch.Generator],
    callback: ProgressFn | None = None,
) -> torch.Tensor:
    """Denoise (N, C, H, W) images in [0, 1] with ``sampler.mode``; returns (N, C, H, W) in [0, 1].

    The network stage only: ``sampler.refine`` (which needs the whole image's noise estimate) and
    ``sampler.strength`` are applied by :func:`denoise_array`.
    """
    y = noisy * 2.0 - 1.0
    n = y.shape[0]
    stride = model.config.blind_spot.pd_infer
    zero = torch.zeros(n, device=y.device)
    if sampler.mode == "bsn" and model.config.blind_spot.variance:
        out = model.blind_spot_posterior(y, stride, sampler.bsn_noise_quantile)
    elif sampler.mode == "bsn":
        out = model.blind_spot(y, zero, stride)
    elif sampler.mode == "bsn-r3":
        out = refine_r3(
            lambda x: model.blind_spot(x, zero, stride),
            lambda x: model.blind_spot(x, zero, 1),
            y,
            generators=generators,
            runs=sampler.r3_runs,
            prob=sampler.r3_prob,
            callback=callback,
        )
    elif sampler.mode == "fast":
        out = model.fast(y)
    elif sampler.mode == "bsgd":
        guided = blind_spot_guidance(
            model.diffusion_x0, lambda z, t: model.blind_spot(z, t, stride), sampler.guidance
        )
        out = sample_bsgd(
            guided,
            y,
            generators=generators,
            steps=sampler.steps,
            t_start=sampler.t_start,
            runs=sampler.runs,
            replace_prob=sampler.replace_prob,
            mask=sampler.mask,
            schedule=model.config.schedule.kind,
            callback=callback,
        )
    else:  # pragma: no cover - SamplerConfig validates modes
        raise ConfigError(f"unknown mode {sampler.mode!r}")
    return ((out.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def wiener_settings(sampler: SamplerConfig) -> WienerSettings:
    """The :class:`WienerSettings` a sampler config asks for."""
    return WienerSettings(
        passes=sampler.wiener_passes, noise_scale=sampler.wiener_noise, chroma_scale=sampler.wiener_chroma,
        patch=sampler.wiener_patch, stride=sampler.wiener_stride,
        chroma_patch=sampler.wiener_chroma_patch, chroma_stride=sampler.wiener_chroma_stride,
    )


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def denoise_array(
    model: LoadedModel,
    image: np.ndarray,
    *,
    mode: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    runs: int | None = None,
    t_start: float | None = None,
    seed: int = 0,
    tile: int = 512,
    overlap: int = 32,
    batch: int = 1,
    device: str | torch.device = "auto",
    precision: str = "auto",
    strength: float | None = None,
    refine: str | None = None,
    wiener_noise: float | None = None,
    image_index: int = 0,
    sampler: SamplerConfig | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Denoise one image.

    Two tiled passes: the networks (``mode``) give a pilot estimate; then, with ``refine="wiener"``,
    the noise is measured once over the whole image and :mod:`bsgd_cli.engine.wiener` refines the pilot
    tile by tile, writing into the pilot's array (no extra full-size buffer). ``strength`` blends
    the final result with the input.

    Args:
        model: from :func:`bsgd_cli.load_model`.
        image: (H, W, 3) float32 in [0, 1], RGB.
        mode, steps, guidance, runs, t_start: override the model's measured sampler defaults. With no
            ``mode`` and no ``sampler``, a CPU run of a model with a distilled student uses ``fast``.
        seed, image_index: with the tile index, seed each tile's generator (results do not depend
            on tile order or ``batch``).
        tile, overlap: tile side and overlap in pixels; on out-of-memory the tile is halved and the
            image retried, down to 64 pixels.
        strength: 1 is the denoised result, 0 the input; in between a linear blend (default: the
            model's measured ``sampler.strength``).
        refine, wiener_noise: "wiener" or "none", and the scale of the measured noise power
            (default: the model's ``sampler.refine`` and ``sampler.wiener_noise``).
        progress: called with (tiles done, tiles total).
    Returns:
        (H, W, 3) float32 in [0, 1].
    """
    if image.ndim != 3 or image.shape[2] != model.model.config.channels:
        raise ConfigError(f"expected an H x W x {model.model.config.channels} image, got shape {image.shape}")
    base = sampler or model.sampler
    torch_device = resolve_device(device)
    if mode is None and sampler is None and torch_device.type == "cpu" and model.model.student is not None:
        # On a CPU the distilled student is the default: it measured within 0.3 dB of (in fact above)
        # the model's stored default mode at 30x its speed (docs/BENCHMARKS.md, issue 7).
        mode = "fast"
    overrides: dict[str, Any] = dict(
        mode=mode, steps=steps, guidance=guidance, runs=runs, t_start=t_start, strength=strength,
        refine=refine, wiener_noise=wiener_noise,
    )
    settings = replace(base, **overrides)  # config.replace skips the None overrides
    strength = settings.strength
    precision = resolve_precision(precision, settings.mode, torch_device)
    net = model.model.to(torch_device).eval()
    wiener = wiener_settings(settings) if settings.refine == "wiener" else None
    min_side = max(MIN_SIDE, wiener.largest_patch(image.shape[2])) if wiener is not None else MIN_SIDE
    image, window = mirror_pad(np.ascontiguousarray(image, dtype=np.float32), min_side)

    def blend(denoised: np.ndarray, stack: np.ndarray) -> np.ndarray:
        if strength >= 1.0:
            return denoised
        # linear, so blending per tile equals blending the stitched image
        return (np.float32(strength) * denoised + np.float32(1.0 - strength) * stack).astype(np.float32, copy=False)

    def run_tiles(stack: np.ndarray, tiles: Sequence[Tile]) -> np.ndarray:
        batch_tensor = torch.from_numpy(stack).permute(0, 3, 1, 2).to(torch_device)
        generators = [tile_generator(seed, image_index, t.index) for t in tiles]
        with torch.inference_mode(), autocast_context(torch_device, precision):
            result = denoise_tensor(net, batch_tensor, settings, generators)
        denoised = result.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32, copy=False)
        return denoised if wiener is not None else blend(denoised, stack)

    def wiener_pass(pilot: np.ndarray, network_tile: int) -> np.ndarray:
        """Second pass: the Wiener step per tile with one noise estimate for the whole image.

        Its own tiles: at least 128 pixels and 12 of the largest blocks, overlapping by two of them
        and cut, not blended, in the middle of the overlap: a pixel at least one block from a tile's
        edge gets exactly the blocks the whole image would give it, so the tiled result is the
        whole-image result (tests/test_wiener.py).
        """
        assert wiener is not None
        block = wiener.largest_patch(image.shape[2])
        side = max(network_tile, 128, 12 * block)
        plan = plan_tiles(image.shape[0], image.shape[1], side, min(2 * block, side // 4))
        noise = estimate_noise(image, pilot, wiener)
        if noise is None:  # smaller than one Wiener block: nothing to measure
            return blend(pilot, image)

        def refine_tiles(stack: np.ndarray, tiles: Sequence[Tile]) -> np.ndarray:
            to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(torch_device)  # noqa: E731
            results = []
            for noisy_tile, t in zip(stack, tiles, strict=True):  # one call per tile: each has its block offset
                pilot_tile = pilot[t.y : t.y + t.height, t.x : t.x + t.width]
                with torch.inference_mode():
                    refined = wiener_refine(to_tensor(noisy_tile), to_tensor(pilot_tile), wiener, noise, offset=(t.y, t.x))
                    results.append(refined.clamp_(0.0, 1.0)[0].permute(1, 2, 0).cpu().numpy())
            return blend(np.stack(results), stack)

        # Written into the pilot's own array: rows are stored only after every tile reading them ran.
        return apply_tiled(refine_tiles, image, plan, batch=1, out=pilot, cut=True)  # one call per tile anyway

    current_tile = tile
    while True:
        plan = plan_tiles(image.shape[0], image.shape[1], current_tile, min(overlap, current_tile // 4), net.size_multiple())
        try:
            denoised = apply_tiled(run_tiles, image, plan, batch=batch, progress=progress)
            if wiener is not None:
                denoised = wiener_pass(denoised, current_tile)
            break
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not _is_out_of_memory(exc) or current_tile // 2 < _MIN_TILE:
                raise
            if torch_device.type == "cuda":
                torch.cuda.empty_cache()
            current_tile //= 2
    denoised = denoised[window]
    bad = int(np.count_nonzero(~np.isfinite(denoised)))
    if bad:
        raise DenoiseError(
            f"the model's output holds {bad} NaN/Inf value(s) (mode {settings.mode}, precision {precision}); "
            "nothing was written: try --precision fp32 or another --mode"
        )
    return denoised
