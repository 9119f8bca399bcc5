"""Training: runs on a tiny config, loss decreases on a fixed batch, resume is exact, bad folders are clear."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from bsgd_cli.checkpoint import load_model
from bsgd_cli.cli import app
from bsgd_cli.config import PRESETS, TrainConfig
from bsgd_cli.engine.model import BsgdModel
from bsgd_cli.errors import TrainingError
from bsgd_cli.training.losses import blind_spot_loss, diffusion_loss
from bsgd_cli.training.train import learning_rate, train

from .conftest import noisy_image

pytestmark = pytest.mark.slow  # training runs

TINY_TRAIN = dict(batch=2, patch=40, warmup=2, log_every=2, val_every=3, checkpoint_every=3, lr=1e-3, precision="fp32")


@pytest.fixture
def noisy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "captures"
    (folder / "day2").mkdir(parents=True)
    for index in range(4):
        image = (noisy_image(64, 72, seed=index) * 255 + 0.5).astype(np.uint8)
        Image.fromarray(image).save(folder / ("day2" if index % 2 else ".") / f"img{index}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path).model.state_dict()


def test_train_writes_loadable_model_and_log(noisy_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train(
        noisy_folder, out, model_config=PRESETS["tiny"], config=TrainConfig(steps=4, **TINY_TRAIN), device="cpu"
    )
    assert summary.steps == 4
    assert any("broken.png" in line for line in summary.skipped)
    for name in ("model.safetensors", "best.safetensors", "state.pt", "log.jsonl"):
        assert (out / name).is_file()
    loaded = load_model(out / "model.safetensors")
    assert loaded.info["steps_done"] == 4
    lines = (out / "log.jsonl").read_text().splitlines()
    assert len(lines) >= 2


def test_resume_equals_uninterrupted(noisy_folder: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    train(noisy_folder, straight, model_config=PRESETS["tiny"], config=TrainConfig(steps=6, **TINY_TRAIN), device="cpu")
    split = tmp_path / "split"
    train(noisy_folder, split, model_config=PRESETS["tiny"], config=TrainConfig(steps=3, **TINY_TRAIN), device="cpu")
    train(
        noisy_folder,
        split,
        model_config=PRESETS["tiny"],
        config=TrainConfig(steps=6, **TINY_TRAIN),
        device="cpu",
        resume=True,
    )
    a, b = _weights(straight / "model.safetensors"), _weights(split / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_loss_decreases_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = BsgdModel(PRESETS["tiny"])
    config = TrainConfig(patch=40, batch=2)
    noisy = torch.from_numpy(np.stack([noisy_image(40, 40, s).transpose(2, 0, 1) for s in range(2)])) * 2 - 1
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        generator = torch.Generator().manual_seed(123)  # same t and noise every step
        loss = blind_spot_loss(model, noisy, generator, config, 0.5) + diffusion_loss(model, noisy, generator, 0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.6 * history[0]


def test_learning_rate_schedule() -> None:
    config = TrainConfig(steps=100, warmup=10, lr=1e-3)
    assert learning_rate(0, config) == pytest.approx(1e-4)
    assert learning_rate(9, config) == pytest.approx(1e-3)
    assert learning_rate(100, config) == pytest.approx(5e-5)


def test_bad_folders_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="not a folder"):
        train(tmp_path / "missing", tmp_path / "o", model_config=PRESETS["tiny"], config=TrainConfig(**TINY_TRAIN))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(TrainingError, match="no usable training image"):
        train(empty, tmp_path / "o", model_config=PRESETS["tiny"], config=TrainConfig(**TINY_TRAIN))
    with pytest.raises(TrainingError, match="multiple of the PD stride"):
        train(empty, tmp_path / "o", model_config=PRESETS["tiny"], config=TrainConfig(**{**TINY_TRAIN, "patch": 42}))
    with pytest.raises(TrainingError, match="no training state"):
        train(empty, tmp_path / "fresh", model_config=PRESETS["tiny"], config=TrainConfig(**TINY_TRAIN), resume=True)


def test_cli_train_then_denoise_with_the_result(noisy_folder: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "--noisy-dir",
            str(noisy_folder),
            "-o",
            str(out),
            "--preset",
            "tiny",
            "--steps",
            "3",
            "--batch",
            "2",
            "--patch",
            "40",
            "--precision",
            "fp32",
            "--device",
            "cpu",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["denoise", str(noisy_folder / "img0.png"), "-o", str(tmp_path / "clean"),
                                 "--model", str(out / "model.safetensors"), "--mode", "bsn", "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "clean" / "img0.png").is_file()
    result = runner.invoke(app, ["plot", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "curves.png").is_file()


def test_val_pairs_reports_psnr(noisy_folder: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs"
    (pairs / "noisy").mkdir(parents=True)
    (pairs / "clean").mkdir()
    for index in range(2):
        clean = noisy_image(48, 48, seed=10 + index)
        Image.fromarray((clean * 255 + 0.5).astype(np.uint8)).save(pairs / "clean" / f"p{index}.png")
        Image.fromarray((clean * 255 + 0.5).astype(np.uint8)).save(pairs / "noisy" / f"p{index}.png")
    out = tmp_path / "run"
    summary = train(noisy_folder, out, model_config=PRESETS["tiny"], config=TrainConfig(steps=3, **TINY_TRAIN),
                    val_pairs=pairs, device="cpu")
    assert summary.best_metric == "val_psnr" and summary.best_value is not None and summary.best_value > 10
