"""Same seed, same output, bit for bit: outputs recorded before the package was reorganised.

``tests/golden/outputs.json`` holds a SHA-256 of the float32 bytes of each case's output (and a few float
checksums), made by this module's :func:`compute` on the code *before* the package was reorganised
(``python -m tests.test_golden --record``). Cases: every mode of the first release's weights (the
embedded ``first-release`` model, the default until v10) with and without the Wiener step, a tiled
image, a partial strength, bf16, a tiny model (``tests/golden/tiny.safetensors``, saved by the old code
with the flat ``wiener_*`` sampler keys), a batch of files through ``denoise_paths``, and a few training
and distillation steps.

Float results depend on the CPU's vector kernels: the exact hashes are compared when the CPU capability
is the one recorded (AVX512 here); elsewhere the checksums must agree to 1e-4.

A CPU without native bf16 (AVX2 only) runs every case in fp32 (``--precision auto`` there, and what a
case's bf16 becomes: docs/NOTES.md, "bf16 without AVX512"), so it is compared with
``tests/golden/outputs-fp32.json``: the same cases run in fp32 by the code at 99d9966, before that
change, on an AVX2 CPU.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).parent / "golden"
RECORD = GOLDEN / "outputs.json"
RECORD_FP32 = GOLDEN / "outputs-fp32.json"
TINY = GOLDEN / "tiny.safetensors"


def _image(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    clean = np.stack(
        [0.5 + 0.3 * np.sin(xx / 9.0), 0.5 + 0.3 * np.cos(yy / 7.0), 0.5 + 0.2 * np.sin((xx + yy) / 11.0)], axis=-1
    )
    return np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)


def _digest(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return {"sha256": hashlib.sha256(array.tobytes()).hexdigest(), "shape": list(array.shape),
            "sum": float(array.sum(dtype=np.float64)), "sum_sq": float(np.square(array, dtype=np.float64).sum())}


def _make_tiny() -> None:
    from bsgd_cli.checkpoint import save_model
    from bsgd_cli.config import PRESETS, StudentConfig
    from bsgd_cli.engine.model import BsgdModel

    torch.manual_seed(0)
    model = BsgdModel(PRESETS["tiny"])
    model.add_student(StudentConfig(width=8, mults=(1, 1)))
    save_model(TINY, model, info={"note": "golden test model"})


# The cases: (name, model, kwargs of denoise_array, image (height, width, seed)). Recorded with the old API.
CASES: list[tuple[str, str, dict[str, Any], tuple[int, int, int]]] = [
    ("default-cpu-default", "default", {}, (48, 56, 1)),
    ("default-fast-wiener", "default", {"mode": "fast"}, (48, 56, 1)),
    ("default-fast-none", "default", {"mode": "fast", "refine": "none"}, (48, 56, 1)),
    ("default-bsgd-wiener", "default", {"mode": "bsgd", "seed": 3}, (40, 44, 2)),
    ("default-bsgd-none", "default", {"mode": "bsgd", "refine": "none", "seed": 3}, (40, 44, 2)),
    ("default-bsn-wiener", "default", {"mode": "bsn"}, (48, 56, 1)),
    ("default-bsn-none", "default", {"mode": "bsn", "refine": "none"}, (48, 56, 1)),
    ("default-bsnr3-wiener", "default", {"mode": "bsn-r3", "seed": 5}, (40, 44, 2)),
    ("default-bsnr3-none", "default", {"mode": "bsn-r3", "refine": "none", "seed": 5}, (40, 44, 2)),
    ("default-bsn-tiled", "default", {"mode": "bsn", "tile": 64, "overlap": 16, "batch": 2}, (150, 130, 4)),
    ("default-fast-strength", "default", {"mode": "fast", "strength": 0.4, "wiener_noise": 5.0}, (48, 56, 1)),
    ("default-bsgd-knobs", "default", {"mode": "bsgd", "steps": 3, "runs": 1, "guidance": 0.8, "t_start": 0.1,
                                       "seed": 7, "image_index": 2, "precision": "bf16"}, (36, 40, 3)),
    ("default-small", "default", {"mode": "fast"}, (9, 13, 6)),
    ("tiny-bsgd", "tiny", {"mode": "bsgd", "steps": 2, "runs": 2, "seed": 1}, (70, 90, 5)),
    ("tiny-bsgd-tiled", "tiny", {"mode": "bsgd", "tile": 48, "overlap": 8, "refine": "none"}, (70, 90, 5)),
    ("tiny-fast", "tiny", {"mode": "fast"}, (70, 90, 5)),
    ("tiny-bsn", "tiny", {"mode": "bsn", "refine": "wiener"}, (70, 90, 5)),
]


SAMPLER_KEYS = ("mode", "steps", "guidance", "runs", "t_start", "strength", "refine", "wiener_noise")
TILING_KEYS = ("tile", "overlap", "batch")


def _denoise_case(models: dict[str, Any], model: str, kwargs: dict[str, Any], image: np.ndarray) -> np.ndarray:
    """One case through today's API; ``kwargs`` are the old API's keywords the case was recorded with."""
    from bsgd_cli.config import SamplerOverrides, TilingConfig
    from bsgd_cli.engine.denoise import denoise_array
    from bsgd_cli.engine.runtime import resolve_runtime

    sampler = SamplerOverrides(**{k: v for k, v in kwargs.items() if k in SAMPLER_KEYS})
    tiling = TilingConfig(**{k: v for k, v in kwargs.items() if k in TILING_KEYS})
    precision = kwargs.get("precision", "auto")
    runtime = resolve_runtime("cpu", "auto" if precision == "bf16" and not _native_bf16() else precision)
    return denoise_array(models[model], image, sampler=sampler, tiling=tiling, runtime=runtime,
                         seed=kwargs.get("seed", 0), image_index=kwargs.get("image_index", 0))


def _batch_case(models: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Two files through the batch (8-bit PNG in, 16-bit PNG in): the decoded output pixels."""
    from bsgd_cli.batch.denoise import DenoiseOptions, denoise_paths
    from bsgd_cli.config import SamplerOverrides
    from bsgd_cli.engine.runtime import resolve_runtime
    from bsgd_cli.io import read_image, write_image

    source = folder / "in"
    source.mkdir(parents=True)
    write_image(source / "a.png", _image(40, 48, 8), bit_depth=8)
    write_image(source / "b.png", _image(44, 36, 9), bit_depth=16)
    options = DenoiseOptions(sampler=SamplerOverrides(mode="bsn"), runtime=resolve_runtime("cpu"), workers=1, seed=2)
    results = denoise_paths([source], folder / "out", models["default"], options)
    return {Path(r.output).name: _digest(read_image(Path(r.output)).pixels) for r in results}


