"""`make device-data` (scripts/device_data.py): lossless copies, the travel budget, a stable training subset."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_data.py"
KIB = 1024


def _write(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())


@pytest.fixture
def setting(tmp_path: Path) -> tuple[Path, Path]:
    """A git repository with 1 MiB tracked, and a ../shared/data look-alike (contents are random bytes)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".gitignore").write_text("/.device-data/\n")
    _write(repo / "weights.bin", 1024 * KIB, 0)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    shared = tmp_path / "shared"
    for index in range(100):
        _write(shared / "pairs" / "polyu" / f"cam_{index:03d}_real.JPG", 2 * KIB, 1000 + index)
        _write(shared / "pairs" / "polyu" / f"cam_{index:03d}_mean.JPG", 2 * KIB, 2000 + index)
    for index in range(2):
        _write(shared / "pairs" / "nam25" / "noisy" / f"{index:02d}_noise.png", 3 * KIB, 3000 + index)
        _write(shared / "pairs" / "nam25" / "clean" / f"{index:02d}_gt.png", 3 * KIB, 4000 + index)
    (shared / "pairs" / "nam25" / "clean" / "readme.md").write_text("not an image: not copied")
    for name in ("noisy.mat", "gt.mat"):
        _write(shared / "pairs" / "sidd-danet" / name, 1 * KIB, 5000 + len(name))
    for image in range(1, 6):
        for crop in range(1, 4):
            _write(shared / "train" / "dnd" / f"{image:04d}_{crop}.png", 50 * KIB, 100 * image + crop)
    return repo, shared


def _run(repo: Path, shared: Path, budget_mib: float, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--shared", str(shared), "--dest", str(repo / ".device-data"),
                           "--budget-mib", str(budget_mib), "--reserve-mib", "0", "--margin-mib", "0", *extra],
                          capture_output=True, text=True, cwd=repo)


def _travel(repo: Path) -> int:
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=repo, capture_output=True,
                            text=True, check=True).stdout.split("\0")
    data = sum(p.stat().st_size for p in (repo / ".device-data").rglob("*") if p.is_file())
    return sum((repo / name).stat().st_size for name in listed if name) + data


@pytest.mark.slow
def test_fills_the_budget_losslessly_with_a_stable_prefix(setting: tuple[Path, Path]) -> None:
    repo, shared = setting
    done = _run(repo, shared, 1.8)
    assert done.returncode == 0, done.stderr
    data = repo / ".device-data"
    assert _travel(repo) <= 1.8 * 2**20
    polyu = sorted(p.name for p in (data / "polyu").iterdir())
    assert len(polyu) == 120 and polyu[0] == "cam_040_mean.JPG" and polyu[-1] == "cam_099_real.JPG"  # pairs 41-100
    assert len(list((data / "nam25").rglob("*"))) == 4 + 2 and len(list((data / "sidd-danet").iterdir())) == 2
    order = [f"{image:04d}_{crop}.png" for crop in range(1, 4) for image in range(1, 6)]  # every scene's crop 1 first
    taken = sorted((data / "train").iterdir(), key=lambda p: order.index(p.name))
    assert 0 < len(taken) < len(order)
    assert [p.name for p in taken] == order[: len(taken)]
    for path in [*taken, *(data / "polyu").iterdir()]:
        source = shared / ("train/dnd" if path.parent.name == "train" else "pairs/polyu") / path.name
        assert path.read_bytes() == source.read_bytes()
    manifest = json.loads((data / "MANIFEST.json").read_text())
    assert manifest["training_images"] == len(taken)
    entry = next(e for e in manifest["files"] if e["file"] == f"train/{taken[0].name}")
    assert entry["sha256"] == hashlib.sha256(taken[0].read_bytes()).hexdigest()
    assert (
        subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout.strip()
        == "A  .gitignore\nA  weights.bin"
    )

    smaller = _run(repo, shared, 1.7, "--no-nam")  # a smaller budget takes a prefix of the same list
    assert smaller.returncode == 0, smaller.stderr
    fewer = sorted((data / "train").iterdir(), key=lambda p: order.index(p.name))
    assert [p.name for p in fewer] == order[: len(fewer)] and len(fewer) < len(taken)
    assert not (data / "nam25").exists()
    assert _travel(repo) <= 1.7 * 2**20


@pytest.mark.slow
def test_refuses_a_folder_git_would_commit_and_a_budget_with_no_room(setting: tuple[Path, Path]) -> None:
    repo, shared = setting
    (repo / ".gitignore").write_text("")
    refused = _run(repo, shared, 64)
    assert refused.returncode != 0 and "not ignored by git" in refused.stderr
    assert not (repo / ".device-data").exists()
    (repo / ".gitignore").write_text("/.device-data/\n")
    full = _run(repo, shared, 1.0)
    assert full.returncode != 0 and "no room for training images" in full.stderr
