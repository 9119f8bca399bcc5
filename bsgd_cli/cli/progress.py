"""Rich progress bars for the library's :class:`~bsgd_cli.events.Progress` events, one display per command.

Bars go to stderr and are hidden when a command fails, so its error stays the only line. With ``-q``
(or ``--json``) they are off and a :class:`~bsgd_cli.cli._support.Heartbeat` prints one line a minute.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..config import UNCAPPED_STEPS
from ..events import Progress as Event
from ._support import Heartbeat, console, printable, say


@contextlib.contextmanager
def progress_bars(quiet: bool) -> Iterator[Progress]:
    """Rich progress bars on stderr; hidden when the command fails, so its error stays the only line."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    with progress:
        try:
            yield progress
        except BaseException:
            for task in progress.tasks:
                progress.update(task.id, visible=False)
            raise


class DenoiseDisplay:
    """A batch's events as progress bars, one line per failure, warning and skip, and a heartbeat.

    ``report`` collects the skip notes and notes for the JSON summary.
    """

    def __init__(self, progress: Progress, heartbeat: Heartbeat, report: dict[str, list[str]]) -> None:
        self.progress, self.heartbeat, self.report = progress, heartbeat, report
        self.files = progress.add_task("files", total=None, rate="")
        self.tiles = progress.add_task("tiles", total=None, rate="", visible=False)
        self.megapixels, self.finished, self.total = 0.0, 0, 0
        self.current, self.tile_text = "", ""
        self.started = self.file_started = time.perf_counter()

    def __call__(self, event: Event) -> None:
        if event.kind == "start":
            self._start(event)
        elif event.kind == "file":
            self.file_started = time.perf_counter()
            self.current, self.tile_text = Path(event.name).name, ""
            self.progress.update(self.tiles, description=printable(self.current)[:40], completed=0, total=None,
                                 visible=True)
        elif event.kind == "tiles":
            self.tile_text = f", tile {event.done}/{event.total}"
            elapsed = time.perf_counter() - self.file_started
            self.progress.update(self.tiles, completed=event.done, total=event.total, rate=f"{elapsed:.0f}s")
        elif event.kind == "result":
            self._result(event.data["result"])
        self.heartbeat.beat(lambda: f"{self.finished}/{self.total} files done; on {self.current}{self.tile_text}")

    def _start(self, event: Event) -> None:
        self.total = event.total or 0
        self.progress.update(self.files, total=event.total)
        warnings, notes = list(event.data["warnings"]), list(event.data["notes"])
        for warning in warnings:
            say("skipped", warning, "yellow")
        for note in notes:
            say("note", note, "yellow")
        self.report["skipped"], self.report["notes"] = warnings, notes

    def _result(self, result: Any) -> None:
        self.finished += 1
        if result.status == "failed":
            say("failed", result.error, "red")
        for note in result.warnings:
            say("warning", f"{result.input}: {note}", "yellow")
        if result.status == "done":
            self.megapixels += result.megapixels
        elapsed = time.perf_counter() - self.started
        rate = f"{self.megapixels / elapsed:.3f} MP/s" if elapsed > 0 and self.megapixels else ""
        self.progress.update(self.files, advance=1, rate=rate)


def _capped(total: int | None) -> int | None:
    """A step total worth showing: None for a run that only a time budget ends (UNCAPPED_STEPS)."""
    return total if total is not None and total < UNCAPPED_STEPS else None


def _of(done: int, total: int | None) -> str:
    """"12/300", or "12" without a total worth showing."""
    capped = _capped(total)
    return f"{done}/{capped}" if capped else str(done)


class TrainDisplay:
    """Training steps as a bar with the latest losses, validation and rate; a heartbeat on rank 0."""

    def __init__(self, progress: Progress, heartbeat: Heartbeat, steps: int | None, is_main: bool) -> None:
        self.progress, self.heartbeat, self.steps, self.is_main = progress, heartbeat, steps, is_main
        self.task: TaskID = progress.add_task("training", total=steps, rate="")

    def __call__(self, event: Event) -> None:
        if event.kind == "log":
            data = event.data
            parts = [f"{key.removeprefix('loss_')} {data[key]:.4f}" for key in data if key.startswith("loss_")]
            if "val_psnr" in data:
                parts.append(f"val {data['val_psnr']:.2f} dB")
            elif "val_loss" in data:
                parts.append(f"val {data['val_loss']:.4f}")
            parts.append(f"{data.get('patches_per_s', 0):.1f} patches/s")
            self.progress.update(self.task, completed=event.done, rate="  ".join(parts))
        else:
            self.progress.update(self.task, completed=event.done)
        if self.is_main:
            self.heartbeat.beat(lambda: f"training step {_of(event.done, event.total or self.steps)}")


class DistillDisplay:
    """The teacher's outputs, then the student's steps, as two bars."""

    def __init__(self, progress: Progress, heartbeat: Heartbeat, steps: int | None) -> None:
        self.progress, self.heartbeat, self.steps = progress, heartbeat, steps
        self.targets = progress.add_task("teacher outputs", total=None, rate="")
        self.student = progress.add_task("student", total=steps, rate="")

    def __call__(self, event: Event) -> None:
        if event.kind == "targets":
            self.progress.update(self.targets, completed=event.done, total=event.total)
            self.heartbeat.beat(lambda: f"teacher output {event.done}/{event.total}")
        else:
            self.steps = _capped(event.total) or self.steps
            self.progress.update(self.student, completed=event.done, total=self.steps,
                                 rate=f"loss {event.data['loss_student']:.4f}")
            self.heartbeat.beat(lambda: f"student step {_of(event.done, self.steps)}")


class ReadyDisplay:
    """``bsgd train``: the training bar, then the distillation's two bars, and with a time budget a bar of
    the minutes used (its remaining-time column is the command's)."""

    def __init__(self, progress: Progress, heartbeat: Heartbeat, steps: int | None, is_main: bool,
                 minutes: float | None) -> None:
        self.progress, self.heartbeat, self.is_main = progress, heartbeat, is_main
        self.training = TrainDisplay(progress, heartbeat, steps, is_main)
        self.distilling: DistillDisplay | None = None
        self.choosing: TaskID | None = None
        self.started = time.monotonic()
        self.budget = None if minutes is None else progress.add_task("time budget", total=60.0 * minutes, rate="")

    def __call__(self, event: Event) -> None:
        if self.budget is not None:
            self.progress.update(self.budget, completed=time.monotonic() - self.started)
        if event.kind == "wiener":  # the Wiener strength chosen on the captures, image by image
            if self.choosing is None:
                self.choosing = self.progress.add_task("Wiener strength", total=event.total, rate="")
            self.progress.update(self.choosing, completed=event.done, total=event.total)
            self.heartbeat.beat(lambda: f"Wiener strength: capture {event.done}/{event.total}")
        elif event.kind == "targets" or "loss_student" in event.data:
            if self.distilling is None:
                self.distilling = DistillDisplay(self.progress, self.heartbeat, None)
            self.distilling(event)
        else:
            self.training(event)


class BenchmarkDisplay:
    """Images done over the data set, with the name of the last one."""

    def __init__(self, progress: Progress, heartbeat: Heartbeat) -> None:
        self.progress, self.heartbeat = progress, heartbeat
        self.task = progress.add_task("benchmark", total=None, rate="")

    def __call__(self, event: Event) -> None:
        if event.total is not None:
            self.progress.update(self.task, total=event.total)
        if event.kind == "sample_done":
            self.progress.update(self.task, advance=1, rate=event.name)
        self.heartbeat.beat(lambda: f"benchmark {event.kind} {event.name}".strip())
