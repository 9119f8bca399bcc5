from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bsgd_cli.engine.runtime import resolve_runtime

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CPU = resolve_runtime("cpu")
"""The runtime of every test that runs a model: the CPU, precision auto."""


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(autouse=True)
def _own_model_folder(tmp_path_factory, monkeypatch):
    """Models that commands install (bsgd train, --adapt) go to a temporary folder, never the user's."""
    monkeypatch.setenv("BSGD_MODEL_DIR", str(tmp_path_factory.mktemp("user-models")))
    yield


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory) -> Path:
    """A tiny untrained model with a student, saved the real way."""
    from bsgd_cli.checkpoint import save_model
    from bsgd_cli.config import PRESETS, StudentConfig
    from bsgd_cli.engine.model import BsgdModel

    torch.manual_seed(0)
    model = BsgdModel(PRESETS["tiny"])
    model.add_student(StudentConfig(width=8, mults=(1, 1)))
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_model(path, model, info={"note": "test model"})
    return path


@pytest.fixture(scope="session")
def tiny(tiny_model_file: Path):
    """The tiny model, loaded once for the session (tests must not change it)."""
    from bsgd_cli.checkpoint import load_model

    return load_model(tiny_model_file)


@pytest.fixture(scope="session")
def default_model():
    """The embedded default model, loaded once for the session."""
    from bsgd_cli.checkpoint import load_model

    return load_model()


def write_noisy_pngs(folder: Path, count: int, size: int) -> Path:
    """``count`` 8-bit PNGs ``0.png`` ... of :func:`noisy_image` (size x size, seeds 0, 1 ...) in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray((noisy_image(size, size, index) * 255 + 0.5).astype(np.uint8)).save(folder / f"{index}.png")
    return folder


def noisy_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour image plus Gaussian noise, float32 HxWx3 in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    clean = np.stack(
        [0.5 + 0.3 * np.sin(xx / 9.0), 0.5 + 0.3 * np.cos(yy / 7.0), 0.5 + 0.2 * np.sin((xx + yy) / 11.0)], axis=-1
    )
    return np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
