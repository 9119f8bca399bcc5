"""``bsgd models``: the embedded and user models, one block each (:mod:`bsgd_cli.catalogue`)."""

from __future__ import annotations

from rich.text import Text

from ._support import out, printable, user_errors

FIELDS = (("size", "size"), ("branches", "branches"), ("training data", "data"), ("sampler", "sampler"),
          ("measured", "measured"), ("path", "path"))


def models() -> None:
    """List the embedded and user models with their config, training data and measured numbers."""
    from ..catalogue import list_models

    with user_errors("nothing was listed"):
        entries = list_models()
    width = max(len(label) for label, _key in FIELDS)
    for index, entry in enumerate(entries):
        if index:
            out.print()
        out.print(Text(printable(str(entry["name"])), style="bold"))
        for label, key in FIELDS:
            # A hanging indent: wrapped lines start under the value, never under the label.
            line = Text(f"  {label:<{width}}  ")
            line.append(printable(str(entry[key])))
            out.print(line, overflow="fold")
    if not entries:
        out.print("no models found")
