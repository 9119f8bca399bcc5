"""``bsgd distill``: the fast student from a teacher pipeline (:mod:`bsgd_cli.training.distill`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from .. import checks as bounds
from ..config import (
    MODES,
    RUNTIME_PRECISIONS,
    STUDENT_NORMS,
    Mode,
    RuntimePrecision,
    StudentConfig,
    StudentInit,
    StudentNorm,
)
from . import options as opt
from ._support import Heartbeat, number, say, user_errors
from .progress import DistillDisplay, progress_bars


def distill(
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR", rich_help_panel=opt.OUTPUT,
                                         help="Folder for targets.npz, log.jsonl and model.safetensors.")],
    noisy_dir: Annotated[Path | None, typer.Option(metavar="DIR", rich_help_panel=opt.DATA, show_default=False,
                                                   help="The noisy training photos the teacher runs on (the "
                                                   "teacher's own, or any); not with --targets-from.")] = None,
    model: Annotated[str | None, typer.Option(metavar="FILE", rich_help_panel=opt.DATA,
                                              help="Teacher model file or name; the embedded default when "
                                              "omitted.")] = None,
    teacher_mode: Annotated[Mode | None, typer.Option(metavar="MODE", rich_help_panel=opt.SAMPLER, show_default=False,
                                                      help=f"The teacher's mode, {opt.choices(MODES)} (default: the "
                                                      "model's stored one).")] = None,
    teacher_wiener: Annotated[bool | None, typer.Option("--teacher-wiener/--no-teacher-wiener", metavar=opt.FLAG,
                                                        show_default=False,
                                                        rich_help_panel=opt.SAMPLER,
                                                        help="The Wiener step in the teacher (default: the "
                                                        "model's).")] = None,
    targets_from: Annotated[Path | None, typer.Option(metavar="DIR", rich_help_panel=opt.DATA,
                                                      help="Train on the teacher outputs an earlier bsgd distill -o "
                                                      "DIR made instead of running the teacher (--model then "
                                                      "gives the branches and the student to start from).")] = None,
    crop: Annotated[int | None, typer.Option(parser=number(bounds.CROP), metavar="PX", rich_help_panel=opt.DATA,
                                             help="Run the teacher on random crops of this side, 32 to 4096 "
                                             "(default: whole images).")] = None,
    crops_per_image: Annotated[int, typer.Option(parser=number(bounds.CROPS_PER_IMAGE), metavar="N",
                                                 rich_help_panel=opt.DATA,
                                                 help="Teacher crops per training image, with --crop.")] = 2,
    steps: Annotated[int, typer.Option(parser=number(bounds.TRAIN_STEPS), metavar="N", rich_help_panel=opt.TRAINING,
                                       help="Student training steps (the schedule's length).")] = 2000,
    minutes: Annotated[float | None, typer.Option(parser=number(bounds.MINUTES), metavar="MIN",
                                                  rich_help_panel=opt.TRAINING,
                                                  help="Stop the student's training this many minutes after the "
                                                  "command starts (teacher outputs included).")] = None,
    width: Annotated[int | None, typer.Option(parser=number(bounds.STUDENT_WIDTH), metavar="N",
                                              rich_help_panel=opt.TRAINING,
                                              help="Student width, 4 to 512 (default: the teacher's student's, "
                                              "else 32).")] = None,
    norm: Annotated[StudentNorm | None, typer.Option(metavar="KIND", rich_help_panel=opt.TRAINING, show_default=False,
                                                     help=f"Student normalisation, {opt.choices(STUDENT_NORMS)} "
                                                     "(default: the teacher's student's, else group). affine: a "
                                                     "learnt scale and shift folded into the convolutions, a "
                                                     "faster student on a CPU; mixed: affine at full resolution "
                                                     "only (the default model's). A group teacher student starts "
                                                     "either with its statistics frozen.")] = None,
    init: Annotated[StudentInit, typer.Option(metavar="FROM", rich_help_panel=opt.TRAINING,
                                              help="teacher: fine-tune the teacher's student; fresh: random "
                                              "weights.")] = "teacher",
    lr: Annotated[float, typer.Option(parser=number(bounds.LEARNING_RATE), metavar="RATE", rich_help_panel=opt.TRAINING,
                                      help="Peak learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(parser=number(bounds.SEED), metavar="N", rich_help_panel=opt.TRAINING,
                                      help="Seed for the teacher's crops, the patches and the student's noise.")] = 0,
    device: opt.Device = "auto",
    precision: Annotated[RuntimePrecision, typer.Option(metavar="NAME", rich_help_panel=opt.DEVICE,
                                                        help=f"Student training precision, "
                                                        f"{opt.choices(RUNTIME_PRECISIONS)}; auto: bf16 where the "
                                                        "device computes it natively, else fp32.")] = "auto",
    quiet: opt.Quiet = False,
) -> None:
    """Distil a teacher pipeline (default: the model's own, Wiener step included) into the fast student."""
    from ..checkpoint import load_model
    from ..config import SamplerOverrides
    from ..engine.runtime import check_runtime, training_precision
    from ..io.paths import check_output_folder
    from ..training.distill import DistillConfig, check_sources
    from ..training.distill import distill as run_distill
    from ..training.optim import WallClock

    remedy = "the student was not saved; rerun the same command (finished teacher outputs in targets.npz are reused)"
    with user_errors(remedy):
        check_sources(noisy_dir, targets_from)  # before the model is loaded
        student_precision = training_precision(precision, check_runtime(device, precision))
        check_output_folder(output)
        teacher = load_model(model)
        sampler = SamplerOverrides(mode=teacher_mode, refine=opt.refine(teacher_wiener)).apply(teacher.sampler)
        config = DistillConfig(steps=steps, crops_per_image=crops_per_image, crop=crop, seed=seed,
                               precision=student_precision, patch=min(96, crop or 96), lr=lr, init=init)
        student = _student_config(teacher.model.config.student or StudentConfig(), width, norm)
        with progress_bars(quiet) as bars:
            display = DistillDisplay(bars, Heartbeat(quiet), steps)
            budget = None if minutes is None else WallClock.start(60.0 * minutes)
            path = run_distill(teacher, noisy_dir, output, student=student, config=config, sampler=sampler,
                               device=device, callback=display, budget=budget, targets_from=targets_from)
    say("", f"model with student: {path} (use --mode fast)")


def _student_config(base: StudentConfig, width: int | None, norm: StudentNorm | None) -> StudentConfig | None:
    """The teacher's student's config (``base``) with the width and norm asked for; None if neither was."""
    if width is None and norm is None:
        return None
    return replace(base, width=base.width if width is None else width, norm=base.norm if norm is None else norm)
