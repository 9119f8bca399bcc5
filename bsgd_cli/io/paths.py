"""Expanding command-line inputs (files and folders) into the list of images to process.

Only names and ``stat`` results are looked at here: no file is opened, so a named pipe or a device
named like an image can neither hang the listing nor be read. Each is kept as an input and fails with
a message saying what it is (:func:`bsgd_cli.io.imagedata.check_input_file`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .imagedata import (
    OTHER_IMAGE_EXTENSIONS,
    RAW_EXTENSIONS,
    SRGB_EXTENSIONS,
    is_image_path,
    is_partial_name,
    os_error_advice,
    special_kind,
)


@dataclass
class Discovery:
    """``images``: (file, path relative to its input) pairs; ``notes``: what was skipped and why;
    ``unlisted``: folders that could not be listed, as (folder, reason): images in them were never seen."""

    images: list[tuple[Path, Path]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unlisted: list[tuple[Path, str]] = field(default_factory=list)


def _is_under(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    return path == folder or folder in path.parents


def _resolved(path: Path) -> Path:
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError):  # RuntimeError: symlink loop on older Pythons
        return path.absolute()


def _listing(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _mode(path: Path | os.DirEntry) -> tuple[int | None, OSError | None]:
    """The ``stat`` mode with links followed, or None and the error (a broken link: FileNotFoundError)."""
    try:
        return os.stat(path).st_mode, None
    except OSError as exc:
        return None, exc


@dataclass
class _Skipped:
    """Counts of what a folder walk left out, summarised in one note per input folder."""

    other_types: dict[str, int] = field(default_factory=dict)
    folders: int = 0

    def notes(self, root: Path) -> list[str]:
        notes = []
        if self.other_types:
            count = sum(self.other_types.values())
            kinds = ", ".join(sorted(self.other_types))
            notes.append(f"{root}: skipped {count} file(s) that are not supported images ({kinds})")
        if self.folders:
            notes.append(f"{root}: {self.folders} subfolder(s) not searched; pass --recursive to include them")
        return notes


def _walk(root: Path, *, recursive: bool, exclude: Path | None, found: Discovery) -> None:
    """Append every image under ``root`` (sorted, depth first) to ``found``.

    Iterative, so a tree of any depth cannot exhaust Python's recursion limit; a folder deeper than
    the system's path limit cannot be listed and is reported in ``found.unlisted``.
    """
    visited: set[Path] = set()
    skipped = _Skipped()
    stack: list[tuple[Path, list[os.DirEntry]]] = []

    def enter(folder: Path, rel: Path) -> None:
        real = _resolved(folder)
        if real in visited:
            found.notes.append(f"{folder}: already visited through a symbolic link (a link loop?); skipped")
            return
        visited.add(real)
        try:
            entries = _listing(folder)
        except OSError as exc:
            found.unlisted.append((folder, f"cannot be listed ({exc.strerror or exc}); {os_error_advice(exc)}"))
            return
        stack.append((rel, entries[::-1]))

    enter(root, Path())
    while stack:
        rel, pending = stack[-1]
        if not pending:
            stack.pop()
            continue
        entry = pending.pop()
        if entry.name.startswith("."):
            continue  # hidden files and folders, including our own .partial temporaries
        path = Path(root, rel, entry.name)
        if _is_under(_resolved(path), exclude):
            continue
        mode, error = _mode(entry)
        if error is not None and not isinstance(error, FileNotFoundError) and entry.is_dir(follow_symlinks=False):
            if recursive:
                found.unlisted.append((path, f"cannot be listed ({error.strerror or error}); {os_error_advice(error)}"))
            else:
                skipped.folders += 1
        elif mode is not None and stat.S_ISDIR(mode):
            if recursive:
                enter(path, rel / entry.name)
            else:
                skipped.folders += 1
        elif is_image_path(path) and (mode is not None or not entry.is_symlink()):
            found.images.append((path, rel / entry.name))  # a pipe or device fails later, unopened
        elif isinstance(error, FileNotFoundError):
            found.notes.append(f"{path}: broken symbolic link; skipped")
        elif mode is None and error is not None:
            found.notes.append(
                f"{path}: cannot be looked at ({error.strerror or error}); {os_error_advice(error)}; skipped"
            )
        elif mode is not None and special_kind(mode) is not None:
            found.notes.append(f"{path}: {special_kind(mode)}, not an image file; skipped")
        elif path.suffix.lower() in OTHER_IMAGE_EXTENSIONS:
            found.notes.append(
                f"{path}: {path.suffix.lstrip('.').upper()} images are not read by bsgd; "
            "convert it to PNG or TIFF first; skipped"
            )
        else:
            kind = path.suffix.lower() or "no extension"
            skipped.other_types[kind] = skipped.other_types.get(kind, 0) + 1
    found.notes.extend(skipped.notes(root))


def _single(item: Path, excluded: Path | None, found: Discovery) -> None:
    """One command-line input that is not a folder."""
    mode, error = _mode(item)
    if _is_under(_resolved(item), excluded):
        found.notes.append(f"{item}: is inside the output folder; skipped")
    elif is_partial_name(item.name):
        found.notes.append(f"{item}: an unfinished bsgd temporary file; skipped")
    elif mode is None:
        found.notes.append(
            f"{item}: {'broken symbolic link' if item.is_symlink() else 'not found'}; skipped, check the path"
        )
    elif is_image_path(item):
        found.images.append((item, Path(item.name)))  # not a regular file: fails with what it is, unopened
    elif special_kind(mode) is not None:
        found.notes.append(f"{item}: {special_kind(mode)}, not an image file; skipped")
    elif item.suffix.lower() in OTHER_IMAGE_EXTENSIONS:
        found.notes.append(
            f"{item}: {item.suffix.lstrip('.').upper()} images are not read by bsgd; "
            "convert it to PNG or TIFF first; skipped"
        )
    else:
        kinds = ", ".join(sorted(e.lstrip(".") for e in SRGB_EXTENSIONS | RAW_EXTENSIONS))
        found.notes.append(f"{item}: not a supported image type (expected one of: {kinds}); skipped")


def discover(inputs: list[Path], *, recursive: bool, exclude: Path | None = None) -> Discovery:
    """Expand files and folders into images to process, notes, and folders that could not be listed.

    A file input maps to its own name; files found in a folder input map to their path relative to
    that folder. Folders are listed in sorted order; hidden entries (names starting with ".", which
    includes our ``.partial`` temporaries) are skipped; anything under ``exclude`` (typically the
    output folder inside an input folder) is skipped; a directory symlink is followed only once per
    real directory, so link loops terminate; a folder named like an image is treated as a folder.
    The same real file reached twice is kept once. Names that clash are resolved by the output
    planning (:mod:`bsgd_cli.batch.planning`), not here.
    """
    excluded = _resolved(Path(exclude)) if exclude is not None else None
    found = Discovery()
    for raw in inputs:
        item = Path(raw)
        mode, error = _mode(item)
        if error is not None and not isinstance(error, FileNotFoundError) and is_image_path(item):
            found.images.append((item, Path(item.name)))  # fails when read, with the system's reason
        elif error is not None and not isinstance(error, FileNotFoundError):  # a folder, perhaps
            found.unlisted.append((item, f"cannot be looked at ({error.strerror or error}); {os_error_advice(error)}"))
        elif mode is not None and stat.S_ISDIR(mode):
            if _is_under(_resolved(item), excluded):
                found.notes.append(f"{item}: is inside the output folder; skipped")
                continue
            _walk(item, recursive=recursive, exclude=excluded, found=found)
        else:
            _single(item, excluded, found)
    unique: list[tuple[Path, Path]] = []
    seen_files: set[Path] = set()
    for file, rel in found.images:
        real = _resolved(file)
        if real not in seen_files:
            seen_files.add(real)
            unique.append((file, rel))
    found.images = unique
    return found


def find_images(
    inputs: list[Path], *, recursive: bool, exclude: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """:func:`discover` as (images, notes), with folders that could not be listed among the notes."""
    found = discover(inputs, recursive=recursive, exclude=exclude)
    notes = found.notes + [f"{folder}: {reason}; skipped" for folder, reason in found.unlisted]
    return found.images, notes


def check_output_folder(folder: Path, option: str = "-o") -> None:
    """Refuse, before any work, an output folder that is a file or lies under one.

    The nearest part of ``folder`` that exists must be a folder (a missing folder is created later,
    when the first output is written; a folder that cannot be written fails each write with a reason).
    """
    for part in (folder, *folder.parents):
        mode, error = _mode(part)
        if isinstance(error, FileNotFoundError) and os.path.islink(part):
            raise ConfigError(f"{option} {folder}: {part} is a broken symbolic link; fix it or choose another folder")
        if mode is None:
            continue
        if stat.S_ISDIR(mode):
            return
        what = special_kind(mode) or "a file"
        where = "is" if part == folder else f"lies under {part}, which is"
        raise ConfigError(f"{option} {folder}: {where} {what}, not a folder; choose a folder name")


def check_output_file(path: Path, option: str = "-o") -> None:
    """Refuse an output file name that is a folder or lies under a file (see :func:`check_output_folder`)."""
    mode, _error = _mode(path)
    if mode is not None and stat.S_ISDIR(mode):
        raise ConfigError(f"{option} {path}: is a folder; give a file name such as curves.png")
    check_output_folder(path.parent, option)
