#!/usr/bin/env python3
"""Fill the GPU slot's data folder from ../shared/data (`make device-data`; docs/GPU.md).

The folder (default .device-data/, ignored by git: the data is under research / non-commercial terms
and must never be committed) travels to the slot with the device tool's `carry`. Everything that
travels (tracked files, untracked files git does not ignore, and the carried folder) must stay within
64 MiB, so the folder takes:

* the evaluation pairs, whole: PolyU pairs 41-100 in sorted file-name order (the report split),
  Nam's 25 pairs and the SIDD pair;
* as many of the 160 noisy DND training crops as the rest of the budget holds, in a fixed order
  that covers every DND scene before a second crop of any (crop 1 of every image, then crop 2 ...),
  so a smaller budget takes a prefix of the same list;

after keeping room for what the next slot adds to the repository (its compact state in training/gpu/
and a larger package model; bsgd_cli.training.slot.predicted_slot_files), so the same images still fit after
a slot's files are committed. Files are copied byte for byte (checked by SHA-256): lossless. A
MANIFEST.json in the folder lists them with the sizes measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20
IMAGES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def travelling_bytes(repo: Path) -> int:
    """Tracked files plus untracked files git does not ignore: what travels without `carry`."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=repo).split("\0")
    return sum((repo / name).stat().st_size for name in set(listed) if name and (repo / name).is_file())


def tracked_size(repo: Path, relative: str) -> int:
    path = repo / relative
    listed = git("ls-files", relative, cwd=repo).strip()
    return path.stat().st_size if listed and path.is_file() else 0


def reserve_bytes(repo: Path) -> int:
    """Room for what a slot adds once its files are committed (bsgd_cli.training.slot.predicted_slot_files)."""
    sys.path.insert(0, str(REPO))
    from bsgd_cli.training.slot import predicted_slot_files

    predicted = predicted_slot_files()
    state = max(0, predicted["state"] - tracked_size(repo, "training/gpu/state.pt"))
    model = max(0, predicted["model"] - tracked_size(repo, "bsgd_cli/models/default.safetensors"))
    return state + model + MIB // 4  # logs and results.json


def training_order(name: str) -> tuple[int, str]:
    """DND crops are IIII_C.png: every image's crop 1 first, then crop 2 ..."""
    stem = Path(name).stem
    image, _, crop = stem.partition("_")
    return (int(crop), image) if crop.isdigit() else (0, stem)


