"""The ``bsgd`` command line: each command parses its options and calls the library.

The only package that uses typer and rich, and the only one that prints. One module per command
(:mod:`.denoise`, :mod:`.train`, :mod:`.distill`, :mod:`.benchmark`, :mod:`.models`, :mod:`.samples`,
:mod:`.plot`); :mod:`.options` holds the options several commands share and the help panels,
:mod:`.progress` the Rich progress displays, :mod:`._support` the boundary (one-line errors, escaped
messages, option parsers, SIGTERM, heartbeat). Library errors (:class:`BsgdError`) become one line on
stderr and a non-zero exit code, no traceback. Commands import the library inside their bodies, so
``bsgd --help`` loads no torch.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import __version__
from ..engine.allocator import tune_allocator
from ..engine.threads import prepare_openmp
from . import benchmark, denoise, distill, models, plot, samples, train
from ._support import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    OneLineErrors,
    end_now,
    exit_code_for,
    handle_signals,
    interrupt_word,
    out,
    quick_end_allowed,
    say,
)

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_TERMINATED", "EXIT_USAGE", "app", "main"]

app = typer.Typer(
    name="bsgd",
    help="Denoise photo folders with Blind-Spot Guided Diffusion, trained on noisy photos alone.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"bsgd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Denoise photo folders with Blind-Spot Guided Diffusion."""


app.command(epilog=denoise.EXIT_CODES_HELP)(denoise.denoise)
app.command()(train.train)
app.command()(plot.plot)
app.command()(distill.distill)
app.command()(benchmark.benchmark)
app.command()(models.models)
app.command()(samples.samples)


def main() -> None:
    """Console-script entry point: SIGTERM is handled like Ctrl-C from the start; how idle OpenMP threads
    wait is chosen before any command imports torch (bsgd_cli.engine.threads), and the allocator keeps a
    tile's memory for the next tile (bsgd_cli.engine.allocator). A command that allowed it (``denoise``,
    once everything is written) ends without the interpreter's teardown (:func:`._support.end_now`)."""
    prepare_openmp()
    tune_allocator()
    handle_signals()
    try:
        app()
    except KeyboardInterrupt as exc:  # raised outside a command body
        say(f"{interrupt_word(exc)}", "", "yellow")
        sys.exit(exit_code_for(exc))
    except SystemExit as exc:
        if quick_end_allowed():
            end_now(exc.code)
        raise


if __name__ == "__main__":
    main()
