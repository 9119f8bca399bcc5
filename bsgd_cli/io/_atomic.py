"""Atomic file writing: encode into a hidden temporary beside the target, fsync, then rename."""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import ImageWriteError
from .imagedata import PARTIAL_SUFFIX

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NAME_MAX = 255  # bytes in one file name on common file systems
_TEMP_NAME = re.compile(r"\.(?P<name>.*)\.[0-9a-f]{8}" + re.escape(PARTIAL_SUFFIX) + r"(?:\.[^.]*)?", re.DOTALL)


def describe_os_error(exc: BaseException) -> str:
    """Turn an exception raised while writing into '<reason>; <what to do>'."""
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM):
        return "permission denied; choose another -o folder or fix the folder's permissions"
    if getattr(exc, "errno", None) in _DISK_FULL:
        return "disk full; free space or choose another -o folder"
    if getattr(exc, "errno", None) == errno.EROFS:
        return "the disk is read-only; choose another -o folder"
    if getattr(exc, "errno", None) == errno.ENAMETOOLONG:
        return "the file name is too long; choose a shorter output folder or name"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}; check the output folder and try again"
    reason = str(exc) or type(exc).__name__
    return f"the encoder failed ({reason}); try another output format"


def temp_path_for(dest: Path) -> Path:
    """A fresh hidden name in dest's folder: ``.<name>.<random>.partial<ext>`` (ext kept for encoders).

    ``<name>`` is shortened when needed so the temporary fits the 255-byte file-name limit that
    ``dest`` itself fits (a long but valid output name must not fail because of its temporary).
    """
    tail = f".{secrets.token_hex(4)}{PARTIAL_SUFFIX}{dest.suffix.lower()}"
    name = dest.name
    while name and len(os.fsencode(f".{name}{tail}")) > _NAME_MAX:
        name = name[:-1]
    return dest.with_name(f".{name}{tail}")


def remove_stale_temps(targets: Iterable[Path]) -> int:
    """Delete the temporaries a killed writer (SIGKILL, power loss) left for these outputs.

    Lists each folder once; only hidden ``.<name>.<8 hex>.partial<ext>`` files whose ``<name>`` is one
    of the targets' (or, for a shortened name, a prefix of one) are removed. Returns how many.
    """
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        by_folder.setdefault(Path(target).parent, set()).add(Path(target).name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            with os.scandir(folder) as it:
                hidden = [entry.name for entry in it if entry.name.startswith(".")]
        except OSError:
            continue
        for entry in hidden:
            match = _TEMP_NAME.fullmatch(entry)
            if match is None:
                continue
            name = match.group("name")
            shortened = len(os.fsencode(entry)) >= _NAME_MAX - 3
            if name in names or (shortened and name and any(n.startswith(name) for n in names)):
                try:
                    (folder / entry).unlink()
                    removed += 1
                except OSError:
                    pass
    return removed


def atomic_write(dest: Path, encode: Callable[[Path], None]) -> None:
    """Run ``encode(temp_path)`` then move the result onto ``dest`` in one rename.

    The temporary file is created empty with the usual permissions (0666 minus the umask), filled by
    ``encode``, fsynced and renamed over ``dest``. On any failure it is removed and ImageWriteError
    (naming ``dest``) is raised; ``dest`` itself is never left half-written.
    """
    dest = Path(dest)
    if dest.is_dir():
        raise ImageWriteError(f"{dest}: is a folder; choose a file name for the output")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(f"{dest}: cannot create its folder: {describe_os_error(exc)}") from exc
    tmp = temp_path_for(dest)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
    except OSError as exc:
        raise ImageWriteError(f"{dest}: cannot be written: {describe_os_error(exc)}") from exc
    try:
        encode(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, ImageWriteError):
            raise
        if isinstance(exc, Exception):
            raise ImageWriteError(f"{dest}: cannot be written: {describe_os_error(exc)}") from exc
        raise
    _fsync_dir(dest.parent)


def _fsync_dir(folder: Path) -> None:
    """Best-effort fsync of a folder so the rename itself is durable (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
