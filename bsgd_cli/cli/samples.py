"""``bsgd samples``: demo photos with realistic synthetic camera noise (:mod:`bsgd_cli.viz.samples`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import checks as bounds
from ._support import number, say, user_errors


def samples(
    folder: Annotated[Path | None, typer.Argument(metavar="[OUTPUT]", show_default=False,
                                                  help="Folder to write the noisy sample photos into "
                                                  "(or give -o).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="DIR",
                                                help="Folder to write the noisy sample photos into.")] = None,
    count: Annotated[int, typer.Option(min=1, max=8, metavar="N", help="How many photos, 1 to 8.")] = 4,
    seed: Annotated[int, typer.Option(parser=number(bounds.SEED), metavar="N",
                                      help="Seed of the noise (the same seed writes the same files).")] = 0,
) -> None:
    """Write a few photos with realistic synthetic camera noise (for the demo)."""
    from ..errors import ConfigError
    from ..io.paths import check_output_folder
    from ..viz.samples import make_noisy_samples

    with user_errors("the samples written so far are complete; rerun the same command"):
        if (folder is None) == (output is None):
            raise ConfigError("give the output folder once: bsgd samples DIR, or bsgd samples -o DIR")
        target = folder or output
        assert target is not None
        check_output_folder(target, "OUTPUT" if folder is not None else "-o")
        written = make_noisy_samples(target, count=count, seed=seed)
    say("", f"wrote {len(written)} noisy samples to {target}")
