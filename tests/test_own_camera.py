"""Own-camera training (issue 19): --init, a time budget for the whole command, a ready model, --adapt."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bsgd_cli.checkpoint import load_model
from bsgd_cli.cli import app
from bsgd_cli.config import PRESETS, TrainConfig
from bsgd_cli.errors import TrainingError
from bsgd_cli.training.distill import DistillConfig
from bsgd_cli.training.ready import ReadyPlan, train_ready
from bsgd_cli.training.train import init_config

from .conftest import write_noisy_pngs

TINY_TRAIN = TrainConfig(steps=3, batch=2, patch=40, lr=1e-3, warmup=1, log_every=1, val_every=1000,
                         checkpoint_every=1000, precision="fp32")
TINY_PLAN = ReadyPlan(distill_config=DistillConfig(patch=32, steps=2, batch=2, warmup=1, log_every=1,
                                                   precision="fp32"))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in load_model(path).model.state_dict().items()}


def test_init_starts_from_the_model_and_ends_with_a_ready_student(tmp_path: Path, tiny, tiny_model_file: Path) -> None:
    """The run starts from every weight of the --init model (student too), keeps its stored sampler, and
    ends with the student distilled from the trained model into model.safetensors."""
    folder = write_noisy_pngs(tmp_path / "captures", 2, 64)
    config = init_config(tiny, "srgb")
    assert config == tiny.model.config
    zero_steps = replace(TINY_TRAIN, lr=1e-12)
    ready = train_ready(folder, tmp_path / "run", model_config=config, config=zero_steps, plan=TINY_PLAN, init=tiny,
                        device="cpu")
    assert ready.distilled and ready.model == tmp_path / "run" / "model.safetensors"
    before, branches = _weights(tiny_model_file), _weights(tmp_path / "run" / "branches.safetensors")
    for name, value in before.items():  # a learning rate of 1e-12 leaves the --init weights in place
        assert torch.allclose(branches[name], value, atol=1e-6), name
    final = load_model(ready.model)
    # the stored sampler is kept, but for the Wiener noise scale chosen on the captures (no val pairs)
    chosen = final.info["wiener_choice"]
    assert ready.wiener is not None and chosen["noise_scale"] == ready.wiener.noise_scale
    assert chosen["previous"] == tiny.sampler.wiener.noise_scale and chosen["images"] == 2
    wiener = replace(tiny.sampler.wiener, noise_scale=chosen["noise_scale"])
    assert final.sampler == replace(tiny.sampler, wiener=wiener)
    assert final.info["student"]["started_from"] == "the teacher's student"
    changed = [name for name, value in final.model.state_dict().items() if name.startswith("student.")
               and not torch.equal(value, before[name])]
    assert changed, "the student was not distilled"


def test_init_refuses_another_domain(tiny) -> None:
    with pytest.raises(TrainingError, match="cannot start a raw run"):
        init_config(tiny, "raw")


def test_the_whole_command_keeps_its_time_budget(tmp_path: Path) -> None:
    """Training and distillation share one budget: the command ends close to it, however many steps
    it could otherwise take."""
    folder = write_noisy_pngs(tmp_path / "captures", 2, 64)
    unbounded = replace(TINY_TRAIN, steps=10_000_000)
    plan = replace(TINY_PLAN, distill_config=replace(TINY_PLAN.distill_config, steps=10_000_000), rounds=2,
                   choose_wiener=False)  # its reserve: the next test
    started = time.monotonic()
    ready = train_ready(folder, tmp_path / "run", model_config=PRESETS["tiny"], config=unbounded, plan=plan,
                        minutes=0.15, device="cpu")
    elapsed = time.monotonic() - started
    assert 0.15 * 60 <= elapsed < 0.15 * 60 + 15
    assert ready.rounds == 2 and (tmp_path / "run" / "distill-2" / "log.jsonl").is_file()


def test_the_budget_sets_time_aside_for_the_strength_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Wiener strength choice runs after distillation; its time comes out of the budget, so a
    choice that takes all the time set aside for it still ends the command near the budget (without
    the reserve it would end about 8 s after it)."""
    import bsgd_cli.training.ready as ready

    monkeypatch.setattr(ready, "CHOICE_SECONDS_PER_IMAGE", 4.0)
    real = ready.choose_wiener

    def slow_choice(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(2 * ready.CHOICE_SECONDS_PER_IMAGE)  # two captures
        return real(*args, **kwargs)

    monkeypatch.setattr(ready, "choose_wiener", slow_choice)
    folder = write_noisy_pngs(tmp_path / "captures", 2, 64)
    plan = replace(TINY_PLAN, distill_config=replace(TINY_PLAN.distill_config, steps=10_000_000))
    started = time.monotonic()
    summary = train_ready(folder, tmp_path / "run", model_config=PRESETS["tiny"],
                          config=replace(TINY_TRAIN, steps=10_000_000), plan=plan, minutes=0.25, device="cpu")
    elapsed = time.monotonic() - started
    assert summary.wiener is not None
    assert 0.25 * 60 - 1 <= elapsed < 0.25 * 60 + 5


def test_cli_train_init_prints_the_denoise_command_and_lists_the_model(tmp_path: Path, tiny_model_file: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BSGD_MODEL_DIR", str(tmp_path / "models"))
    folder = write_noisy_pngs(tmp_path / "captures", 2, 64)
    result = CliRunner().invoke(app, ["train", "--noisy-dir", str(folder), "-o", str(tmp_path / "mycam"), "--init",
                                      str(tiny_model_file), "--minutes", "0.1", "--patch", "40", "--batch", "2",
                                      "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert "bsgd denoise PHOTOS -o OUT --model mycam" in result.output
    assert (tmp_path / "models" / "mycam.safetensors").is_file()
    listed = CliRunner().invoke(app, ["models"])
    assert "mycam" in listed.output
    both = CliRunner().invoke(app, ["train", "--noisy-dir", str(folder), "-o", str(tmp_path / "x"), "--init",
                                    str(tiny_model_file), "--preset", "tiny"])
    assert both.exit_code == 2 and "--preset and --init" in both.output


def test_adapt_saves_the_camera_model_and_refines_it_next_time(tmp_path: Path, tiny_model_file: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import bsgd_cli.training.adapt as adapt_module

    monkeypatch.setenv("BSGD_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(adapt_module, "SRGB_TRAINING", replace(adapt_module.SRGB_TRAINING, patch=40, batch=2))
    monkeypatch.setattr(adapt_module, "SRGB_PLAN", TINY_PLAN)
    folder = write_noisy_pngs(tmp_path / "photos", 2, 64)
    first = CliRunner().invoke(app, ["denoise", str(folder), "-o", str(tmp_path / "out"), "--model",
                                     str(tiny_model_file), "--adapt", "0.1", "--device", "cpu"])
    assert first.exit_code == 0, first.output
    saved = tmp_path / "models" / "adapted-unknown-camera.safetensors"
    assert saved.is_file() and "saved as adapted-unknown-camera" in first.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png"]
    adapted = load_model(saved)
    assert adapted.info["adapted_to"] == "unknown camera" and adapted.info["images"] == 2
    again = CliRunner().invoke(app, ["denoise", str(folder), "-o", str(tmp_path / "out2"), "--model",
                                     str(tiny_model_file), "--adapt", "0.1", "--device", "cpu"])
    assert "from adapted-unknown-camera (earlier adaptation)" in again.output


def test_adapted_names_come_from_the_camera() -> None:
    from bsgd_cli.training.adapt import adapted_name

    assert adapted_name("Canon EOS Kiss X4", "srgb") == "adapted-Canon-EOS-Kiss-X4"
    assert adapted_name(None, "raw") == "adapted-unknown-camera-raw"
    assert "/" not in adapted_name("../../etc", "srgb") and "/" not in adapted_name("a/b", "srgb")



def test_model_names_are_safe_file_names() -> None:
    from bsgd_cli.training.adapt import adapted_name
    from bsgd_cli.training.ready import safe_name

    named = adapted_name("Nikon DSC_1339 crop (mushfiqulalam/isp)", "raw")
    assert named == "adapted-Nikon-DSC_1339-crop-mushfiqulalam-isp-raw"
    assert adapted_name(None, "srgb") == "adapted-unknown-camera"
    assert safe_name("../..") == "model" and safe_name("a -- b") == "a-b"


def test_adapt_names_the_model_after_the_most_common_camera(tmp_path: Path) -> None:
    """A folder that mixes cameras: the model is named after the one with most photos, the rest are listed."""
    from PIL import Image

    from bsgd_cli.io import camera_name
    from bsgd_cli.training.adapt import _image_folder

    photos = tmp_path / "photos"
    photos.mkdir()
    for index, (make, model) in enumerate([("Canon", "EOS R5"), ("Nikon", "Z 6"), ("Canon", "EOS R5")]):
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = make, model  # Make, Model
        Image.new("RGB", (40, 40), (index * 60, 90, 120)).save(photos / f"p{index}.jpg", exif=exif)
    if camera_name(photos / "p0.jpg") is None:
        pytest.skip("exiv2 cannot read the EXIF here")
    links = tmp_path / "links"
    links.mkdir()
    count, cameras = _image_folder([photos], False, links)
    assert count == 3 and cameras == ["Canon EOS R5", "Nikon Z 6"]
    assert len(list(links.iterdir())) == 3


def test_a_raw_run_that_would_distil_is_refused_before_training(tmp_path: Path) -> None:
    from bsgd_cli.config import PRESETS, TrainConfig
    from bsgd_cli.errors import ConfigError
    from bsgd_cli.raw.domain import training_model_config
    from bsgd_cli.training.ready import ReadyPlan, train_ready

    with pytest.raises(ConfigError, match="sRGB photos only"):
        train_ready(tmp_path, tmp_path / "run", model_config=training_model_config(PRESETS["tiny"], "raw"),
                    config=TrainConfig(steps=1), plan=ReadyPlan(distill=True), device="cpu")
    assert not (tmp_path / "run").exists()


def test_the_strength_chosen_on_captures_replaces_every_modes_stored_scale(tmp_path: Path, tiny) -> None:
    """A starting model's per-mode Wiener scales were chosen for its own branches: the choice made on the
    captures (for the student's pilot) becomes the one scale of every mode."""
    from bsgd_cli.checkpoint import save_model
    from bsgd_cli.config import WienerConfig
    from bsgd_cli.training.ready import choose_wiener

    folder = write_noisy_pngs(tmp_path / "captures", 2, 64)
    path = tmp_path / "start.safetensors"
    stored = WienerConfig(noise_scale=3.0, mode_noise_scale={"fast": 5.0, "bsn": 12.0})
    save_model(path, tiny.model, sampler=replace(tiny.sampler, refine="wiener", wiener=stored), info={})
    choice = choose_wiener(path, folder, device="cpu")
    assert choice is not None
    wiener = load_model(path).sampler.wiener
    assert wiener.mode_noise_scale == {} and wiener.noise_scale == choice.noise_scale
    assert load_model(path).info["wiener_choice"]["previous"] == 5.0  # the student's own stored scale