def evaluation_files(shared: Path, nam: bool) -> list[tuple[Path, str]]:
    """(source, destination relative to the data folder) of every evaluation file."""
    polyu = shared / "pairs" / "polyu"
    real = sorted(polyu.glob("*_real.*"))
    if len(real) < 100:
        raise SystemExit(f"{polyu}: expected 100 *_real files, found {len(real)}")
    files = []
    for noisy in real[40:100]:  # pairs 41-100: the report split
        clean = noisy.with_name(noisy.name.replace("_real", "_mean"))
        if not clean.is_file():
            raise SystemExit(f"{clean}: missing; PolyU pairs need both *_real and *_mean")
        files += [(noisy, f"polyu/{noisy.name}"), (clean, f"polyu/{clean.name}")]
    if nam:
        for side in ("noisy", "clean"):
            images = [
                path for path in sorted((shared / "pairs" / "nam25" / side).iterdir()) if path.suffix.lower() in IMAGES
            ]
            files += [(path, f"nam25/{side}/{path.name}") for path in images]
    files += [(shared / "pairs" / "sidd-danet" / name, f"sidd-danet/{name}") for name in ("noisy.mat", "gt.mat")]
    missing = [str(source) for source, _ in files if not source.is_file()]
    if missing:
        raise SystemExit(f"missing evaluation files: {', '.join(missing[:5])}")
    return files


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sync(plan: list[tuple[Path, str]], dest: Path) -> list[dict]:
    """Copy the planned files into ``dest`` (skipping identical ones), remove every other file there."""
    wanted = {relative for _, relative in plan} | {"MANIFEST.json"}
    for path in sorted(dest.rglob("*"), reverse=True):
        relative = path.relative_to(dest).as_posix()
        if path.is_file() and relative not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    entries = []
    for source, relative in plan:
        target = dest / relative
        digest = sha256(source)
        if not (target.is_file() and target.stat().st_size == source.stat().st_size and sha256(target) == digest):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            if sha256(target) != digest:
                raise SystemExit(f"{target}: the copy differs from {source}")
        entries.append({"file": relative, "bytes": target.stat().st_size, "sha256": digest, "source": str(source)})
    return entries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--dest", type=Path, default=REPO / ".device-data")
    parser.add_argument(
        "--budget-mib", type=float, default=64.0, help="What may travel in all (the device tool's limit)."
    )
    parser.add_argument(
        "--reserve-mib",
        type=float,
        default=None,
        help="Room kept for the files a slot adds to the repository (default: predicted from the gpu preset).",
    )
    parser.add_argument(
        "--margin-mib", type=float, default=0.5, help="Further room for small changes to tracked files."
    )
    parser.add_argument(
        "--no-nam", action="store_true", help="Leave Nam out (13 MB: room for about 28 more training crops)."
    )
    args = parser.parse_args()

    dest = args.dest.resolve()
    repo = Path(git("rev-parse", "--show-toplevel", cwd=dest.parent if dest.parent.is_dir() else REPO).strip())
    if subprocess.run(["git", "check-ignore", "-q", f"{dest}/MANIFEST.json"], cwd=repo).returncode != 0:
        raise SystemExit(
            f"{dest} is not ignored by git: add /{dest.name}/ to .gitignore first (the data must never be committed)"
        )
    travelling = travelling_bytes(repo)
    reserve = int(args.reserve_mib * MIB) if args.reserve_mib is not None else reserve_bytes(repo)
    evaluation = evaluation_files(args.shared, nam=not args.no_nam)
    evaluation_bytes = sum(source.stat().st_size for source, _ in evaluation)
    room = int(args.budget_mib * MIB) - travelling - reserve - int(args.margin_mib * MIB) - evaluation_bytes - 64 * 1024
    candidates = sorted((shared_file for shared_file in (args.shared / "train" / "dnd").glob("*.png")),
                        key=lambda path: training_order(path.name))
    if room <= 0 or not candidates:
        raise SystemExit(
            f"no room for training images: {travelling / MIB:.1f} MiB travel already, {reserve / MIB:.1f} MiB "
            f"kept for a slot's files, {evaluation_bytes / MIB:.1f} MiB of evaluation pairs"
        )
    training: list[tuple[Path, str]] = []
    used = 0
    for path in candidates:
        size = path.stat().st_size
        if used + size > room:
            break
        training.append((path, f"train/{path.name}"))
        used += size
    dest.mkdir(parents=True, exist_ok=True)
    entries = sync(evaluation + training, dest)
    manifest = {
        "note": "research / non-commercial data from ../shared/data: never commit this folder",
        "training_images": len(training), "training_candidates": len(candidates),
        "bytes": {"tracked_and_untracked": travelling, "reserved_for_slot_files": reserve,
                  "evaluation": evaluation_bytes, "training": used},
        "budget_bytes": int(args.budget_mib * MIB), "nam": not args.no_nam,
        "files": entries,
    }
    (dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    data_bytes = sum(path.stat().st_size for path in dest.rglob("*") if path.is_file())
    total = travelling + data_bytes
    print(
        f"{dest}: {len(training)} of {len(candidates)} training crops ({used / MIB:.1f} MiB), evaluation pairs "
        f"{evaluation_bytes / MIB:.1f} MiB ({'PolyU 41-100, ' + ('Nam 25, ' if not args.no_nam else '') + 'SIDD pair'})"
    )
    print(
        f"travels: {travelling / MIB:.1f} MiB of repository + {data_bytes / MIB:.1f} MiB of data = "
        f"{total / MIB:.1f} MiB of {args.budget_mib:g}; {reserve / MIB:.1f} MiB kept for the next slot's files"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
