"""Expanding command-line inputs (files and folders) into the list of images to process."""

from __future__ import annotations

import os
from pathlib import Path

from .imagedata import RAW_EXTENSIONS, SRGB_EXTENSIONS, is_image_path, is_partial_name


def _is_under(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    return path == folder or folder in path.parents


def _resolved(path: Path) -> Path:
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError):  # RuntimeError: symlink loop on older Pythons
        return path.absolute()


def _walk(
    root: Path,
    *,
    recursive: bool,
    exclude: Path | None,
    found: list[tuple[Path, Path]],
    notes: list[str],
) -> None:
    """Append (file, path relative to root) for every image under ``root`` (sorted, depth first)."""
    visited: set[Path] = set()
    skipped_types = 0
    skipped_dirs = 0

    def visit(folder: Path, rel: Path) -> None:
        nonlocal skipped_types, skipped_dirs
        real = _resolved(folder)
        if real in visited:
            notes.append(f"{folder}: already visited through a symbolic link (a link loop?); skipped")
            return
        visited.add(real)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            notes.append(f"{folder}: cannot be listed ({exc.strerror or exc}); skipped, check its permissions")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files and folders, including our own .partial temporaries
            path = Path(entry.path)
            if _is_under(_resolved(path), exclude):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = entry.is_file(follow_symlinks=True)
            except OSError:
                is_dir = is_file = False
            if is_dir:
                if recursive:
                    visit(path, rel / entry.name)
                else:
                    skipped_dirs += 1
            elif is_file:
                if is_image_path(path):
                    found.append((path, rel / entry.name))
                else:
                    skipped_types += 1
            elif entry.is_symlink():
                notes.append(f"{path}: broken symbolic link; skipped")

    visit(root, Path())
    if skipped_types:
        notes.append(f"{root}: skipped {skipped_types} file(s) that are not supported images")
    if skipped_dirs:
        notes.append(f"{root}: {skipped_dirs} subfolder(s) not searched; pass --recursive to include them")


def find_images(
    inputs: list[Path], *, recursive: bool, exclude: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Expand files and folders into ``(file, relative output path)`` pairs, plus warnings.

    A file input maps to its own name; files found in a folder input map to their path relative to
    that folder. Folders are listed in sorted order; hidden entries (names starting with ".", which
    includes our ``.partial`` temporaries) are skipped; anything under ``exclude`` (typically the
    output folder inside an input folder) is skipped; a directory symlink is followed only once per
    real directory, so link loops terminate; a folder named like an image is treated as a folder.
    The same real file reached twice is kept once. Two inputs that map to the same relative path
    are both kept, with a warning (their outputs would collide).
    """
    excluded = _resolved(Path(exclude)) if exclude is not None else None
    pairs: list[tuple[Path, Path]] = []
    notes: list[str] = []
    for raw in inputs:
        item = Path(raw)
        if item.is_dir():
            if _is_under(_resolved(item), excluded):
                notes.append(f"{item}: is inside the output folder; skipped")
                continue
            _walk(item, recursive=recursive, exclude=excluded, found=pairs, notes=notes)
        elif item.is_file():
            if _is_under(_resolved(item), excluded):
                notes.append(f"{item}: is inside the output folder; skipped")
            elif is_partial_name(item.name):
                notes.append(f"{item}: an unfinished bsgd temporary file; skipped")
            elif is_image_path(item):
                pairs.append((item, Path(item.name)))
            else:
                kinds = ", ".join(sorted(e.lstrip(".") for e in SRGB_EXTENSIONS | RAW_EXTENSIONS))
                notes.append(f"{item}: not a supported image type (expected one of: {kinds}); skipped")
        elif item.is_symlink():
            notes.append(f"{item}: broken symbolic link; skipped")
        else:
            notes.append(f"{item}: not found; skipped, check the path")

    unique: list[tuple[Path, Path]] = []
    seen_files: set[Path] = set()
    owner: dict[str, Path] = {}
    for file, rel in pairs:
        real = _resolved(file)
        if real in seen_files:
            continue
        seen_files.add(real)
        key = rel.as_posix().lower()
        if key in owner:
            notes.append(f"{file}: has the same output name {rel} as {owner[key]}; their outputs would collide")
        else:
            owner[key] = file
        unique.append((file, rel))
    return unique, notes
