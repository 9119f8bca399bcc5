"""Odd files and names in a batch: say what each is, never hang.

Cases U1, U2, U4, U5, U6 and U13 of docs/RELIABILITY.md (second round).

Pipes, device links and trees deeper than PATH_MAX are made for real; every run has a timeout, so
a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bsgd_cli.cli import EXIT_SOME_FAILED, app
from bsgd_cli.cli._support import printable
from bsgd_cli.io import write_image

from .conftest import CPU, noisy_image

runner = CliRunner()
_BSGD = Path(sys.executable).with_name("bsgd")
BSGD_CMD = [str(_BSGD)] if _BSGD.is_file() else [sys.executable, "-m", "bsgd_cli"]


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed script in a subprocess (a hang would stall an in-process run for good)."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    return subprocess.run([*BSGD_CMD, *args], capture_output=True, timeout=timeout, env=env)


def _lines(stderr: bytes, start: str) -> list[str]:
    return [line for line in stderr.decode("utf-8", "replace").splitlines() if line.startswith(start)]


@pytest.mark.slow
def test_pipes_and_device_links_are_named_and_never_read(tmp_path: Path, tiny_model_file: Path) -> None:  # U5
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "ok.png", noisy_image(8, 8))
    os.mkfifo(folder / "p.png")  # reading it would block forever
    os.symlink("/dev/zero", folder / "zero.png")  # reading it would never end
    os.mkfifo(folder / "pipe")  # not named like an image: skipped, but named
    os.mkfifo(tmp_path / "given.png")
    result = _run(["denoise", str(folder), str(tmp_path / "given.png"), "-o", str(tmp_path / "out"),
                   "--model", str(tiny_model_file), "--mode", "bsn", "--json"], timeout=60)
    assert result.returncode == EXIT_SOME_FAILED, result.stderr
    files = {Path(f["input"]).name: f for f in json.loads(result.stdout)["files"]}
    assert files["ok.png"]["status"] == "done"
    assert "a named pipe (FIFO), not an image file; it was not read" in files["p.png"]["error"]
    assert "a named pipe (FIFO)" in files["given.png"]["error"]  # on the command line: not 'not found'
    assert "a symbolic link to a character device (/dev/zero)" in files["zero.png"]["error"]  # not 'broken'
    skipped = _lines(result.stderr, "skipped")
    assert any(str(folder / "pipe") in line and "named pipe" in line for line in skipped), skipped
    assert len(_lines(result.stderr, "failed")) == 3


def test_a_tree_deeper_than_path_max_fails_the_run_with_the_right_advice(
    tmp_path: Path, tiny_model_file: Path
) -> None:  # U6
    top = tmp_path / "deep"
    top.mkdir()
    write_image(top / "shallow.png", noisy_image(8, 8))
    name = "d" * 200
    fd = os.open(top, os.O_RDONLY)
    try:  # 25 levels of 201 bytes: more than PATH_MAX (4096), made relative to each folder in turn
        for _ in range(25):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        image = os.open("bottom.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        with os.fdopen(image, "wb") as handle:
            Image.new("RGB", (8, 8)).save(handle, format="PNG")
    finally:
        os.close(fd)
    result = runner.invoke(app, ["denoise", str(top), "-r", "-o", str(tmp_path / "out"), "--model",
                                 str(tiny_model_file), "--mode", "bsn", "--json"])
    assert result.exit_code == EXIT_SOME_FAILED, result.output  # was 0 with a permissions hint
    files = json.loads(result.stdout)["files"]
    assert [f["status"] for f in files if Path(f["input"]).name == "shallow.png"] == ["done"]
    [deep] = [f for f in files if f["status"] == "failed"]
    assert "longer than this system allows" in deep["error"] and "permissions" not in deep["error"]
    assert "the images in it were not processed" in deep["error"]


@pytest.mark.slow
def test_control_characters_and_markup_in_names_stay_on_one_line(tmp_path: Path, tiny_model_file: Path) -> None:  # U4
    folder = tmp_path / "in"
    folder.mkdir()
    forged = "bad\nfailed forged.png"  # a name that would print as a second 'failed' line
    for name in (forged, "esc\x1b[31m.png", "[red]x.png", "bidi\u202eg.png"):
        (folder / name).write_bytes(b"not an image")
    result = _run(["denoise", str(folder), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file),
                   "--mode", "bsn", "--json"])
    assert result.returncode == EXIT_SOME_FAILED
    stderr = result.stderr.decode("utf-8")
    failed = _lines(result.stderr, "failed")
    assert len(failed) == 4 and len(stderr.strip().splitlines()) == 4, stderr
    assert "\x1b" not in stderr and "\u202e" not in stderr
    assert any("bad\\nfailed forged.png: not a recognised image" in line for line in failed)
    assert any("[red]x.png" in line for line in failed)  # shown as named, not read as markup
    files = json.loads(result.stdout)["files"]
    assert all("\n" not in f["error"] and "\x1b" not in f["error"] for f in files)
    assert {Path(f["input"]).name for f in files} >= {forged}  # the path itself stays exact


def test_printable_escapes_what_could_break_a_line() -> None:
    assert printable("plain é 漢字 a b") == "plain é 漢字 a b"
    assert printable("a\nb\rc\td\x1b\x7f") == "a\\nb\\rc\\td\\x1b\\x7f"
    assert printable("x\u2028y\u202ez") == "x\\u2028y\\u202ez"
    assert printable(os.fsdecode(b"caf\xe9")) == "caf\\xe9"  # a non-UTF-8 byte of a file name


def test_unsupported_images_are_named_when_skipped(tmp_path: Path, tiny_model_file: Path) -> None:  # U1
    folder = tmp_path / "in"
    folder.mkdir()
    frames = [Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (8, 8)).save(folder / "pic.bmp")
    (folder / "notes.txt").write_text("x")
    write_image(folder / "ok.png", noisy_image(8, 8))
    result = runner.invoke(app, ["denoise", str(folder), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file),
                                 "--mode", "bsn", "-q"])
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert any(str(folder / "anim.gif") in line and "GIF" in line for line in skipped), skipped
    assert any(str(folder / "pic.bmp") in line and "BMP" in line for line in skipped), skipped
    assert any("1 file(s) that are not supported images (.txt)" in line for line in skipped), skipped


def test_in_place_reruns_say_which_files_are_earlier_outputs(tmp_path: Path, tiny_model_file: Path) -> None:  # U13
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b_dn.png"):
        write_image(folder / name, noisy_image(8, 8))
    args = ["denoise", str(folder), "-o", str(folder), "--in-place", "--suffix", "_dn", "--model", str(tiny_model_file),
            "--mode", "bsn", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    done = {Path(f["input"]).name: Path(f["output"]).name for f in json.loads(first.stdout)["files"]}
    assert done == {"a.png": "a_dn.png", "b_dn.png": "b_dn_dn.png"}  # b_dn.png is an input, not dropped
    second = runner.invoke(app, args)
    report = json.loads(second.stdout)
    assert {f["status"] for f in report["files"]} == {"skipped"} and len(report["files"]) == 2
    [note] = report["skipped"]
    assert "2 file(s) are outputs of the other inputs" in note and "a_dn.png" in note
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_dn.png", "b_dn.png", "b_dn_dn.png"]


@pytest.mark.parametrize(("height", "width"), [(1, 40), (40, 1), (3, 3), (1, 1), (5, 7)])
def test_tiny_images_keep_their_brightness_with_the_embedded_model(
    tmp_path: Path, default_model, height: int, width: int
) -> None:  # U2
    from bsgd_cli.batch.denoise import DenoiseOptions, denoise_paths

    noisy = np.clip(0.4 + np.random.default_rng(height * 100 + width).normal(0, 0.05, (height, width, 3)), 0, 1)
    source = tmp_path / "tiny.png"
    write_image(source, noisy.astype(np.float32), bit_depth=16)
    [result] = denoise_paths([source], tmp_path / "out", default_model, DenoiseOptions(runtime=CPU, workers=1))
    assert result.status == "done", result.error
    from bsgd_cli.io import read_image

    before, after = read_image(source).pixels, read_image(result.output).pixels
    assert after.shape == before.shape
    drift = np.abs(after.mean(axis=(0, 1)) / before.mean(axis=(0, 1)) - 1)
    assert drift.max() < 0.02, drift  # was up to 8% (fast) and 26% (bsgd) brighter
    assert not any("brighter" in w or "darker" in w for w in result.warnings), result.warnings
    assert any(f"only {width}x{height} pixels" in w for w in result.warnings), result.warnings


def test_a_non_finite_result_fails_the_file_instead_of_writing_black(
    tmp_path: Path, tiny_model_file: Path, monkeypatch
) -> None:
    import torch

    import bsgd_cli.engine.denoise as inference

    monkeypatch.setattr(inference, "denoise_tensor", lambda net, noisy, *a, **k: torch.full_like(noisy, float("nan")))
    write_image(tmp_path / "a.png", noisy_image(40, 40))
    result = runner.invoke(app, ["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model",
                                 str(tiny_model_file), "--mode", "bsn", "--no-wiener", "--json"])
    assert result.exit_code == EXIT_SOME_FAILED
    [entry] = json.loads(result.stdout)["files"]
    assert entry["error"].startswith(str(tmp_path / "a.png")) and "NaN/Inf" in entry["error"]
    assert not (tmp_path / "out" / "a.png").exists()


def test_unreadable_folder_inside_a_tree_fails_the_run(tmp_path: Path, tiny_model_file: Path, monkeypatch) -> None:
    """The sibling of U6 for any folder that cannot be listed (simulated: root lists every folder)."""
    import bsgd_cli.io.paths as paths

    folder = tmp_path / "in"
    (folder / "locked").mkdir(parents=True)
    write_image(folder / "ok.png", noisy_image(8, 8))
    real = paths._listing

    def listing(path: Path):
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(paths, "_listing", listing)
    result = runner.invoke(app, ["denoise", str(folder), "-r", "-o", str(tmp_path / "out"), "--model",
                                 str(tiny_model_file), "--mode", "bsn", "--json"])
    assert result.exit_code == EXIT_SOME_FAILED
    failed = [f for f in json.loads(result.stdout)["files"] if f["status"] == "failed"]
    assert len(failed) == 1 and "cannot be listed (Permission denied); check its permissions" in failed[0]["error"]


def test_an_output_name_taken_by_a_folder_or_pipe_is_not_an_earlier_output(
    tmp_path: Path, tiny_model_file: Path
) -> None:
    """Only a file counts as 'already there': a folder or pipe of that name was reported skipped before."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        write_image(folder / name, noisy_image(8, 8))
    out = tmp_path / "out"
    (out / "a.png").mkdir(parents=True)
    os.mkfifo(out / "b.png")
    result = runner.invoke(
        app, ["denoise", str(folder), "-o", str(out), "--model", str(tiny_model_file), "--mode", "bsn", "--json"]
    )
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    status = {Path(f["input"]).name: (f["status"], f["error"]) for f in json.loads(result.stdout)["files"]}
    assert status["a.png"][0] == "failed" and "taken by a folder" in status["a.png"][1]
    assert status["b.png"][0] == "failed" and "taken by a named pipe" in status["b.png"][1]
    assert status["c.png"][0] == "done"
