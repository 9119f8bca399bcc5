"""Distillation: the student is trained on the sampler's outputs and serves --mode fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bsgd_cli.checkpoint import load_model
from bsgd_cli.config import StudentConfig
from bsgd_cli.distill import DistillConfig, distill
from bsgd_cli.inference import denoise_array

from .conftest import noisy_image


def test_distill_produces_fast_mode_model(tmp_path: Path, tiny_model_file: Path) -> None:
    folder = tmp_path / "noisy"
    folder.mkdir()
    for index in range(2):
        Image.fromarray((noisy_image(48, 48, index) * 255 + 0.5).astype(np.uint8)).save(folder / f"{index}.png")
    teacher = load_model(tiny_model_file)
    config = DistillConfig(crops_per_image=2, crop=32, patch=32, steps=30, batch=2, log_every=10, precision="fp32", warmup=5)
    path = distill(teacher, folder, tmp_path / "out", student=StudentConfig(width=8, mults=(1, 1)), config=config, device="cpu")
    loaded = load_model(path)
    assert loaded.model.student is not None
    assert loaded.info["student"]["pairs"] == 4
    out = denoise_array(loaded, noisy_image(40, 40), mode="fast", device="cpu")
    assert out.shape == (40, 40, 3)
    # the teacher's branches are unchanged
    for name, tensor in teacher.model.state_dict().items():
        if not name.startswith("student."):
            assert np.array_equal(tensor.numpy(), loaded.model.state_dict()[name].numpy())
    losses = [line for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 3
    assert (tmp_path / "out" / "targets.npz").is_file()
