"""Distillation: the student is trained on the sampler's outputs and serves --mode fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bsgd_cli.checkpoint import load_model
from bsgd_cli.config import SamplerOverrides, StudentConfig
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.training.distill import DistillConfig, distill

from .conftest import CPU, noisy_image, write_noisy_pngs

pytestmark = pytest.mark.slow  # training runs


def test_distill_produces_fast_mode_model(tmp_path: Path, tiny_model_file: Path) -> None:
    folder = tmp_path / "noisy"
    folder.mkdir()
    for index in range(2):
        Image.fromarray((noisy_image(48, 48, index) * 255 + 0.5).astype(np.uint8)).save(folder / f"{index}.png")
    teacher = load_model(tiny_model_file)
    config = DistillConfig(
        crops_per_image=2, crop=32, patch=32, steps=30, batch=2, log_every=10, precision="fp32", warmup=5
    )
    path = distill(
        teacher, folder, tmp_path / "out", student=StudentConfig(width=8, mults=(1, 1)), config=config, device="cpu"
    )
    loaded = load_model(path)
    assert loaded.model.student is not None
    assert loaded.info["student"]["pairs"] == 4
    out = denoise_array(loaded, noisy_image(40, 40), sampler=SamplerOverrides(mode="fast"), runtime=CPU)
    assert out.shape == (40, 40, 3)
    # the teacher's branches are unchanged
    for name, tensor in teacher.model.state_dict().items():
        if not name.startswith("student."):
            assert np.array_equal(tensor.numpy(), loaded.model.state_dict()[name].numpy())
    losses = [line for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 3
    assert (tmp_path / "out" / "targets.npz").is_file()


def _noisy_folder(tmp_path: Path, count: int = 2, size: int = 64) -> Path:
    return write_noisy_pngs(tmp_path / "noisy", count, size)


def test_self_distillation_on_the_pipeline_lowers_the_student_loss(tmp_path: Path, tiny_model_file: Path) -> None:
    """The teacher is the whole pipeline (mode + Wiener step) on whole images; the student's L1 falls."""
    import json
    from dataclasses import replace

    folder = _noisy_folder(tmp_path)
    teacher = load_model(tiny_model_file)
    sampler = replace(teacher.sampler, mode="bsn", refine="wiener")  # the tiny student starts as the identity
    config = DistillConfig(
        patch=32, steps=80, batch=4, lr=3e-3, warmup=5, log_every=20, precision="fp32", photometric=False
    )
    path = distill(teacher, folder, tmp_path / "out", config=config, sampler=sampler, device="cpu")
    losses = [json.loads(line)["loss_student"] for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 4
    assert losses[-1] < 0.7 * losses[0], losses
    loaded = load_model(path)
    assert loaded.info["student"]["pairs"] == 2  # whole images, one pair each
    assert loaded.info["student"]["started_from"] == "the teacher's student"
    assert loaded.info["student"]["teacher_sampler"]["refine"] == "wiener"


def test_targets_are_reused_only_for_the_same_teacher_settings(tmp_path: Path, tiny_model_file: Path) -> None:
    from dataclasses import replace

    from bsgd_cli.training.distill import TARGETS_FILE

    folder = _noisy_folder(tmp_path, count=1)
    teacher = load_model(tiny_model_file)
    config = DistillConfig(patch=32, steps=2, batch=2, precision="fp32", init="fresh")
    out = tmp_path / "out"
    distill(teacher, folder, out, config=config, sampler=replace(teacher.sampler, mode="fast"), device="cpu")
    first = (out / TARGETS_FILE).stat().st_mtime_ns
    distill(teacher, folder, out, config=config, sampler=replace(teacher.sampler, mode="fast"), device="cpu")
    assert (out / TARGETS_FILE).stat().st_mtime_ns == first
    loaded = load_model(
        distill(teacher, folder, out, config=config, sampler=replace(teacher.sampler, mode="bsn"), device="cpu")
    )
    assert (out / TARGETS_FILE).stat().st_mtime_ns != first
    assert loaded.info["student"]["started_from"] == "random weights"


def test_a_second_student_trains_on_an_earlier_runs_targets(tmp_path: Path, tiny_model_file: Path) -> None:
    """--targets-from: no teacher run (no targets made, none written), and the file names the targets'
    own teacher and sampler, not the model the student was attached to."""
    import json
    from dataclasses import replace

    from bsgd_cli.events import Progress
    from bsgd_cli.training.distill import TARGETS_FILE

    folder = _noisy_folder(tmp_path, count=1)
    teacher = load_model(tiny_model_file)
    config = DistillConfig(patch=32, steps=2, batch=2, precision="fp32", init="fresh")
    first = tmp_path / "first"
    distill(teacher, folder, first, config=config, sampler=replace(teacher.sampler, mode="bsn"), device="cpu")
    events: list[Progress] = []
    second = distill(teacher, None, tmp_path / "second", student=StudentConfig(width=4, mults=(1, 1)),
                     config=config, device="cpu", callback=events.append, targets_from=first)
    assert not any(event.kind == "targets" for event in events)
    assert not (tmp_path / "second" / TARGETS_FILE).exists()
    loaded = load_model(second)
    assert loaded.model.config.student is not None and loaded.model.config.student.width == 4
    key = json.loads((first / "targets.json").read_text())
    assert loaded.info["student"]["teacher_sampler"]["mode"] == "bsn" == key["sampler"]["mode"]
    assert loaded.info["student"]["targets_from"] == str(first)
    assert loaded.info["student"]["pairs"] == 1


def test_pairs_share_their_augmentation() -> None:
    """Noisy patch and target get the same flip, darkening and channel order (a target = its noisy patch stays so)."""
    from bsgd_cli.training.distill import Pairs, sample_pairs

    image = (np.random.default_rng(0).random((40, 40, 3)) * 65535).astype(np.uint16)
    pairs = Pairs([image], [image.copy()])
    x, y = sample_pairs(pairs, np.random.default_rng(1), DistillConfig(patch=24, batch=16, photometric=True))
    assert torch_equal(x, y)


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_an_affine_student_starts_from_the_teachers_group_norm_student(tmp_path: Path, tiny_model_file: Path) -> None:
    """--norm affine: the teacher's GroupNorm student, statistics frozen on the training images, is
    fine-tuned (its loss falls); the file stores norm="affine" and serves --mode fast folded."""
    import json
    from dataclasses import replace

    folder = _noisy_folder(tmp_path)
    teacher = load_model(tiny_model_file)
    own = teacher.model.config.student
    assert own is not None and own.norm == "group"
    sampler = replace(teacher.sampler, mode="bsn", refine="wiener")
    config = DistillConfig(
        patch=32, steps=80, batch=4, lr=3e-3, warmup=5, log_every=20, precision="fp32", photometric=False
    )
    path = distill(teacher, folder, tmp_path / "out", student=replace(own, norm="affine"), config=config,
                   sampler=sampler, device="cpu")
    losses = [json.loads(line)["loss_student"] for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.7 * losses[0], losses
    loaded = load_model(path)
    assert loaded.model.config.student == replace(own, norm="affine")
    assert loaded.info["student"]["started_from"] == (
        "the teacher's student, GroupNorm statistics frozen on 2 training images"
    )
    out = denoise_array(loaded, noisy_image(40, 40), sampler=SamplerOverrides(mode="fast"), runtime=CPU)
    assert out.shape == (40, 40, 3) and np.isfinite(out).all()


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_resolved_and_recorded(tmp_path: Path, tiny_model_file: Path, monkeypatch,
                                                 native: bool) -> None:
    """DistillConfig's default precision, "auto", becomes bf16 or fp32 by the CPU (engine/runtime.py), in
    the file's record too; train_student called directly (as scripts do) resolves it the same way."""
    from dataclasses import replace

    from bsgd_cli.engine import runtime
    from bsgd_cli.training.distill import Pairs, _student_model, train_student

    monkeypatch.setattr(runtime, "_cpu_bf16", lambda: native)
    folder = _noisy_folder(tmp_path, count=1)
    teacher = load_model(tiny_model_file)
    config = DistillConfig(patch=32, steps=2, batch=2, init="fresh")
    path = distill(teacher, folder, tmp_path / "out", config=config, sampler=replace(teacher.sampler, mode="fast"),
                   device="cpu")
    assert load_model(path).info["student"]["distill_config"]["precision"] == ("bf16" if native else "fp32")
    image = np.zeros((40, 40, 3), dtype=np.uint16)
    model, _ = _student_model(teacher, teacher.model.config.student, "teacher", Pairs([image], [image]))
    assert train_student(model, Pairs([image], [image]), config, torch.device("cpu"), tmp_path / "log.jsonl")[0] == 2
