"""``bsgd plot``: a training run's curves as a PNG (:mod:`bsgd_cli.viz.plotting`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._support import say, user_errors


def plot(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="A training run folder (with log.jsonl).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="FILE",
                                                help="PNG to write (default RUN/curves.png).")] = None,
) -> None:
    """Draw a training run's loss and validation curves to a PNG."""
    from ..io.paths import check_output_file
    from ..viz.plotting import plot_training_log

    with user_errors("nothing was written"):
        if output is not None:
            check_output_file(output)
        target = plot_training_log(run, output)
    say("", f"wrote {target}")
