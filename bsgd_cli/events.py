"""Progress reports: the one shape in which the library tells its caller how far it is.

The library never prints. Tiling, batch denoising, training, distillation and the benchmark all call a
:data:`ProgressFn` with :class:`Progress` events; the command line turns them into Rich progress bars
and one-line messages, the GPU slot script into log lines, a test into a list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    """One progress event.

    kind: what happened. Tiling: ``tiles``. Batch denoising: ``start`` (total: files; data: warnings,
    notes), ``file`` (done: the file's index; name: its path; data: megapixels), ``tiles``, ``result``
    (data: result, a FileResult). Training: ``step``, ``log`` (data: the log line: losses, lr, ...),
    ``checkpoint``. Distillation: ``targets`` (teacher outputs made), ``log``. Benchmark: ``start``,
    ``method_done``, ``sample_done``, ``submission_written``, ``done``.
    done: how many are done (a step, tiles, images); total: out of how many (None: not known).
    name: what it is about (a file, a method, a sample), or "".
    data: anything else the kind carries.
    """

    kind: str
    done: int = 0
    total: int | None = None
    name: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[Progress], None]


def ignore(event: Progress) -> None:
    """A :data:`ProgressFn` that drops every event (the default where none is given)."""
