"""Choose the Wiener step's noise scale from noisy images alone, by Stein's unbiased risk estimate (SURE).

For a fixed pilot the Wiener step is linear in the noisy image y: x = H y. With Gaussian noise of
covariance S, ``|y - x|^2 - tr(S) + 2 tr(H S)`` estimates ``|x - clean|^2`` without the clean image.
Here S is the noise the step measures (per DCT frequency, taken as diagonal in each block's DCT), so
``tr(H S)`` is the sum of each block's gains times the noise power, over the blocks a pixel lies in
(:func:`bsgd_cli.engine.wiener.sure_sweep`). Two things break the textbook case:
the pilot is made from the same noisy image, and the median-based noise measure reads real,
signal-dependent noise low. Both are absorbed by one calibration factor on the noise in the estimate,
chosen per model on the tuning split and stored with its Wiener settings (``WienerConfig.sure_factor``;
``SURE_NOISE_FACTOR`` for models stored without one); docs/OWN_CAMERA.md has the rule, the calibration
and what the choice measured.

Used by ``bsgd train`` (and ``--adapt``) when no ``--val-pairs`` are given: the scale is chosen on the
user's own captures and stored in the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..config import Mode, SamplerConfig, WienerConfig
from ..errors import ConfigError
from .denoise import denoise_array
from .model import LoadedModel
from .runtime import Runtime, resolve_runtime
from .wiener import estimate_noise, sure_sweep

SURE_NOISE_FACTOR = WienerConfig().sure_factor
"""The measured noise power is multiplied by this in the risk estimate, for a model stored without its
own factor (calibrated on the tuning split with the first release's and v8b's students)."""
CANDIDATE_SCALES = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)
CHOICE_CROP = 512
"""Each image's central crop at most this many pixels a side: the estimate is a mean, a crop suffices."""


@dataclass(frozen=True)
class WienerChoice:
    """The chosen noise scale, the mode whose output was the pilot, the images used, the mean
    estimated risk of each candidate (lower is better; comparable between candidates only, as the
    calibration factor shifts it) and that factor."""

    noise_scale: float
    mode: str
    images: int
    risks: dict[float, float]
    factor: float


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]


@dataclass(frozen=True)
class SureTerms:
    """The pieces of the risk estimate of one image at one setting: the squared residual ``|y - x|^2``,
    the noise's trace (its power summed over the pixels) and the filter's divergence against it."""

    residual: float
    trace: float
    divergence: float

    def risk(self, factor: float = SURE_NOISE_FACTOR) -> float:
        """The estimated squared error relative to the (scaled) noise power."""
        return (self.residual - factor * self.trace + 2.0 * factor * self.divergence) / (factor * self.trace)


def sure_group_terms(noisy: np.ndarray, pilot: np.ndarray, settings: WienerConfig, noise: list[torch.Tensor],
                     scales: Sequence[float]) -> list[dict[float, SureTerms]]:
    """Per plane group (luminance, then colour), the risk estimate's pieces for the one-pass Wiener
    step on one (H, W, C) image at each of ``scales`` (``noise`` from :func:`estimate_noise`, unscaled;
    ``settings``' other fields). The groups' risks add up: their planes are orthonormal."""
    if settings.passes != 1:
        raise ConfigError("the risk estimate covers a one-pass Wiener step only")
    with torch.inference_mode():
        swept = sure_sweep(_as_tensor(noisy), _as_tensor(pilot), settings, noise, list(scales))
    height, width = noisy.shape[:2]
    return [
        {scale: SureTerms(residual, height * width * float(group_noise.mean(dim=-1).sum()), divergence)
         for scale, (residual, divergence) in zip(scales, group, strict=True)}
        for group, group_noise in zip(swept, noise, strict=True)
    ]


def sure_terms(noisy: np.ndarray, pilot: np.ndarray, settings: WienerConfig, noise: list[torch.Tensor],
               scales: Sequence[float]) -> dict[float, SureTerms]:
    """The risk estimate's pieces for the whole image (all plane groups) at each of ``scales``
    (:func:`sure_group_terms`)."""
    groups = sure_group_terms(noisy, pilot, settings, noise, scales)
    return {scale: SureTerms(sum(g[scale].residual for g in groups), sum(g[scale].trace for g in groups),
                             sum(g[scale].divergence for g in groups)) for scale in scales}


def wiener_sure(noisy: np.ndarray, pilot: np.ndarray, settings: WienerConfig,
                noise: list[torch.Tensor], factor: float = SURE_NOISE_FACTOR) -> float:
    """The estimated squared error of the one-pass Wiener step (at ``settings.noise_scale``) on one
    image, relative to its noise power times ``factor`` (:class:`SureTerms`)."""
    scale = settings.noise_scale
    return sure_terms(noisy, pilot, settings, noise, [scale])[scale].risk(factor)


def central_crop(image: np.ndarray, side: int = CHOICE_CROP) -> np.ndarray:
    height, width = image.shape[:2]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return image[top : top + side, left : left + side]


def choose_noise_scale(
    model: LoadedModel,
    images: Sequence[np.ndarray],
    *,
    mode: Mode = "fast",
    runtime: Runtime | None = None,
    candidates: Sequence[float] = CANDIDATE_SCALES,
    factor: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> WienerChoice:
    """The candidate noise scale with the least mean estimated risk over ``images`` ((H, W, C) float32
    in [0, 1]; their central crops), the pilot being ``mode``'s network output with the model's
    other stored settings; ``factor``: the calibration factor (default: the model's stored one).
    ``progress(done, total)`` after each image."""
    factor = model.sampler.wiener.sure_factor if factor is None else factor
    if not images:
        raise ConfigError("choosing the Wiener strength needs at least one image")
    runtime = runtime or resolve_runtime("cpu", "auto")
    pilot_sampler: SamplerConfig = replace(model.sampler, mode=mode, refine="none", strength=1.0)
    totals = dict.fromkeys(candidates, 0.0)
    used = 0
    for index, image in enumerate(images):
        crop = np.ascontiguousarray(central_crop(image), dtype=np.float32)
        pilot = denoise_array(model, crop, sampler=pilot_sampler, runtime=runtime, image_index=index)
        noise = estimate_noise(crop, pilot, model.sampler.wiener)
        if noise is not None:
            used += 1
            for scale, terms in sure_terms(crop, pilot, model.sampler.wiener, noise, candidates).items():
                totals[scale] += terms.risk(factor)
        if progress is not None:
            progress(index + 1, len(images))
    if not used:
        raise ConfigError("every image was smaller than the Wiener step's blocks; nothing to choose on")
    risks = {scale: total / used for scale, total in totals.items()}
    return WienerChoice(noise_scale=min(risks, key=lambda s: risks[s]), mode=mode, images=used, risks=risks,
                        factor=factor)