def _train_case(folder: Path) -> dict[str, Any]:
    """Three training steps of the tiny preset and two distillation steps: the saved weights."""
    from bsgd_cli.checkpoint import load_model
    from bsgd_cli.config import PRESETS, StudentConfig, TrainConfig
    from bsgd_cli.io import write_image
    from bsgd_cli.training.distill import DistillConfig, distill
    from bsgd_cli.training.train import train

    data = folder / "noisy"
    data.mkdir(parents=True)
    for index in range(3):
        write_image(data / f"n{index}.png", _image(64, 72, 20 + index), bit_depth=8)
    config = TrainConfig(steps=3, batch=2, patch=40, warmup=1, log_every=1, val_every=2, checkpoint_every=2,
                         lr=1e-3, precision="fp32", seed=4)
    train(data, folder / "run", model_config=PRESETS["tiny"], config=config, device="cpu")
    teacher = load_model(folder / "run" / "model.safetensors")
    path = distill(teacher, data, folder / "distill", student=StudentConfig(width=8, mults=(1, 1)),
                   config=DistillConfig(crop=32, crops_per_image=1, patch=32, steps=2, batch=2, warmup=1,
                                        log_every=1, precision="fp32", teacher_precision="fp32"),
                   device="cpu")
    out: dict[str, Any] = {}
    for name, file in (("trained", folder / "run" / "model.safetensors"), ("distilled", path)):
        state = load_model(file).model.state_dict()
        flat = np.concatenate([state[key].detach().float().numpy().ravel() for key in sorted(state)])
        out[name] = _digest(flat)
    return out


def compute(folder: Path) -> dict[str, Any]:
    from bsgd_cli.checkpoint import load_model

    torch.set_num_threads(2)
    models = {"default": load_model("first-release"), "tiny": load_model(TINY)}
    results: dict[str, Any] = {}
    for name, model, kwargs, (height, width, seed) in CASES:
        results[name] = _digest(_denoise_case(models, model, kwargs, _image(height, width, seed)))
    results["batch"] = _batch_case(models, folder / "batch")
    results["train"] = _train_case(folder / "train")
    return results


def _native_bf16() -> bool:
    from bsgd_cli.engine.runtime import native_bf16

    return native_bf16(torch.device("cpu"))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    flat: dict[str, dict[str, Any]] = {}
    for key, value in tree.items():
        if "sha256" in value:
            flat[prefix + key] = value
        else:
            flat.update(_flatten(value, f"{prefix}{key}/"))
    return flat


@pytest.mark.slow
def test_outputs_are_unchanged_bit_for_bit(tmp_path: Path) -> None:
    recorded = json.loads((RECORD if _native_bf16() else RECORD_FP32).read_text())
    now = _flatten(compute(tmp_path))
    expected = _flatten(recorded["outputs"])
    assert sorted(now) == sorted(expected)
    exact = torch.backends.cpu.get_cpu_capability() == recorded["cpu_capability"]
    for name, want in expected.items():
        got = now[name]
        assert got["shape"] == want["shape"], name
        if exact:
            assert got["sha256"] == want["sha256"], f"{name}: output changed"
        else:
            assert got["sum"] == pytest.approx(want["sum"], rel=1e-4, abs=1e-4), name
            assert got["sum_sq"] == pytest.approx(want["sum_sq"], rel=1e-4, abs=1e-4), name


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    GOLDEN.mkdir(exist_ok=True)
    if not TINY.exists():
        _make_tiny()
    with tempfile.TemporaryDirectory() as scratch:
        outputs = compute(Path(scratch))
    record = RECORD if _native_bf16() else RECORD_FP32  # the one this CPU is compared with
    record.write_text(json.dumps({"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                  "outputs": outputs}, indent=1) + "\n")
    print(f"wrote {record}")
