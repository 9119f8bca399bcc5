"""Output planning for ``bsgd denoise``: which file each input is written to.

The guarantees (docs/RELIABILITY.md, "Output planning"), for any number of inputs and folders:

* every input gets its own output: no two inputs share an output name, compared as a
  case-insensitive file system would (``A.png`` and ``a.png`` clash), and no input's renamed output
  lands on a name another input would use without renaming (its own output, its ``--compare``
  view, or the TIFF a RAW-domain DNG output falls back to);
* every output lies inside the output folder (``--suffix`` may not hold a path separator or "..");
* the plan depends only on the inputs' names, not on the order they were given in, nor on the
  outputs an earlier run left: rerunning a command plans the same names, so it skips what is done.

Inputs that clash are all renamed: the source extension is added to the stem (``a.jpg`` and ``a.png``
with ``--ext png`` become ``a_jpg.png`` and ``a_png.png``), then a number where that is not enough
(``x.png`` in two input folders becomes ``x_png.png`` and ``x_png_2.png``, in the order of their
paths). A file that is the planned output of another input (an earlier run's output beside its input
with ``--in-place --suffix``) is not an input again; it is reported as such.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RawOutput
from ..errors import ConfigError
from ..io.imagedata import is_raw_path
from ..io.paths import discover

_NAME_MAX = 255  # bytes in one file name on common file systems
_RAW_DEFAULT_EXT = ".tif"
COMPARE_TAIL = "_compare.png"


@dataclass(frozen=True)
class Naming:
    """What decides output names: ``ext`` ("keep" or an extension without the dot), ``suffix``,
    ``raw_output`` ("tiff" or "dng"), and whether ``--compare`` views are written beside."""

    ext: str = "keep"
    suffix: str = ""
    raw_output: RawOutput = "tiff"
    compare: bool = False


@dataclass
class Planned:
    """One input and its output; ``notes`` say why the name differs from the plain one."""

    source: Path
    target: Path
    notes: list[str] = field(default_factory=list)


def check_suffix(suffix: str) -> None:
    """Refuse a ``--suffix`` that could leave the output folder or make a broken name."""
    if "/" in suffix or "\\" in suffix or (os.altsep and os.altsep in suffix):
        raise ConfigError(f"--suffix {suffix!r} holds a path separator; use plain characters such as _denoised")
    if ".." in suffix:
        raise ConfigError(f"--suffix {suffix!r} holds '..'; use plain characters such as _denoised")
    if suffix.casefold().endswith(COMPARE_TAIL.removesuffix(".png")):
        raise ConfigError(
            f"--suffix {suffix!r} ends like the names of the --compare views (NAME_compare.png); choose another"
        )
    if any(unicodedata.category(ch) == "Cc" for ch in suffix):
        raise ConfigError("--suffix holds a control character; use plain characters such as _denoised")


def name_key(path: Path | str) -> str:
    """How a case-insensitive, normalising file system (macOS, Windows) compares two paths."""
    return unicodedata.normalize("NFC", os.fsdecode(os.fspath(path))).casefold()


def _extension(source: Path, naming: Naming) -> str:
    if naming.raw_output == "dng" and is_raw_path(source):
        return ".dng"
    if naming.ext == "keep":
        return _RAW_DEFAULT_EXT if is_raw_path(source) else source.suffix
    return "." + naming.ext


def _fit(stem: str, tail: str) -> str:
    """``stem + tail``, with ``stem`` shortened so the name fits in 255 bytes (only for renamed outputs)."""
    while stem and len(os.fsencode(stem + tail)) > _NAME_MAX:
        stem = stem[:-1]
    return stem + tail


def output_path_for(source: Path, relative: Path, out_dir: Path, naming: Naming, tag: str = "") -> Path:
    """``out_dir / relative`` with the chosen extension and suffix (RAW keeps as 16-bit TIFF).

    ``tag`` (``_jpg``, ``_jpg_2`` ...) goes between the stem and the suffix for a renamed output.
    """
    tail = f"{tag}{naming.suffix}{_extension(source, naming)}"
    name = _fit(relative.stem, tail) if tag else relative.stem + tail
    return out_dir / relative.parent / name


def claims(target: Path, source: Path, naming: Naming) -> list[Path]:
    """Every file an input may write: its output, its compare view, its TIFF fallback for a DNG output."""
    paths = [target]
    if naming.compare:
        paths.append(target.with_name(f"{target.stem}{COMPARE_TAIL}"))
    if target.suffix.lower() == ".dng" and is_raw_path(source):
        paths.append(target.with_suffix(_RAW_DEFAULT_EXT))
    return paths


def _tags(source: Path) -> Iterator[str]:
    kind = source.suffix.lstrip(".").lower() or "file"
    yield f"_{kind}"
    number = 2
    while True:
        yield f"_{kind}_{number}"
        number += 1


def plan_outputs(found: list[tuple[Path, Path]], out_dir: Path, naming: Naming) -> list[Planned]:
    """Pair every (source, relative path) with its own output under ``out_dir`` (see the module doc)."""
    plain = [output_path_for(source, rel, out_dir, naming) for source, rel in found]
    owners: dict[str, set[int]] = {}
    for index, ((source, _rel), target) in enumerate(zip(found, plain, strict=True)):
        for path in claims(target, source, naming):
            owners.setdefault(name_key(path), set()).add(index)
    blocked = set(owners)  # no renamed output takes a name that any input claims plainly
    clashing = [
        index for index, ((source, _rel), target) in enumerate(zip(found, plain, strict=True))
        if any(len(owners[name_key(path)]) > 1 for path in claims(target, source, naming))
    ]
    planned = [Planned(source, target) for (source, _rel), target in zip(found, plain, strict=True)]
    # Order-independent: clashing inputs are renamed in the order of their paths, not of the command line.
    for index in sorted(clashing, key=lambda i: os.fsencode(found[i][0])):
        source, rel = found[index]
        for tag in _tags(source):
            target = output_path_for(source, rel, out_dir, naming, tag)
            keys = {name_key(path) for path in claims(target, source, naming)}
            if not keys & blocked:
                blocked |= keys
                planned[index] = Planned(
                    source, target,
                    [f"another input also makes {plain[index].name}; written as {target.name} instead"],
                )
                break
    _check_inside(planned, out_dir)
    return planned


def _check_inside(planned: list[Planned], out_dir: Path) -> None:
    """Defence in depth: every output is lexically inside ``out_dir`` (``check_suffix`` makes it so)."""
    root = os.path.normpath(out_dir)
    for item in planned:
        target = os.path.normpath(item.target)
        if os.path.commonpath([root, target]) != root or target == root:
            raise ConfigError(
                f"{item.source}: its output {item.target} would lie outside {out_dir}; choose another --suffix"
            )


def _resolved_key(path: Path) -> str:
    try:
        return name_key(path.parent.resolve() / path.name)
    except (OSError, RuntimeError):
        return name_key(path.absolute())


def plan_without_earlier_outputs(
    found: list[tuple[Path, Path]], out_dir: Path, naming: Naming
) -> tuple[list[Planned], list[Path]]:
    """:func:`plan_outputs` over the inputs that are not another input's planned output.

    Only matters when outputs are written beside inputs (``--in-place --suffix``): an earlier run's
    ``a_dn.png`` is then the planned output of ``a.png``, not a new input (which a rerun would
    otherwise denoise again into ``a_dn_dn.png``). Returns the plan and the files left out.
    """
    out_resolved = out_dir.resolve()
    current = list(found)
    left_out: list[Path] = []
    while True:
        planned = plan_outputs(current, out_dir, naming)
        targets: dict[str, int] = {}
        for index, ((source, rel), item) in enumerate(zip(current, planned, strict=True)):
            # The plain name counts too: an earlier output can make its maker clash and be renamed.
            for target in (output_path_for(source, rel, out_dir, naming), item.target):
                for path in claims(out_resolved / target.relative_to(out_dir), source, naming):
                    targets[name_key(path)] = index
        producer = {index: targets.get(_resolved_key(source), index) for index, (source, _rel) in enumerate(current)}
        earlier = {index for index, maker in producer.items() if maker != index}
        if not earlier:
            return planned, left_out
        # In a chain a.png -> a_dn.png -> a_dn_dn.png only the first link is surely an output; the
        # rest are decided again once it is gone (a_dn_dn.png may be an original).
        earlier = {index for index in earlier if producer[index] not in earlier} or earlier
        left_out += [current[index][0] for index in sorted(earlier)]
        current = [item for index, item in enumerate(current) if index not in earlier]


@dataclass
class Job:
    """One input to denoise: ``index`` in the whole batch (it seeds the random draws), its output, notes."""

    index: int
    source: Path
    target: Path
    notes: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """What ``bsgd denoise`` will do: this process's jobs, notes for the user, and inputs that cannot
    be looked at (a folder that cannot be listed) as (path, reason)."""

    jobs: list[Job]
    notes: list[str]
    unlisted: list[tuple[Path, str]]


def _earlier_outputs_note(left_out: list[Path], naming: Naming) -> str:
    shown = ", ".join(str(path) for path in left_out[:3]) + (
        f" and {len(left_out) - 3} more" if len(left_out) > 3 else ""
    )
    return (
        f"{len(left_out)} file(s) are outputs of the other inputs (written by an earlier run with --suffix "
        f"{naming.suffix!r}), not denoised again: {shown}; skipped"
    )


def _check_locations(inputs: list[Path], out_dir: Path, planned: list[Planned], in_place: bool, suffix: str) -> None:
    out_resolved = out_dir.resolve()
    for item in inputs:
        folder = item.resolve() if item.is_dir() else item.resolve().parent
        if folder == out_resolved and not (in_place and suffix):
            raise ConfigError(
                f"{out_dir}: is the input folder; choose another -o folder, or pass --in-place with a --suffix"
            )
    for job in planned:
        if _resolved_key(job.source) == _resolved_key(job.target):
            raise ConfigError(
                f"{job.source}: the output would replace the input; add a --suffix or choose another -o folder"
            )


def collect_jobs(
    inputs: list[Path],
    out_dir: Path,
    naming: Naming,
    *,
    recursive: bool,
    in_place: bool,
    shard: tuple[int, int] | None = None,
) -> Batch:
    """Expand files and folders into numbered jobs for this shard (file i goes to rank i mod world)."""
    check_suffix(naming.suffix)
    missing = [str(p) for p in inputs if not p.exists() and not p.is_symlink()]
    if missing:
        raise ConfigError(f"input not found: {', '.join(missing)}; check the path")
    # Skip our own earlier outputs when -o lies inside an input folder; an -o equal to an input
    # folder (--in-place) excludes nothing here: plan_without_earlier_outputs sorts those out.
    out_resolved = out_dir.resolve()
    inside_input = any(
        item.is_dir() and out_resolved != item.resolve() and out_resolved.is_relative_to(item.resolve())
        for item in inputs
    )
    found = discover(inputs, recursive=recursive, exclude=out_dir if inside_input else None)
    planned, left_out = plan_without_earlier_outputs(found.images, out_dir, naming)
    _check_locations(inputs, out_dir, planned, in_place, naming.suffix)
    notes = list(found.notes) + ([_earlier_outputs_note(left_out, naming)] if left_out else [])
    jobs = [Job(index, item.source, item.target, item.notes) for index, item in enumerate(planned)]
    unlisted = found.unlisted
    if shard is not None:
        rank, world = shard
        jobs = [job for job in jobs if job.index % world == rank]
        unlisted = unlisted if rank == 0 else []  # reported once, by rank 0
    return Batch(jobs, notes, unlisted)
