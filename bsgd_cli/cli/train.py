"""``bsgd train``: both branches on a folder of noisy photos (:mod:`bsgd_cli.training.train`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import checks as bounds
from ..config import DOMAINS, PRESETS, RUNTIME_PRECISIONS, Domain, PresetName, RuntimePrecision, TrainedBranch
from . import options as opt
from ._support import Heartbeat, number, say, user_errors
from .progress import TrainDisplay, progress_bars


def train(
    noisy_dir: Annotated[Path, typer.Option(metavar="DIR", rich_help_panel=opt.DATA,
                                            help="Folder of noisy photos (any size, sRGB or RAW, searched "
                                            "recursively).")],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR", rich_help_panel=opt.OUTPUT,
                                         help="Run folder: model.safetensors, best.safetensors, state.pt, log.jsonl.")],
    preset: Annotated[PresetName, typer.Option(metavar="PRESET", rich_help_panel=opt.TRAINING,
                                               help="Network size: small (2 CPU cores), gpu (short GPU slots, "
                                               "docs/GPU.md), paper (large GPU runs), tiny (tests).")] = "small",
    steps: Annotated[int, typer.Option(parser=number(bounds.TRAIN_STEPS), metavar="N", rich_help_panel=opt.TRAINING,
                                       help="Total optimiser steps (on --resume: the new total).")] = 2000,
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
                                                        help=f"{opt.choices(RUNTIME_PRECISIONS)}; bf16 autocast is "
                                                        "much faster than fp32 on a CPU; auto: bf16.")] = "bf16",
    device: Annotated[str, typer.Option(metavar="NAME", rich_help_panel=opt.DEVICE,
                                        help="auto, cpu, cuda, cuda:N.")] = "auto",
    quiet: opt.Quiet = False,
) -> None:
    """Train on your own noisy captures: bsgd train --noisy-dir ./captures -o ./my_model"""
    from ..config import TrainConfig
    from ..engine.runtime import check_runtime
    from ..io.paths import check_output_folder
    from ..raw.domain import training_model_config
    from ..training.distributed import distributed_context
    from ..training.train import train as run_training

    with user_errors("the training state was saved; continue with the same command and --resume"):
        train_precision = "bf16" if precision == "auto" else precision
        check_runtime(device, train_precision)
        check_output_folder(output)
        config = TrainConfig(steps=steps, batch=batch, patch=patch, lr=lr, branch=branch, precision=train_precision,
                             seed=seed, val_every=val_every, checkpoint_every=checkpoint_every, log_every=log_every)
        model_config = training_model_config(PRESETS[preset], domain, pd_train=pd_train, pd_infer=pd_infer)
        with distributed_context(device) as dist_info, progress_bars(quiet or not dist_info.is_main) as bars:
            display = TrainDisplay(bars, Heartbeat(quiet), steps, dist_info.is_main)
            summary = run_training(noisy_dir, output, model_config=model_config, config=config, resume=resume,
                                   val_pairs=val_pairs, device=dist_info.device, callback=display,
                                   info={"preset": preset, "noisy_dir": str(noisy_dir)})
        if dist_info.is_main:
            for line in summary.skipped:
                say("skipped", line, "yellow")
            best = "n/a"
            if summary.best_value is not None:
                best = f"{summary.best_value:.4f} ({summary.best_metric}) at step {summary.best_step}"
            say("", f"trained {summary.steps} steps in {summary.seconds / 60:.1f} min; best {best}")
            say("", f"model: {output / 'model.safetensors'}   best: {output / 'best.safetensors'}")
