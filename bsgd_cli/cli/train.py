"""``bsgd train``: both branches on a folder of noisy photos (:mod:`bsgd_cli.training.train`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import checks as bounds
from ..config import (
    DOMAINS,
    PRESETS,
    RUNTIME_PRECISIONS,
    UNCAPPED_STEPS,
    Domain,
    PresetName,
    RuntimePrecision,
    TrainedBranch,
)
from . import options as opt
from ._support import Heartbeat, number, say, user_errors
from .progress import ReadyDisplay, progress_bars


def train(
    noisy_dir: Annotated[Path, typer.Option(metavar="DIR", rich_help_panel=opt.DATA,
                                            help="Folder of noisy photos (any size, sRGB or RAW, searched "
                                            "recursively).")],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR", rich_help_panel=opt.OUTPUT,
                                         help="Run folder: model.safetensors, best.safetensors, state.pt, log.jsonl.")],
    preset: Annotated[PresetName | None, typer.Option(metavar="PRESET", rich_help_panel=opt.TRAINING,
                                                      help="Network size: small (2 CPU cores; the default), gpu "
                                                      "(short GPU slots, docs/GPU.md), paper (large GPU runs), tiny "
                                                      "(tests). Not with --init.")] = None,
    init: Annotated[str | None, typer.Option(metavar="MODEL", rich_help_panel=opt.TRAINING,
                                             help="Start from this model's weights and settings (default, a name "
                                             "from bsgd models, or a file): minutes instead of hours.")] = None,
    minutes: Annotated[float | None, typer.Option(parser=number(bounds.MINUTES), metavar="M",
                                                  rich_help_panel=opt.TRAINING,
                                                  help="Wall-clock budget for the whole command (training, then "
                                                  "distillation); the schedule fits it; --steps then caps it.")]
    = None,
    distill: Annotated[bool | None, typer.Option("--distill/--no-distill", rich_help_panel=opt.TRAINING,
                                                 help="End by distilling the fast student from the trained "
                                                 "model's own pipeline, so model.safetensors is ready to use "
                                                 "(default: on for sRGB, off for RAW).")] = None,
    teacher_mode: opt.TeacherMode = None,
    distill_steps: Annotated[int | None, typer.Option(parser=number(bounds.TRAIN_STEPS), metavar="N",
                                                      rich_help_panel=opt.TRAINING,
                                                      help="Student steps per distillation round (default: as many "
                                                      "as --steps, or no cap with --minutes).")] = None,
    rounds: Annotated[int, typer.Option(parser=number(bounds.ROUNDS), metavar="N", rich_help_panel=opt.TRAINING,
                                        help="Distillation rounds, each taught by the previous one's model.")] = 1,
    train_share: Annotated[float, typer.Option(parser=number(bounds.SHARE), metavar="F", rich_help_panel=opt.TRAINING,
                                               help="Share of --minutes for the branches; the rest distils.")] = 0.5,
    steps: Annotated[int | None, typer.Option(parser=number(bounds.TRAIN_STEPS), metavar="N",
                                              rich_help_panel=opt.TRAINING,
                                              help="Total optimiser steps (on --resume: the new total). Default "
                                              "2000, or no cap with --minutes.")] = None,
    batch: Annotated[int, typer.Option(parser=number(bounds.TRAIN_BATCH), metavar="N", rich_help_panel=opt.TRAINING,
                                       help="Patches per step.")] = 8,
    patch: Annotated[int, typer.Option(parser=number(bounds.PATCH), metavar="PX", rich_help_panel=opt.TRAINING,
                                       help="Patch side, a multiple of the PD stride (5).")] = 120,
    lr: Annotated[float, typer.Option(parser=number(bounds.LEARNING_RATE), metavar="RATE", rich_help_panel=opt.TRAINING,
                                      help="Peak AdamW learning rate, above 0 and at most 1.")] = 3e-4,
    branch: Annotated[TrainedBranch, typer.Option(metavar="BRANCH", rich_help_panel=opt.TRAINING,
                                                  help="both branches, or only the bsn (blind-spot) or the "
                                                  "diffusion one.")] = "both",
    seed: Annotated[int, typer.Option(parser=number(bounds.SEED), metavar="N", rich_help_panel=opt.TRAINING,
                                      help="Seed for weights, patches and noise.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", metavar=opt.FLAG, rich_help_panel=opt.TRAINING,
                                         help="Continue the run in --output from its state.pt.")] = False,
    domain: Annotated[Domain, typer.Option(metavar="DOMAIN", rich_help_panel=opt.DATA,
                                           help=f"{opt.choices(DOMAINS)}; raw: train on the Bayer mosaic of RAW "
                                           "files (4 packed planes; --patch in half-size pixels).")] = "srgb",
    pd_train: Annotated[int | None, typer.Option(parser=number(bounds.PD_STRIDE), metavar="N",
                                                 rich_help_panel=opt.DATA,
                                                 help="PD stride while training (default: 5 for srgb, 1 for "
                                                 "raw).")] = None,
    pd_infer: Annotated[int | None, typer.Option(parser=number(bounds.PD_STRIDE), metavar="N",
                                                 rich_help_panel=opt.DATA,
                                                 help="PD stride when denoising (default: 2 for srgb, 1 for "
                                                 "raw).")] = None,
    val_pairs: Annotated[Path | None, typer.Option(metavar="DIR", rich_help_panel=opt.DATA,
                                                   help="Noisy/clean pairs: report PSNR (bsn mode) and keep the best "
                                                   "checkpoint by it.")] = None,
    val_every: Annotated[int, typer.Option(parser=number(bounds.EVERY), metavar="N", rich_help_panel=opt.OUTPUT,
                                           help="Validate every N steps.")] = 250,
    checkpoint_every: Annotated[int, typer.Option(parser=number(bounds.EVERY), metavar="N", rich_help_panel=opt.OUTPUT,
                                                  help="Save state.pt every N steps.")] = 500,
    log_every: Annotated[int, typer.Option(parser=number(bounds.EVERY), metavar="N", rich_help_panel=opt.OUTPUT,
                                           help="Log every N steps.")] = 25,
    precision: Annotated[RuntimePrecision, typer.Option(metavar="NAME", rich_help_panel=opt.DEVICE,
                                                        help=f"{opt.choices(RUNTIME_PRECISIONS)}; auto: bf16 where the "
                                                        "device computes it natively (much faster than fp32 on a "
                                                        "CPU with AVX512), else fp32.")] = "auto",
    device: Annotated[str, typer.Option(metavar="NAME", rich_help_panel=opt.DEVICE,
                                        help="auto, cpu, cuda, cuda:N.")] = "auto",
    quiet: opt.Quiet = False,
) -> None:
    """Train on your own noisy captures: bsgd train --noisy-dir ./captures -o ./my_model --init default --minutes 15"""
    from ..checkpoint import load_model
    from ..config import TrainConfig
    from ..engine.runtime import check_runtime, training_precision
    from ..io.paths import check_output_folder
    from ..raw.domain import training_model_config
    from ..training.distributed import distributed_context
    from ..training.ready import ReadyPlan, install_user_model, train_ready
    from ..training.train import init_config

    with user_errors("the training state was saved; continue with the same command and --resume"):
        train_precision = training_precision(precision, check_runtime(device, precision))
        check_output_folder(output)
        if init is not None and preset is not None:
            raise typer.BadParameter("--preset and --init both set the network size; give one")
        total = steps if steps is not None else (UNCAPPED_STEPS if minutes is not None else 2000)
        config = TrainConfig(steps=total, batch=batch, patch=patch, lr=lr, branch=branch, precision=train_precision,
                             seed=seed, val_every=val_every, checkpoint_every=checkpoint_every, log_every=log_every)
        start = load_model(init) if init is not None and not resume else None
        if start is not None:
            model_config = init_config(start, domain, pd_train=pd_train, pd_infer=pd_infer)
        else:
            base = PRESETS[preset or "small"]
            model_config = training_model_config(base, domain, pd_train=pd_train, pd_infer=pd_infer)
        if distill and domain != "srgb":
            raise typer.BadParameter("the student is distilled on sRGB photos only; drop --distill for RAW")
        plan = ReadyPlan(distill=domain == "srgb" if distill is None else distill, teacher_mode=teacher_mode,
                         rounds=rounds, train_share=train_share,
                         distill_config=replace(ReadyPlan.distill_config, steps=distill_steps or total))
        info: dict[str, Any] = {"preset": preset or ("init" if start else "small"), "noisy_dir": str(noisy_dir)}
        if start is not None:
            info["init"] = {"path": str(start.path), "sha256": start.sha256}
        with distributed_context(device) as dist_info, progress_bars(quiet or not dist_info.is_main) as bars:
            display = ReadyDisplay(bars, Heartbeat(quiet), total if steps is not None or minutes is None else None,
                                   dist_info.is_main, minutes)
            ready = train_ready(noisy_dir, output, model_config=model_config, config=config, plan=plan,
                                minutes=minutes, init=start, resume=resume, val_pairs=val_pairs,
                                device=dist_info.device, callback=display, info=info)
        if dist_info.is_main:
            summary = ready.training
            for line in summary.skipped:
                say("skipped", line, "yellow")
            best = ""
            if summary.best_value is not None:
                best = f"; best {summary.best_value:.4f} ({summary.best_metric}) at step {summary.best_step}"
            say("", f"trained {summary.steps} steps in {summary.seconds / 60:.1f} min{best}")
            if ready.wiener is not None:
                say("", f"Wiener strength: noise scale {ready.wiener.noise_scale:g}, chosen on "
                        f"{ready.wiener.images} of your captures (no clean references needed)")
            name = install_user_model(ready.model, output.resolve().name) if ready.distilled else None
            listed = f" (also in bsgd models as {name})" if name else ""
            say("", f"model: {ready.model}{listed}")
            say("", f"use it: bsgd denoise PHOTOS -o OUT --model {name or ready.model}")
