"""Guards on what the networks do: fixed values of the sampler, and the shipped model on real noise.

The second test is the one that would have caught the first releases: their networks alone scored
below the noisy input on real photos, and only the Wiener step made up for it (docs/EVALUATION.md). It
holds the embedded ``default`` and ``selfdistilled`` models to it; the ``first-release`` model (the
first release's weights, the default until v10) fails it (docs/MODEL_CARD.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bsgd_cli import denoise_array, load_model
from bsgd_cli.benchmark.metrics import psnr_uint8
from bsgd_cli.config import SamplerOverrides
from bsgd_cli.diffusion.sampling import sample_bsgd
from bsgd_cli.engine.denoise import tile_generator
from bsgd_cli.engine.runtime import resolve_runtime


def test_sampler_gives_the_recorded_values() -> None:
    """The guided sampler on a fixed x0 function and fixed generators: values recorded from the
    sampler of method.md (K 3 from t 0.3, R 2, p 0.2). A change to the schedule, the DDIM step, the
    replacement or the random streams changes them."""
    noisy = torch.linspace(-0.8, 0.8, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)

    def x0_fn(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(0.9 * z) * (1 - t.view(-1, 1, 1, 1))

    generators = [tile_generator(7, 0, index) for index in range(2)]
    out = sample_bsgd(x0_fn, noisy, generators=generators, steps=3, t_start=0.3, runs=2, replace_prob=0.2, mask="iid")
    assert out.double().sum().item() == pytest.approx(2.970110071823001, abs=1e-5)
    assert out[0, 0, 0, :4].tolist() == pytest.approx([-0.48023364, -0.52281600, -0.65934926, -0.41669914], abs=1e-6)
    assert out[1, 2, 7, 4:].tolist() == pytest.approx([0.55135858, 0.52523398, -0.00308835, 0.56999731], abs=1e-6)


def _polyu_crops(shared_data: Path, count: int = 8, size: int = 160) -> list[tuple[np.ndarray, np.ndarray]]:
    """Centre crops of PolyU tuning pairs (1-40 in sorted order; every 5th), noisy float and clean uint8."""
    from PIL import Image

    real = sorted((shared_data / "pairs" / "polyu").glob("*_real.JPG"))[:40][::5][:count]
    crops = []
    for path in real:
        noisy = np.asarray(Image.open(path).convert("RGB"))
        clean = np.asarray(Image.open(str(path).replace("_real", "_mean")).convert("RGB"))
        y, x = (noisy.shape[0] - size) // 2, (noisy.shape[1] - size) // 2
        crops.append((noisy[y : y + size, x : x + size].astype(np.float32) / 255.0, clean[y : y + size, x : x + size]))
    return crops


@pytest.mark.parametrize("name", ["default", "selfdistilled"])
def test_the_shipped_model_alone_beats_the_noisy_input(shared_data: Path, name: str) -> None:
    """Real camera noise, the CPU default mode, no Wiener step: the network must denoise on its own."""
    model = load_model(name)
    gains = []
    for noisy, clean in _polyu_crops(shared_data):
        alone = denoise_array(model, noisy, sampler=SamplerOverrides(refine="none"), runtime=resolve_runtime("cpu"))
        gains.append(psnr_uint8(clean, alone) - psnr_uint8(clean, noisy))
    message = f"the default mode alone gains {np.round(gains, 2).tolist()} dB over the noisy input"
    assert np.mean(gains) > 0.5 and sum(gain > 0 for gain in gains) >= 6, message


@pytest.mark.parametrize("name", ["default", "selfdistilled"])
def test_the_shipped_diffusion_branch_alone_beats_the_noisy_input(shared_data: Path, name: str) -> None:
    """The guided sampler at w = 0 (the diffusion branch alone, no Wiener step): a branch trained on noisy
    photos puts their noise back (1 dB below the noisy input on PolyU 1-40); trained toward pseudo-clean
    images it denoises (docs/LEARNING.md)."""
    model = load_model(name)
    gains = []
    for noisy, clean in _polyu_crops(shared_data):
        alone = denoise_array(model, noisy, sampler=SamplerOverrides(mode="bsgd", guidance=0.0, refine="none"),
                              runtime=resolve_runtime("cpu"))
        gains.append(psnr_uint8(clean, alone) - psnr_uint8(clean, noisy))
    message = f"the diffusion branch alone gains {np.round(gains, 2).tolist()} dB over the noisy input"
    assert np.mean(gains) > 0.5 and sum(gain > 0 for gain in gains) >= 6, message
