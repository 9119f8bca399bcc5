"""``bsgd benchmark``: PSNR/SSIM on a data set, or speed on a generated image (:mod:`bsgd_cli.benchmark`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import checks as bounds
from ..config import DATASET_KINDS, MODES, DatasetKind
from . import options as opt
from ._support import Heartbeat, number, out, plain, say, user_errors
from .progress import BenchmarkDisplay, progress_bars


def benchmark(
    dataset: Annotated[DatasetKind | None, typer.Option(metavar="KIND", rich_help_panel=opt.DATA, show_default=False,
                                                        help=f"The data set's layout: {opt.choices(DATASET_KINDS)} "
                                                        "(README, bsgd benchmark).")] = None,
    root: Annotated[Path | None, typer.Option(metavar="PATH", rich_help_panel=opt.DATA,
                                              help="The data set's folder or .mat file.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, metavar="N", rich_help_panel=opt.DATA,
                                              help="Only the first N images.")] = None,
    methods: Annotated[str, typer.Option(metavar="LIST", rich_help_panel=opt.DATA,
                                         help=f"Comma list of noisy, nlm, bm3d (classical) and the modes "
                                         f"{opt.choices(MODES)}.")] = "noisy,nlm,bsn,bsgd",
    speed: Annotated[bool, typer.Option("--speed", metavar=opt.FLAG, rich_help_panel=opt.DATA,
                                        help="Time the methods on a generated image instead (MP/s, peak "
                                        "memory).")] = False,
    megapixels: Annotated[float, typer.Option(parser=number(bounds.MEGAPIXELS), metavar="MP", rich_help_panel=opt.DATA,
                                              help="Size of the generated image for --speed.")] = 1.0,
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR", rich_help_panel=opt.OUTPUT,
                                         help="Where results.json and the reports go.")] = Path("bench-out"),
    out_alias: Annotated[Path | None, typer.Option("--out", hidden=True, help="Old name of --output.")] = None,
    model: opt.ModelName = None,
    steps: opt.Steps = None,
    guidance: opt.Guidance = None,
    runs: opt.Runs = None,
    t_start: opt.TStart = None,
    seed: opt.Seed = 0,
    strength: opt.Strength = None,
    wiener: opt.Wiener = None,
    wiener_noise: opt.WienerNoise = None,
    device: opt.Device = "auto",
    precision: opt.PrecisionChoice = "auto",
    tile: opt.Tile = 512,
    quiet: opt.Quiet = False,
) -> None:
    """Measure PSNR/SSIM and speed on a real data set: bsgd benchmark --dataset polyu --root PATH"""
    from ..benchmark.evaluate import run_benchmark
    from ..benchmark.runner import format_results_table
    from ..config import TilingConfig
    from ..engine.runtime import resolve_runtime
    from ..errors import ConfigError
    from ..io.paths import check_output_folder

    with user_errors("nothing was written; rerun the same command"):
        output = out_alias or output  # --out: the option's old name, still read
        runtime = resolve_runtime(device, precision)
        check_output_folder(output, "-o")
        sampler = opt.sampler_overrides(steps=steps, guidance=guidance, runs=runs, t_start=t_start, strength=strength,
                                        wiener=wiener, wiener_noise=wiener_noise)
        setup: dict[str, Any] = dict(model=model, sampler=sampler, tiling=TilingConfig(tile=tile), runtime=runtime,
                                     seed=seed)
        names = [m.strip() for m in methods.split(",") if m.strip()]
        if speed:
            _speed_benchmark(names, setup, megapixels, output)
            return
        if dataset is None or root is None:
            raise ConfigError("give --dataset and --root, or --speed")
        with progress_bars(quiet) as bars:
            result = run_benchmark(dataset, root, names, out_dir=output, limit=limit,
                                   progress=BenchmarkDisplay(bars, Heartbeat(quiet)), **setup)
        rows = format_results_table(result)
        table = Table(title=plain(f"{dataset}: {root}"))
        for header in rows[0]:
            table.add_column(plain(header))
        for row in rows[1:]:
            table.add_row(*[plain(cell) for cell in row])
        out.print(table)
        say("", f"results: {output / 'results.json'}   report: {output / 'report.html'}")


def _speed_benchmark(names: list[str], setup: dict[str, Any], megapixels: float, output: Path) -> None:
    from ..benchmark.evaluate import build_methods
    from ..benchmark.runner import collect_environment
    from ..benchmark.speed import run_speed_benchmark

    callables, environment = build_methods([n for n in names if n != "noisy"], **setup)
    rows = run_speed_benchmark(callables, megapixels=megapixels, seed=setup["seed"])
    table = Table(title=f"speed on a generated {megapixels:g} MP image")
    for column in ("method", "MP/s", "s/MP", "peak RSS (MB)", "GPU peak (MB)"):
        table.add_column(column)
    for row in rows:
        data = row.to_dict()
        gpu = "-" if data["gpu_peak_mb"] is None else f"{data['gpu_peak_mb']:.0f}"
        table.add_row(plain(row.method), f"{data['megapixels_per_second']:.3f}", f"{data['seconds_per_megapixel']:.2f}",
                      f"{data['peak_rss_mb']:.0f}", gpu)
    out.print(table)
    output.mkdir(parents=True, exist_ok=True)
    payload = {"environment": collect_environment(environment), "speed": [row.to_dict() for row in rows]}
    (output / "speed.json").write_text(json.dumps(payload, indent=1))
    say("", f"results: {output / 'speed.json'}")
