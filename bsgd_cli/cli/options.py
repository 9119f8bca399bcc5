"""Options shared by several commands, and the help panels they are shown in.

The choices come from the library's own names (:mod:`bsgd_cli.config`: modes, precisions, domains,
output formats, presets, data sets), so the command line cannot offer a name the library does not
know. Numeric options parse through :func:`~bsgd_cli.cli._support.number`, which applies the range
in :mod:`bsgd_cli.checks` and refuses a bad value in one line before any work starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Literal

import typer

from .. import checks as bounds
from ..config import RUNTIME_PRECISIONS, Mode, RuntimePrecision, SamplerOverrides
from ._support import number

# Help panels: the options of a command grouped by what they change.
SAMPLER = "Sampler"
DEVICE = "Tiling & device"
OUTPUT = "Output"
BATCH = "Batch"
TRAINING = "Training"
DATA = "Data"

def choices(names: Iterable[str]) -> str:
    """The allowed values of a choice option for its help text: ``a, b or c``."""
    names = list(names)
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


FLAG = ""
"""The metavar of an on/off flag: none (instead of Typer's <bool>, which takes a column of its own)."""

BitDepth = Literal["8", "16"]
"""``--bit-depth``: the bits per channel of the outputs (the choices of :data:`bsgd_cli.checks.BIT_DEPTHS`)."""

ModelName = Annotated[
    str | None,
    typer.Option(metavar="FILE", rich_help_panel=SAMPLER,
                 help="Model file or name (see bsgd models); the embedded default when omitted."),
]
ModeChoice = Annotated[
    Mode | None,
    typer.Option(metavar="MODE", rich_help_panel=SAMPLER, show_default=False,
                 help="bsgd (guided diffusion), bsn (blind-spot branch), bsn-r3, or fast (distilled student). "
                 "Default: fast on a CPU when the model has a student, else the model's."),
]
TeacherMode = Annotated[
    Mode | None,
    typer.Option(metavar="MODE", rich_help_panel=TRAINING, show_default=False,
                 help="The distillation teacher's mode (its Wiener step as stored). Default: the model's stored "
                 "mode."),
]
Steps = Annotated[
    int | None, typer.Option(parser=number(bounds.STEPS), metavar="K", rich_help_panel=SAMPLER,
                             help="DDIM steps (bsgd mode), 1 to 100 (default: the model's).")]
Guidance = Annotated[
    float | None, typer.Option(parser=number(bounds.GUIDANCE), metavar="W", rich_help_panel=SAMPLER,
                               help="Blind-spot guidance weight (1 = blind-spot only), 0 to 3 (default: the model's).")]
Runs = Annotated[
    int | None, typer.Option(parser=number(bounds.RUNS), metavar="R", rich_help_panel=SAMPLER,
                             help="Runs averaged (bsgd mode), 1 to 32 (default: the model's).")]
TStart = Annotated[
    float | None, typer.Option(parser=number(bounds.T_START), metavar="T", rich_help_panel=SAMPLER,
                               help="Diffusion time to start from, 0 to 1, for every image "
                                    "(default: the model's, later on strong noise where the model says so).")]
Seed = Annotated[
    int, typer.Option(parser=number(bounds.SEED), metavar="N", rich_help_panel=SAMPLER,
                      help="Seed; with the file and tile index it fixes every random draw.")]
Strength = Annotated[
    float | None, typer.Option(parser=number(bounds.STRENGTH), metavar="S", rich_help_panel=SAMPLER,
                               help="Blend with the input: 1 = fully denoised (default: the model's).")]
Wiener = Annotated[
    bool | None, typer.Option("--wiener/--no-wiener", metavar=FLAG, rich_help_panel=SAMPLER, show_default=False,
                              help="Wiener refinement of the network's output, noise measured per image "
                              "(default: the model's, on for the embedded one).")]
WienerNoise = Annotated[
    float | None, typer.Option(parser=number(bounds.WIENER_NOISE), metavar="X", rich_help_panel=SAMPLER,
                               help="Scale of the measured noise power in the Wiener step: higher is smoother "
                               "(default: the model's, for the mode used).")]


def number_or_auto(limits: bounds.Bounds) -> Callable[[str], str]:
    """An option parser for "auto" or a number within ``limits`` (kept as text; the command converts it)."""
    as_number = number(limits)

    def parse(text: str) -> str:
        return "auto" if text.strip().lower() == "auto" else str(as_number(text))

    return parse


WienerNoiseOrAuto = Annotated[
    str | None, typer.Option("--wiener-noise", parser=number_or_auto(bounds.WIENER_NOISE), metavar="X|auto",
                             rich_help_panel=SAMPLER, show_default=False,
                             help="Scale of the measured noise power in the Wiener step: higher is smoother "
                             "(default: the model's, for the mode used). auto: chosen on up to 12 of these photos "
                             "by a risk estimate, no clean reference needed (modes fast and bsn).")]
Device = Annotated[str, typer.Option(metavar="NAME", rich_help_panel=DEVICE, help="auto, cpu, cuda, cuda:N or mps.")]
PrecisionChoice = Annotated[
    RuntimePrecision, typer.Option(metavar="NAME", rich_help_panel=DEVICE,
                                   help=f"{choices(RUNTIME_PRECISIONS)}; auto: bf16 on CPU and CUDA; "
                                   "bf16 and fp16 run under autocast.")]
Tile = Annotated[int, typer.Option(parser=number(bounds.TILE), metavar="PX", rich_help_panel=DEVICE,
                                   help="Tile side in pixels (halved automatically on out-of-memory).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", metavar=FLAG,
                                     help="No progress display (a long job still prints a line a minute).")]


def refine(wiener: bool | None) -> Literal["wiener", "none"] | None:
    """--wiener/--no-wiener as a sampler ``refine`` value (None: the model's default)."""
    return None if wiener is None else ("wiener" if wiener else "none")


def sampler_overrides(*, mode: Mode | None = None, steps: int | None = None, guidance: float | None = None,
                      runs: int | None = None, t_start: float | None = None, strength: float | None = None,
                      wiener: bool | None = None, wiener_noise: float | None = None) -> SamplerOverrides:
    """The sampler options of a command as changes to the model's stored defaults."""
    return SamplerOverrides(mode=mode, steps=steps, guidance=guidance, runs=runs, t_start=t_start, strength=strength,
                            refine=refine(wiener), wiener_noise=wiener_noise)
