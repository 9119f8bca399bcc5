"""Wall-clock budgets for training and distillation, the compact training state, and GPU-slot options."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bsgd_cli.checkpoint import load_model
from bsgd_cli.config import PRESETS, StudentConfig, TrainConfig
from bsgd_cli.engine.model import BsgdModel
from bsgd_cli.events import Progress
from bsgd_cli.training.distill import DistillConfig, distill
from bsgd_cli.training.optim import FLOOR, WallClock, warmup_cosine, warmup_cosine_by_time
from bsgd_cli.training.train import Trainer, read_state, train
from bsgd_cli.training.train_state import compact_state, state_bytes

from .conftest import noisy_image, write_noisy_pngs

pytestmark = pytest.mark.slow  # training runs

TINY = dict(batch=2, patch=40, warmup=2, log_every=1, val_every=1000, checkpoint_every=1000, lr=1e-3, precision="fp32")


@pytest.fixture
def noisy_folder(tmp_path: Path) -> Path:
    return write_noisy_pngs(tmp_path / "captures", 3, 64)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_time_schedule_warms_up_by_steps_then_follows_the_clock() -> None:
    assert warmup_cosine_by_time(0, 0.5, peak=1.0, warmup=4) == pytest.approx(0.25)
    assert warmup_cosine_by_time(4, 0.0, peak=1.0, warmup=4) == pytest.approx(1.0)
    assert warmup_cosine_by_time(400, 0.5, peak=1.0, warmup=4) == pytest.approx(FLOOR + (1 - FLOOR) / 2)
    assert warmup_cosine_by_time(400, 1.0, peak=1.0, warmup=4) == pytest.approx(FLOOR)
    assert warmup_cosine_by_time(400, 3.0, peak=1.0, warmup=4) == pytest.approx(FLOOR)  # past the end: floor
    # the step schedule is the same curve over steps
    assert warmup_cosine(54, peak=1.0, warmup=4, total=104) == pytest.approx(
        warmup_cosine_by_time(54, 0.5, peak=1.0, warmup=4)
    )
    with pytest.raises(ValueError, match="positive"):
        WallClock.start(0)


def test_budget_ends_the_run_cleanly_with_the_rate_at_its_floor(
    noisy_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    clock = {"now": 1000.0}  # a fake clock: each training step takes one second
    monkeypatch.setattr("bsgd_cli.training.optim.time.monotonic", lambda: clock["now"])
    real_step = Trainer.train_step

    def timed_step(self: Trainer, lr: float | None = None) -> dict[str, float]:
        clock["now"] += 1.0
        return real_step(self, lr)

    monkeypatch.setattr(Trainer, "train_step", timed_step)
    events: list[Progress] = []
    out = tmp_path / "run"
    budget = WallClock.start(10.0)
    summary = train(noisy_folder, out, model_config=PRESETS["tiny"], config=TrainConfig(steps=10**6, **TINY),
                    device="cpu", budget=budget, callback=events.append)
    assert summary.steps == 10  # stopped after the step that used the budget up
    for name in ("model.safetensors", "best.safetensors", "state.pt"):
        assert (out / name).is_file()
    log = _log(out)
    rates = [event["lr"] for event in log]
    assert rates[:2] == pytest.approx([5e-4, 1e-3])  # warm-up by steps
    assert rates[2:] == pytest.approx([warmup_cosine_by_time(9, s / 10, peak=1e-3, warmup=2) for s in range(2, 10)])
    assert rates[-1] < 0.1e-3  # near the 5% floor when the time ran out
    assert log[-1]["budget_fraction"] == 1.0
    assert [event.done for event in events if event.kind == "checkpoint"] == [10]
    assert all("data_s" in event for event in log)


def test_steps_still_cap_a_budgeted_run(noisy_folder: Path, tmp_path: Path) -> None:
    summary = train(noisy_folder, tmp_path / "run", model_config=PRESETS["tiny"], config=TrainConfig(steps=3, **TINY),
                    device="cpu", budget=WallClock.start(600))
    assert summary.steps == 3


def test_compact_state_is_small_and_resumes_from_the_ema(noisy_folder: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    train(noisy_folder, first, model_config=PRESETS["tiny"], config=TrainConfig(steps=3, **TINY), device="cpu")
    full = read_state(first)
    compact = compact_state(full)
    assert "model" not in compact and compact["compact"] is True
    assert len(state_bytes(compact)) < len(state_bytes(full))
    moments = next(iter(compact["optimizer"]["state"].values()))
    assert moments["exp_avg"].dtype == torch.bfloat16 and moments["exp_avg_sq"].dtype == torch.bfloat16

    trainer = Trainer(
        noisy_folder,
        tmp_path / "again",
        model_config=PRESETS["tiny"],
        config=TrainConfig(steps=5, **TINY),
        device="cpu",
    )
    trainer.apply_state(compact)
    assert trainer.step == 3
    for name, tensor in trainer.model.state_dict().items():  # continues from the EMA weights, in float32
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, compact["ema"][name].float()), name
    loaded = next(iter(trainer.optimizer.state.values()))
    assert loaded["exp_avg_sq"].dtype == torch.float32

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "state.pt").write_bytes(state_bytes(compact))
    summary = train(noisy_folder, resumed, model_config=PRESETS["small"], config=TrainConfig(steps=5, **TINY),
                    device="cpu", resume=True)
    assert summary.steps == 5
    assert load_model(resumed / "model.safetensors").model.config == PRESETS["tiny"]  # the stored config won


def test_gpu_preset_compact_state_fits_one_returned_file() -> None:
    """The slot returns files of at most 16 MiB: the gpu preset's compact state must fit one, at ~6 B/parameter."""
    model = BsgdModel(PRESETS["gpu"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    weights = model.state_dict()
    full = {
        "model": weights,
        "ema": {k: v.clone() for k, v in weights.items()},
        "optimizer": optimizer.state_dict(),
        "step": 1,
    }
    parameters = sum(p.numel() for p in model.parameters())
    size = len(state_bytes(compact_state(full)))
    assert size < 6 * parameters + 200_000
    assert size < 0.4 * len(state_bytes(full))
    assert size < 16 * 2**20 - 2**20  # with a MiB to spare for its small entries


def test_resume_with_a_new_config_and_a_foreign_noise_generator(noisy_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(noisy_folder, run, model_config=PRESETS["tiny"], config=TrainConfig(steps=2, **TINY), device="cpu")
    state = read_state(run)
    state["torch_rng_device"] = "cuda"  # as saved on a GPU: a CPU generator cannot take it
    state["torch_rng"] = torch.zeros(16, dtype=torch.uint8)
    (run / "state.pt").write_bytes(state_bytes(state))
    new = TrainConfig(steps=4, **{**TINY, "batch": 4})
    summary = train(noisy_folder, run, model_config=PRESETS["tiny"], config=new, device="cpu", resume=True,
                    stored_config=False)
    assert summary.steps == 4
    info = load_model(run / "model.safetensors").info
    assert info["noise_reseeded_at_step"] == 2
    assert info["train_config"]["batch"] == 4  # the new settings were used, not the stored ones
    stored = TrainConfig(steps=6, **{**TINY, "batch": 8})
    train(noisy_folder, run, model_config=PRESETS["tiny"], config=stored, device="cpu", resume=True)
    assert load_model(run / "model.safetensors").info["train_config"]["batch"] == 4  # stored config kept


def test_channels_last_trains_the_same_model(noisy_folder: Path, tmp_path: Path) -> None:
    config = TrainConfig(steps=2, **TINY)
    train(noisy_folder, tmp_path / "a", model_config=PRESETS["tiny"], config=config, device="cpu")
    train(
        noisy_folder,
        tmp_path / "b",
        model_config=PRESETS["tiny"],
        config=replace(config, channels_last=True),
        device="cpu",
    )
    for a, b in zip(_log(tmp_path / "a"), _log(tmp_path / "b"), strict=True):
        assert b["loss_bsn"] == pytest.approx(a["loss_bsn"], rel=1e-4)
        assert b["loss_diffusion"] == pytest.approx(a["loss_diffusion"], rel=1e-4)
    load_model(tmp_path / "b" / "model.safetensors")  # saved in the ordinary layout


def test_distill_stops_at_its_budget(tmp_path: Path, tiny_model_file: Path) -> None:
    folder = tmp_path / "noisy"
    folder.mkdir()
    Image.fromarray((noisy_image(48, 48) * 255 + 0.5).astype(np.uint8)).save(folder / "0.png")
    config = DistillConfig(crops_per_image=2, crop=32, patch=32, steps=10**6, batch=2, log_every=5, precision="fp32")
    path = distill(load_model(tiny_model_file), folder, tmp_path / "out", student=StudentConfig(width=8, mults=(1, 1)),
                   config=config, device="cpu", budget=WallClock.start(1e-6))
    done = load_model(path).info["student"]["steps_done"]
    assert done == 1  # the budget was used up before the first step: one step, never none


def test_prefetched_batches_train_the_same_weights_and_resume_exactly(noisy_folder: Path, tmp_path: Path) -> None:
    def weights(run: Path) -> dict[str, torch.Tensor]:
        return load_model(run / "model.safetensors").model.state_dict()

    plain = TrainConfig(steps=6, **{**TINY, "checkpoint_every": 3})
    ahead = replace(plain, prefetch=2)
    train(noisy_folder, tmp_path / "plain", model_config=PRESETS["tiny"], config=plain, device="cpu")
    train(noisy_folder, tmp_path / "ahead", model_config=PRESETS["tiny"], config=ahead, device="cpu")
    # interrupted after 3 steps, with batches 4 and 5 already drawn, then resumed
    train(noisy_folder, tmp_path / "split", model_config=PRESETS["tiny"], config=replace(ahead, steps=3), device="cpu")
    train(noisy_folder, tmp_path / "split", model_config=PRESETS["tiny"], config=ahead, device="cpu", resume=True)
    reference = weights(tmp_path / "plain")
    for run in ("ahead", "split"):
        for name, tensor in weights(tmp_path / run).items():
            assert torch.equal(tensor, reference[name]), (run, name)


def test_a_failing_prefetch_thread_raises_in_the_trainer(noisy_folder: Path, tmp_path: Path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr("bsgd_cli.training.data.sample_patches", broken)
    with pytest.raises(OSError, match="disk gone"):
        train(
            noisy_folder,
            tmp_path / "run",
            model_config=PRESETS["tiny"],
            config=TrainConfig(steps=3, prefetch=1, **TINY),
            device="cpu",
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_resumes_its_compact_state_with_its_noise_generator(noisy_folder: Path, tmp_path: Path) -> None:
    """The slot's settings on a GPU: bf16, channels_last, prefetch, CUDA noise; resume keeps the generator."""
    config = TrainConfig(steps=3, **{**TINY, "precision": "bf16", "channels_last": True, "prefetch": 2})
    run = tmp_path / "run"
    train(noisy_folder, run, model_config=PRESETS["tiny"], config=config, device="cuda")
    state = read_state(run)
    assert state["torch_rng_device"] == "cuda"
    (run / "state.pt").write_bytes(state_bytes(compact_state(state)))
    train(noisy_folder, run, model_config=PRESETS["tiny"], config=replace(config, steps=5), device="cuda", resume=True)
    info = load_model(run / "model.safetensors").info
    assert info["steps_done"] == 5 and "noise_reseeded_at_step" not in info
