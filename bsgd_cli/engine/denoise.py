"""Denoise arrays with a loaded model: mode dispatch, tiling, seeds, the Wiener pass, out-of-memory retry.

The one public entry point is :func:`denoise_array` (float32 H x W x C in [0, 1] in and out). It runs
two tiled passes over the image: the network pass (:func:`network_pass`) gives a pilot estimate, then
the Wiener pass (:func:`wiener_pass`) refines it with one noise estimate for the whole image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from ..config import Mode, SamplerConfig, SamplerOverrides, TilingConfig, WienerConfig
from ..diffusion.guidance import blind_spot_guidance
from ..diffusion.sampling import refine_r3, sample_bsgd
from ..errors import ConfigError, DenoiseError
from ..events import ProgressFn
from .fusion import fusion_pass
from .model import BsgdModel, LoadedModel
from .runtime import Runtime, autocast_context, resolve_runtime
from .start import noise_std, start_time
from .tiling import Tile, TilePlan, apply_tiled, plan_tiles
from .wiener import estimate_noise, largest_patch, wiener_refine

StepCallback = Callable[[int, int], None]
_MIN_TILE = 64
WIENER_CPU_TILE = 512
"""The Wiener step's largest tile side on a CPU: one plane's DCT coefficients then stay under the
allocator's 32 MiB threshold (:mod:`bsgd_cli.engine.allocator`; docs/NOTES.md)."""
MIN_SIDE = 32
"""Images with a side under this many pixels are denoised with their mirror image around them
(:func:`mirror_pad`): alone they give the networks too little context and the Wiener step no block to
measure the noise on, and their brightness drifts; padded, it does not (docs/NOTES.md)."""


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
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Denoise (N, C, H, W) images in [0, 1] with ``sampler.mode``; returns (N, C, H, W) in [0, 1].

    The network stage only: the ``bsn`` mode's fusion and ``sampler.refine`` (which need the whole
    image's noise estimate) and ``sampler.strength`` are applied by :func:`denoise_array`.
    """
    y = noisy * 2.0 - 1.0
    n = y.shape[0]
    stride = model.config.blind_spot.pd_infer
    zero = torch.zeros(n, device=y.device)
    if sampler.mode == "bsn":
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


def resolve_sampler(
    model: LoadedModel, sampler: SamplerConfig | SamplerOverrides | None, device: torch.device
) -> SamplerConfig:
    """The sampler settings a run uses: ``sampler`` itself when whole, else the model's stored defaults
    with the overrides. With no mode asked for, a CPU run of a model with a distilled student uses
    ``fast``: as good as the stored default mode at many times its speed (docs/NOTES.md).
    """
    if isinstance(sampler, SamplerConfig):
        return sampler
    overrides = sampler or SamplerOverrides()
    if overrides.mode is None and device.type == "cpu" and model.model.student is not None:
        overrides = replace(overrides, mode="fast")
    return overrides.apply(model.sampler)


def inference_net(model: LoadedModel, device: torch.device, mode: str) -> BsgdModel:
    """The model's networks on ``device`` in eval mode; on a CPU, for the modes that run the blind-spot
    branch, with their weights channels-last.

    oneDNN's bf16 convolutions then keep activations channels-last instead of converting every
    layer's input and output: the blind-spot branch's pixel-shuffled tiles are plain NCHW, so
    ``bsn``, ``bsgd`` and ``bsn-r3`` ran 1.4-1.9 times faster (docs/NOTES.md). The student (``fast``)
    gets channels-last input already and was no faster (5 % slower in repeated runs), so its weights
    stay as they are. Outputs are unchanged but for float rounding. The change is in place; training
    works in either layout and saving makes tensors contiguous.
    """
    net = model.model.to(device).eval()
    if device.type == "cpu":
        layout = torch.contiguous_format if mode == "fast" else torch.channels_last
        net = net.to(memory_format=layout)  # type: ignore[call-overload]  # missing from the stubs
    return net


def blend(denoised: np.ndarray, noisy: np.ndarray, strength: float) -> np.ndarray:
    """``strength * denoised + (1 - strength) * noisy`` in float32 (``denoised`` itself at strength 1).

    Linear, so blending tile by tile equals blending the stitched image.
    """
    if strength >= 1.0:
        return denoised
    return (np.float32(strength) * denoised + np.float32(1.0 - strength) * noisy).astype(np.float32, copy=False)


def network_pass(
    net: BsgdModel, image: np.ndarray, plan: TilePlan, sampler: SamplerConfig, *, device: torch.device,
    precision: str, seed: int, image_index: int, batch: int, strength: float = 1.0,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """The networks over the tiles of ``image`` (H, W, C), blended: the pilot estimate, (H, W, C) float32,
    blended with the input by ``strength`` (1 when a later pass blends instead)."""

    def run_tiles(stack: np.ndarray, tiles: Sequence[Tile]) -> np.ndarray:
        batch_tensor = torch.from_numpy(stack).permute(0, 3, 1, 2).to(device)
        generators = [tile_generator(seed, image_index, tile.index) for tile in tiles]
        with torch.inference_mode(), autocast_context(device, precision):
            result = denoise_tensor(net, batch_tensor, sampler, generators)
        denoised = result.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32, copy=False)
        return blend(denoised, stack, strength)

    return apply_tiled(run_tiles, image, plan, batch=batch, progress=progress)


def measured_start(model: LoadedModel, net: BsgdModel, image: np.ndarray, plan: TilePlan, settings: SamplerConfig, *,
                   runtime: Runtime, seed: int, image_index: int, batch: int) -> SamplerConfig:
    """``settings`` with the ``bsgd`` mode's start chosen from the image's measured noise
    (:mod:`bsgd_cli.engine.start`; ``settings`` itself in other modes or with ``t_start_noise`` 0). The
    noise is measured against the student's output (the blind-spot branch's without a student)."""
    if settings.mode != "bsgd" or settings.t_start_noise <= 0:
        return settings
    mode: Mode = "fast" if model.model.student is not None else "bsn"
    cheap = replace(settings, mode=mode, refine="none", strength=1.0)
    pilot = network_pass(net, image, plan, cheap, device=runtime.device, precision=runtime.precision_for(mode),
                         seed=seed, image_index=image_index, batch=batch)
    std = noise_std(estimate_noise(image, pilot, settings.wiener), image.shape[2])
    return replace(settings, t_start=start_time(settings, std, model.model.config.schedule.kind))


def wiener_pass(image: np.ndarray, pilot: np.ndarray, wiener: WienerConfig, *, network_tile: int,
                device: torch.device, strength: float) -> np.ndarray:
    """The Wiener step per tile with one noise estimate for the whole image; written into ``pilot``.

    Its own tiles: at least 128 pixels and 12 of the largest blocks, overlapping by two of them
    and cut, not blended, in the middle of the overlap: a pixel at least one block from a tile's
    edge gets exactly the blocks the whole image would give it, so the tiled result is the
    whole-image result (tests/test_wiener.py). On a CPU they are at most :data:`WIENER_CPU_TILE`
    pixels a side, whatever the network's tile. The result is blended with ``image`` by ``strength``.
    """
    block = largest_patch(wiener, image.shape[2])
    side = max(min(network_tile, WIENER_CPU_TILE) if device.type == "cpu" else network_tile, 128, 12 * block)
    plan = plan_tiles(image.shape[0], image.shape[1], side, min(2 * block, side // 4))
    noise = estimate_noise(image, pilot, wiener)
    if noise is None:  # smaller than one Wiener block: nothing to measure
        return blend(pilot, image, strength)

    def to_tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].to(device)

    def refine_tiles(stack: np.ndarray, tiles: Sequence[Tile]) -> np.ndarray:
        results = []
        for noisy_tile, tile in zip(stack, tiles, strict=True):  # one call per tile: each has its block offset
            pilot_tile = pilot[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width]
            with torch.inference_mode():
                refined = wiener_refine(
                    to_tensor(noisy_tile), to_tensor(pilot_tile), wiener, noise, offset=(tile.y, tile.x)
                )
                results.append(refined.clamp_(0.0, 1.0)[0].permute(1, 2, 0).cpu().numpy())
        return blend(np.stack(results), stack, strength)

    # Written into the pilot's own array: rows are stored only after every tile reading them ran.
    return apply_tiled(refine_tiles, image, plan, batch=1, out=pilot, cut=True)


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def retry_on_out_of_memory(run: Callable[[int], np.ndarray], tile: int, device: torch.device) -> np.ndarray:
    """``run(tile)``, and on out-of-memory ``run`` again with half the tile, down to 64 pixels."""
    while True:
        try:
            return run(tile)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not _is_out_of_memory(exc) or tile // 2 < _MIN_TILE:
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            tile //= 2


def denoise_array(
    model: LoadedModel,
    image: np.ndarray,
    *,
    sampler: SamplerConfig | SamplerOverrides | None = None,
    tiling: TilingConfig | None = None,
    runtime: Runtime | None = None,
    seed: int = 0,
    image_index: int = 0,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Denoise one image: the network pass, then (``sampler.refine == "wiener"``) the Wiener pass, then
    the blend with the input by ``sampler.strength``.

    Args:
        model: from :func:`bsgd_cli.load_model`.
        image: (H, W, C) float32 in [0, 1], RGB (C = 3) or packed Bayer planes for a RAW-domain model.
        sampler: a whole :class:`SamplerConfig`, or :class:`SamplerOverrides` of the model's stored
            defaults (None: the defaults; see :func:`resolve_sampler` for the CPU default mode).
        tiling: tile side, overlap and tiles per call (default :class:`TilingConfig`); on
            out-of-memory the tile is halved and the image retried, down to 64 pixels.
        runtime: device and precision from :func:`bsgd_cli.engine.runtime.resolve_runtime` (default:
            ``auto`` for both).
        seed, image_index: with the tile index, seed each tile's generator (results do not depend
            on tile order or batch size).
        progress: gets ``tiles`` events of the network pass.
    Returns:
        (H, W, C) float32 in [0, 1].
    """
    channels = model.model.config.channels
    if image.ndim != 3 or image.shape[2] != channels:
        raise ConfigError(f"expected an H x W x {channels} image, got shape {image.shape}")
    tiling = tiling or TilingConfig()
    runtime = runtime or resolve_runtime()
    settings = resolve_sampler(model, sampler, runtime.device)
    precision = runtime.precision_for(settings.mode)
    net = inference_net(model, runtime.device, settings.mode)
    wiener = settings.wiener.for_mode(settings.mode) if settings.refine == "wiener" else None
    min_side = max(MIN_SIDE, largest_patch(wiener, channels)) if wiener is not None else MIN_SIDE
    padded, window = mirror_pad(np.ascontiguousarray(image, dtype=np.float32), min_side)

    fusion = settings.mode == "bsn" and settings.bsn_fusion

    def all_passes(tile: int) -> np.ndarray:
        plan = plan_tiles(padded.shape[0], padded.shape[1], tile, min(tiling.overlap, tile // 4), net.size_multiple())
        last = "wiener" if wiener is not None else "fusion" if fusion else "network"
        used = measured_start(model, net, padded, plan, settings, runtime=runtime, seed=seed,
                              image_index=image_index, batch=tiling.batch)
        pilot = network_pass(net, padded, plan, used, device=runtime.device, precision=precision, seed=seed,
                             image_index=image_index, batch=tiling.batch, progress=progress,
                             strength=settings.strength if last == "network" else 1.0)
        if fusion:
            pilot = fusion_pass(padded, pilot, settings.bsn_fusion_window, settings.bsn_fusion_scale)
            if last == "fusion":
                pilot = blend(pilot, padded, settings.strength)
        if wiener is None:
            return pilot
        return wiener_pass(padded, pilot, wiener, network_tile=tile, device=runtime.device, strength=settings.strength)

    denoised = retry_on_out_of_memory(all_passes, tiling.tile, runtime.device)[window]
    bad = int(np.count_nonzero(~np.isfinite(denoised)))
    if bad:
        raise DenoiseError(
            f"the model's output holds {bad} NaN/Inf value(s) (mode {settings.mode}, precision {precision}); "
            "nothing was written: try --precision fp32 or another --mode"
        )
    return denoised
