"""``bsgd denoise``: files and folders through the model, one output each (:mod:`bsgd_cli.batch`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import checks as bounds
from ..config import DOMAINS, OUTPUT_EXTS, RAW_OUTPUTS, Domain, OutputExt, RawOutput
from ..errors import BatchInterrupted
from . import options as opt
from ._support import (
    EXIT_SOME_FAILED,
    EXIT_TERMINATED,
    Heartbeat,
    allow_quick_end,
    exit_code_for,
    interrupt_word,
    number,
    out,
    printable,
    say,
    user_errors,
)
from .progress import DenoiseDisplay, ReadyDisplay, progress_bars

EXIT_CODES_HELP = (
    "Exit codes: 0 all files done or skipped; 1 some files failed (each named on stderr); "
    "2 bad options, model or folders (nothing done); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM)."
)


def denoise(
    inputs: Annotated[list[Path], typer.Argument(metavar="INPUTS...", show_default=False,
                                                 help="Image files and/or folders (sRGB or camera RAW).")],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR", rich_help_panel=opt.OUTPUT,
                                         help="Output folder (mirrors the input tree).")],
    model: opt.ModelName = None,
    mode: opt.ModeChoice = None,
    steps: opt.Steps = None,
    guidance: opt.Guidance = None,
    runs: opt.Runs = None,
    t_start: opt.TStart = None,
    seed: opt.Seed = 0,
    strength: opt.Strength = None,
    wiener: opt.Wiener = None,
    wiener_noise: opt.WienerNoiseOrAuto = None,
    device: opt.Device = "auto",
    precision: opt.PrecisionChoice = "auto",
    tile: opt.Tile = 512,
    overlap: Annotated[int, typer.Option(parser=number(bounds.OVERLAP), metavar="PX", rich_help_panel=opt.DEVICE,
                                         help="Tile overlap in pixels, blended smoothly.")] = 32,
    batch: Annotated[int, typer.Option(parser=number(bounds.TILE_BATCH), metavar="N", rich_help_panel=opt.DEVICE,
                                       help="Tiles per network call (GPU).")] = 1,
    ext: Annotated[OutputExt, typer.Option(metavar="FORMAT", rich_help_panel=opt.OUTPUT,
                                           help=f"Output format: {opt.choices(OUTPUT_EXTS)}; keep: the input's "
                                           "(RAW gives a 16-bit TIFF).")] = "keep",
    suffix: Annotated[str, typer.Option(metavar="TEXT", rich_help_panel=opt.OUTPUT,
                                        help="Appended to output file names, e.g. _denoised (no path "
                                        "separators).")] = "",
    bit_depth: Annotated[opt.BitDepth | None, typer.Option(metavar="BITS", rich_help_panel=opt.OUTPUT,
                                                           show_default=False,
                                                           help="8 or 16 bits per channel (default: the input's; "
                                                           "RAW gives 16). 16 needs --ext png or tif (heic keeps "
                                                           "12).")] = None,
    quality: Annotated[int, typer.Option(parser=number(bounds.QUALITY), metavar="Q", rich_help_panel=opt.OUTPUT,
                                         help="JPEG, WebP, HEIC, AVIF and JPEG XL quality, 1 to 100 "
                                         "(100: lossless JPEG XL).")] = 95,
    compare: Annotated[bool, typer.Option("--compare", metavar=opt.FLAG, rich_help_panel=opt.OUTPUT,
                                          help="Also write NAME_compare.png: 100% crops, before | after.")] = False,
    raw_output: Annotated[RawOutput, typer.Option(metavar="FORMAT", rich_help_panel=opt.OUTPUT,
                                                  help=f"RAW domain: {opt.choices(RAW_OUTPUTS)}; tiff: developed by "
                                                  "LibRaw, 16-bit; dng: the denoised mosaic, editable.")] = "tiff",
    recursive: Annotated[bool, typer.Option("--recursive", "-r", metavar=opt.FLAG, rich_help_panel=opt.BATCH,
                                            help="Descend into sub-folders.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar=opt.FLAG, rich_help_panel=opt.BATCH,
                                            help="Redo outputs that already exist (default: skip them).")] = False,
    in_place: Annotated[bool, typer.Option("--in-place", metavar=opt.FLAG, rich_help_panel=opt.BATCH,
                                           help="Allow -o to be the input folder, with a --suffix "
                                           "(inputs are still never replaced).")] = False,
    max_megapixels: Annotated[float, typer.Option(parser=number(bounds.MEGAPIXELS), metavar="MP",
                                                  rich_help_panel=opt.BATCH,
                                                  help="Refuse larger images before decoding them.")] = 200.0,
    workers: Annotated[int, typer.Option(parser=number(bounds.WORKERS), metavar="N", rich_help_panel=opt.BATCH,
                                         help="Threads decoding and encoding beside the model.")] = 2,
    domain: Annotated[Domain | None, typer.Option(metavar="DOMAIN", rich_help_panel=opt.BATCH, show_default=False,
                                                  help=f"{opt.choices(DOMAINS)}; raw: denoise the Bayer mosaic of RAW "
                                                  "files (needs a RAW-domain model); default: the model's.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", metavar=opt.FLAG, rich_help_panel=opt.BATCH,
                                        help="No progress display (a long job still prints a line a minute).")] = False,
    adapt: Annotated[float | None, typer.Option(parser=number(bounds.MINUTES), metavar="MINUTES",
                                                rich_help_panel=opt.SAMPLER, show_default=False,
                                                help="First fit the model to these very photos for MINUTES (your "
                                                "camera's noise; saved as adapted-<camera> in bsgd models and "
                                                "refined by the next --adapt), then denoise with it.")] = None,
    json_out: Annotated[bool, typer.Option("--json", metavar=opt.FLAG, rich_help_panel=opt.BATCH,
                                           help="Print a JSON summary (one object per file) on stdout.")] = False,
) -> None:
    """Denoise photos: bsgd denoise ./photos -o ./clean"""
    from ..engine.allocator import prefault_heap

    if mode in (None, "fast"):  # on an idle core while torch is imported below; the slow modes lost by it
        prefault_heap()
    from ..batch.denoise import DenoiseOptions, denoise_paths
    from ..batch.planning import check_suffix
    from ..checkpoint import load_model
    from ..config import TilingConfig
    from ..engine.runtime import resolve_runtime
    from ..io.paths import check_output_folder
    from ..training.distributed import gather_results, shard_for_this_process

    with user_errors():
        # Bad settings are refused before the model is loaded or any file is looked at.
        runtime = resolve_runtime(device, precision)
        check_output_folder(output)
        check_suffix(suffix)
        depth = None if bit_depth is None else int(bit_depth)
        bounds.check_bit_depth(depth, ext)
        options = DenoiseOptions(
            sampler=opt.sampler_overrides(mode=mode, steps=steps, guidance=guidance, runs=runs, t_start=t_start,
                                          strength=strength, wiener=wiener,
                                          wiener_noise=None if wiener_noise in (None, "auto") else float(wiener_noise)),
            tiling=TilingConfig(tile=tile, overlap=overlap, batch=batch), runtime=runtime, seed=seed,
            ext=ext, suffix=suffix, bit_depth=depth, quality=quality, overwrite=overwrite, in_place=in_place,
            recursive=recursive, max_megapixels=max_megapixels, workers=workers, compare=compare,
            shard=shard_for_this_process(), domain=domain, raw_output=raw_output,
        )
        loaded = load_model(model)
        if adapt is not None:
            loaded = _adapt(list(inputs), loaded, domain or loaded.model.config.domain, adapt, recursive, device,
                            quiet or json_out)
        if wiener_noise == "auto":
            options = _auto_wiener(list(inputs), output, loaded, options, quiet or json_out)
        report: dict[str, list[str]] = {"skipped": [], "notes": []}
        try:
            with progress_bars(quiet or json_out) as bars:
                display = DenoiseDisplay(bars, Heartbeat(quiet or json_out), report)
                results = denoise_paths(list(inputs), output, loaded, options, on_event=display)
        except BatchInterrupted as stopped:
            summarise(stopped.results, output, json_out, quiet, report, stopped=stopped)
            raise typer.Exit(exit_code_for(stopped)) from None
        gathered = gather_results(results)  # under torchrun: every rank's results, on rank 0 only
        if gathered is None:
            return  # another rank: rank 0 prints the summary and exits 1 if any rank had failures
        summary = summarise(gathered, output, json_out, quiet, report)
    allow_quick_end()  # every output is written and the summary printed
    if summary["failed"]:
        raise typer.Exit(EXIT_SOME_FAILED)


def _auto_wiener(inputs: list[Path], output: Path, loaded: Any, options: Any, quiet: bool) -> Any:
    """``options`` with the Wiener noise scale chosen on some of the input photos
    (:func:`bsgd_cli.batch.wiener_choice.choose_for_batch`)."""
    from ..batch.wiener_choice import choose_for_batch

    decided = choose_for_batch(inputs, output, loaded, options)
    if not quiet:
        say("", f"Wiener noise scale {decided.choice.noise_scale:g}, chosen on {decided.choice.images} of these "
            f"photos (the model's: {decided.stored:g})")
    return decided.options


def _adapt(inputs: list[Path], loaded: Any, domain: str, minutes: float, recursive: bool, device: str,
           quiet: bool) -> Any:
    """The model adapted to the inputs (:mod:`bsgd_cli.training.adapt`), with its own progress bars."""
    from ..training.adapt import adapt

    with progress_bars(quiet) as bars:
        display = ReadyDisplay(bars, Heartbeat(quiet), None, True, minutes)
        adapted = adapt(inputs, base=loaded if loaded.model.config.domain == domain else None, domain=domain,
                        minutes=minutes, recursive=recursive, device=device, callback=display)
    if not quiet:
        choice = adapted.model.info.get("wiener_choice")
        strength = f"; Wiener noise scale {choice['noise_scale']:g} chosen on your photos" if choice else ""
        say("", f"adapted to {adapted.camera or 'an unknown camera'} from {adapted.started_from}: "
            f"saved as {adapted.name} (bsgd models){strength}")
        if adapted.others:
            say("note", f"the photos come from {len(adapted.others) + 1} cameras; the model is named after the "
                "most common one; adapt one camera's folder at a time for a model per camera", "yellow")
    return adapted.model


def summarise(results: list, output: Path, json_out: bool, quiet: bool, report: dict[str, list[str]],
              stopped: BatchInterrupted | None = None) -> dict[str, Any]:
    """Print the summary (a line, or the JSON report); for an interrupted batch say what is left."""
    from ..batch.denoise import summarise as count

    summary = count(results)
    if stopped is not None:
        summary["not_started"] = max(0, stopped.total - len(results))
        summary["interrupted"] = "SIGTERM" if exit_code_for(stopped) == EXIT_TERMINATED else "SIGINT"
    if json_out:
        _print_json(summary, results, report)
    line = (f"{summary['done']} denoised, {summary['skipped']} skipped (already there), "
            f"{summary['failed']} failed -> {output}")
    if stopped is not None:
        say(f"{interrupt_word(stopped)}:", f"{line}, {summary['not_started']} not started; finished files are "
            "complete, nothing partial was left; rerun the same command to continue", "yellow")
    elif not quiet and not json_out:
        say("", line)
    return summary


def _print_json(summary: dict[str, Any], results: list, report: dict[str, list[str]]) -> None:
    files = [r.to_dict() for r in results]
    for entry in files:  # messages stay one line wherever a reader prints them; paths stay exact
        entry["error"] = printable(entry["error"]) if entry["error"] else entry["error"]
        entry["warnings"] = [printable(w) for w in entry["warnings"]]
    payload = {"summary": summary, "files": files, "skipped": [printable(w) for w in report["skipped"]],
               "notes": [printable(n) for n in report["notes"]]}
    # ASCII escapes keep the JSON valid UTF-8 for file names that are not (\udcXX escapes).
    out.print_json(json.dumps(payload), ensure_ascii=True)

