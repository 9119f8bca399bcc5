"""Reliability (docs/RELIABILITY.md): bad inputs, output failures, interruption, hostile model files, properties.

Every case is tried for real where the machine allows it: the bad-input corpus is generated here and
run as one batch through the installed ``bsgd`` script; an unreadable file is made unreadable even as
root by dropping the DAC capabilities with ``setpriv``; a read-only and a full disk are real tmpfs
mounts when this process may mount (root), else the error is injected where the writer meets it;
interruptions are real signals to real processes. See docs/RELIABILITY.md for the observed results.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from bsgd_cli.batch.denoise import DenoiseOptions, denoise_paths
from bsgd_cli.checkpoint import load_model, read_metadata, save_model
from bsgd_cli.cli import EXIT_INTERRUPTED, EXIT_SOME_FAILED, EXIT_TERMINATED, EXIT_USAGE, app
from bsgd_cli.config import PRESETS, SamplerOverrides, TilingConfig
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.engine.model import BsgdModel
from bsgd_cli.io import read_image, write_dng, write_image
from bsgd_cli.io._png import encode_png
from bsgd_cli.training.train import read_state

from .conftest import CPU, noisy_image

runner = CliRunner()
_BSGD = Path(sys.executable).with_name("bsgd")
BSGD_CMD = [str(_BSGD)] if _BSGD.is_file() else [sys.executable, "-m", "bsgd_cli"]
# Start the child with SIGINT at its default even when the test runner ignores it (a background job):
# Python then installs its KeyboardInterrupt handler, as it does for a user at a terminal.
_SIGINT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"
)


def _spawn(args: list[str], *, prefix: list[str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # as in a UTF-8 desktop locale
    command = [sys.executable, "-c", _SIGINT_DEFAULT, *(prefix or []), *BSGD_CMD, *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _fingerprints(folder: Path) -> dict[str, tuple]:
    """Hash (and size, mtime) of every regular file under ``folder``, links not followed."""
    prints: dict[str, tuple] = {}
    for root, dirs, files in os.walk(folder):
        for name in files + dirs:
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            stat = path.stat()
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except PermissionError:  # an unreadable input when not root: size and time must do
                digest = None
            prints[str(path)] = (digest, stat.st_size, stat.st_mtime_ns, stat.st_mode)
    return prints


def _partials(folder: Path) -> list[str]:
    return [name for _, dirs, files in os.walk(folder) for name in files + dirs if ".partial" in name]


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def _cut(path: Path, keep: float) -> bytes:
    data = path.read_bytes()
    path.unlink()
    return data[: int(len(data) * keep)]


def _unreadable_prefix(tmp: Path) -> list[str] | None:
    """A command prefix under which a chmod 000 file really cannot be read; None where impossible.

    Root reads any file (CAP_DAC_OVERRIDE); ``setpriv`` drops that capability for the child only.
    """
    probe = tmp / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        if os.geteuid() != 0:
            return [] if not os.access(probe, os.R_OK) else None
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return None
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]
        check = subprocess.run([*prefix, "test", "-r", str(probe)], capture_output=True)
        return prefix if check.returncode == 1 else None
    finally:
        probe.unlink()


# ------------------------------------------------------------------------ 1. the bad-input corpus

NON_UTF8 = os.fsdecode(b"caf\xe9 \xff.png")  # Latin-1 bytes: not valid UTF-8
LONG = "long_" + "n" * 241 + ".png"  # 250 bytes, under the 255-byte limit (its temporary is not)

# name -> expected (channels_in, bit_depth) of the output for the files that must be *processed*.
# Decisions: CMYK and palette images come out as RGB (denoised colours leave the palette/ink space);
# 1-bit comes out as 8-bit grey (denoising makes grey levels); float TIFF stays float with NaN/Inf
# replaced (and reported as a warning); tiny images are processed at their size.
PROCESSED = {
    "good.png": (3, 8), "cmyk.jpg": (3, 8), "palette.png": (3, 8), "onebit.png": (1, 8),
    "grey16.png": (1, 16), "nan.tif": (3, 32), "one_by_one.png": (3, 8), "seven_by_three.png": (3, 8),
    "dir.jpg/inner.png": (3, 8), NON_UTF8: (3, 8), LONG: (3, 8), "ok.dng": (3, 16),
}
# name -> words its one error line must contain
REFUSED = {
    "empty.jpg": ["empty (0 bytes)"],
    "trunc.jpg": ["damaged or incomplete"],
    "trunc.png": ["damaged or incomplete"],
    "trunc.tif": ["damaged or incomplete"],
    "trunc.dng": ["damaged or incomplete"],
    "notes.jpg": ["not a recognised image", "renamed document"],
    "bomb.png": ["100000x100000", "megapixels", "limit of 50", "downscale"],
    "locked.png": ["Permission denied", "check its permissions"],
}


def _make_corpus(folder: Path, with_unreadable: bool) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = lambda h, w: noisy_image(h, w, seed=int(rng.integers(1000)))  # noqa: E731
    write_image(folder / "good.png", rgb(24, 32))
    write_image(folder / "j.jpg", rgb(24, 32))
    (folder / "trunc.jpg").write_bytes(_cut(folder / "j.jpg", 2 / 3))
    write_image(folder / "p.png", rng.random((24, 32, 3)).astype(np.float32))
    (folder / "trunc.png").write_bytes(_cut(folder / "p.png", 1 / 2))
    write_image(folder / "t.tif", rgb(24, 32))
    (folder / "trunc.tif").write_bytes(_cut(folder / "t.tif", 0.8))
    mosaic = (rng.random((32, 48)) * 4000 + 500).astype(np.uint16)
    write_dng(folder / "ok.dng", mosaic, cfa_pattern="RGGB", black_level=500, white_level=4500)
    (folder / "trunc.dng").write_bytes((folder / "ok.dng").read_bytes()[:1800])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("Shopping list:\n- milk\n- photos\n" * 20)
    (folder / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    Image.new("CMYK", (20, 12), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)
    Image.fromarray(_u8(rgb(20, 24))).quantize(16).save(folder / "palette.png")
    Image.fromarray(rng.random((10, 12)) > 0.5).save(folder / "onebit.png")
    Image.fromarray((rgb(18, 22).mean(axis=2) * 65535).astype(np.uint16)).save(folder / "grey16.png")
    floats = rgb(16, 20)
    floats[0, 0, 0], floats[1, 1, 1], floats[2, 2, 2] = np.nan, np.inf, -np.inf
    tifffile.imwrite(folder / "nan.tif", floats, photometric="rgb")
    write_image(folder / "one_by_one.png", rgb(1, 1))
    write_image(folder / "seven_by_three.png", rgb(3, 7))
    (folder / "dir.jpg").mkdir()  # a folder named like an image: a folder, searched with --recursive
    write_image(folder / "dir.jpg" / "inner.png", rgb(8, 8))
    os.symlink(".", folder / "loop")  # a folder link back to its parent
    os.symlink("self_loop.jpg", folder / "self_loop.jpg")  # a link to itself
    Image.fromarray(_u8(rgb(8, 8))).save(folder / NON_UTF8)
    Image.fromarray(_u8(rgb(8, 8))).save(folder / LONG)
    if with_unreadable:
        write_image(folder / "locked.png", rgb(8, 8))
        (folder / "locked.png").chmod(0)


@pytest.mark.slow
def test_bad_input_corpus_in_one_batch(tmp_path: Path, tiny_model_file: Path) -> None:
    prefix = _unreadable_prefix(tmp_path)
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    _make_corpus(corpus, with_unreadable=prefix is not None)
    refused = {k: v for k, v in REFUSED.items() if prefix is not None or k != "locked.png"}
    before = _fingerprints(corpus)
    process = _spawn(
        ["denoise", str(corpus), "-o", str(out), "--recursive", "--max-megapixels", "50", "--json",
         "--model", str(tiny_model_file), "--mode", "bsn", "--device", "cpu"],
        prefix=prefix,
    )
    stdout, stderr_bytes = process.communicate(timeout=600)
    stderr = stderr_bytes.decode("utf-8", "backslashreplace")
    assert process.returncode == EXIT_SOME_FAILED, stderr
    assert "Traceback" not in stderr
    report = json.loads(stdout.decode("utf-8"))  # valid UTF-8 JSON even for a non-UTF-8 file name
    results = {Path(f["input"]).relative_to(corpus).as_posix(): f for f in report["files"]}
    assert {name: r["status"] for name, r in results.items()} == {
        **{name: "done" for name in PROCESSED}, **{name: "failed" for name in refused}
    }
    failed_lines = [line for line in stderr.splitlines() if line.startswith("failed ")]
    assert len(failed_lines) == len(refused)
    for name, words in refused.items():
        error = results[name]["error"]
        assert str(corpus / name) in error and ";" in error, error  # names the file, then what to do
        for word in words:
            assert word in error, error
        assert sum(f"{name}:" in line for line in failed_lines) == 1  # one line each, unwrapped
    assert any("loop" in line and "symbolic link" in line for line in stderr.splitlines())
    assert any("self_loop.jpg" in line and line.startswith("skipped") for line in stderr.splitlines())
    assert "NaN" in " ".join(results["nan.tif"]["warnings"])
    assert "CMYK" in " ".join(results["cmyk.jpg"]["warnings"])
    for name, (channels, depth) in PROCESSED.items():
        source, output = read_image(corpus / name), read_image(results[name]["output"])
        assert (output.height, output.width) == (source.height, source.width), name
        assert (output.channels_in, output.bit_depth) == (channels, depth), name
        assert np.isfinite(output.pixels).all()
    assert np.isfinite(tifffile.imread(results["nan.tif"]["output"])).all()  # the file itself, not its reading
    assert (out / NON_UTF8).is_file() and (out / LONG).is_file() and (out / "ok.tif").is_file()
    assert (out / "one_by_one.png").is_file() and Image.open(out / "seven_by_three.png").size == (7, 3)
    assert _fingerprints(corpus) == before  # no input touched
    assert _partials(out) == [] and _partials(corpus) == []


def test_unreadable_file_simulated_in_process(tmp_path: Path, tiny_model_file: Path, monkeypatch) -> None:
    """The same case without setpriv (root ignores chmod): opening fails with EACCES as it would."""
    import bsgd_cli.io.images as images

    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "locked.png", noisy_image(8, 8))
    write_image(folder / "fine.png", noisy_image(8, 8))
    real_open = open

    def guarded_open(path, *args, **kwargs):
        if Path(path).name == "locked.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(images, "open", guarded_open, raising=False)
    result = runner.invoke(app, ["denoise", str(folder), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file),
                                 "--mode", "bsn", "--device", "cpu", "--json"])
    assert result.exit_code == EXIT_SOME_FAILED
    status = {Path(f["input"]).name: (f["status"], f["error"]) for f in json.loads(result.stdout)["files"]}
    assert status["fine.png"][0] == "done" and status["locked.png"][0] == "failed"
    assert "locked.png: cannot be opened (Permission denied); check its permissions" in status["locked.png"][1]


# ----------------------------------------------------------------------------- 2. output problems


@contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[bool]:
    """Mount a tmpfs at ``where`` when allowed (yields True), else just a folder (yields False)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = False
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                                 capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _denoise_json(args: list[str], model: Path):
    result = runner.invoke(app, ["denoise", *args, "--model", str(model), "--mode", "bsn", "--device", "cpu", "--json"])
    assert "Traceback" not in result.output
    return result, ({Path(f["input"]).name: f for f in json.loads(result.stdout)["files"]} if result.stdout else {})


def test_read_only_output_folder(tmp_path: Path, tiny_model_file: Path, monkeypatch) -> None:
    import bsgd_cli.io._atomic as atomic

    source = tmp_path / "a.png"
    write_image(source, noisy_image(16, 16))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as mounted:
        if not mounted:  # no mount allowed: the write fails the way a read-only disk makes it fail
            real_os_open = os.open

            def read_only(path, *args, **kwargs):
                if Path(path).is_relative_to(tmp_path / "ro"):
                    raise OSError(errno.EROFS, "Read-only file system", str(path))
                return real_os_open(path, *args, **kwargs)

            monkeypatch.setattr(atomic.os, "open", read_only)
        result, files = _denoise_json([str(source), "-o", str(tmp_path / "ro" / "out")], tiny_model_file)
        monkeypatch.undo()
        assert result.exit_code == EXIT_SOME_FAILED
        assert files["a.png"]["status"] == "failed"
        assert "the disk is read-only; choose another -o folder" in files["a.png"]["error"]
        assert len([line for line in result.stderr.splitlines() if line.startswith("failed")]) == 1
    # Permission denied (a folder we may not write to): as root only simulable, at the same call.
    locked = tmp_path / "locked"
    locked.mkdir()
    real_open = os.open

    def denied(path, *args, **kwargs):
        if Path(path).parent == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", denied)
    result, files = _denoise_json([str(source), "-o", str(locked)], tiny_model_file)
    assert result.exit_code == EXIT_SOME_FAILED
    assert "permission denied; choose another -o folder or fix the folder's permissions" in files["a.png"]["error"]
    assert list(locked.iterdir()) == []
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest


@pytest.mark.slow
def test_disk_full(tmp_path: Path, tiny_model_file: Path, monkeypatch) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a_small.png", noisy_image(16, 16))  # about 1 KB: fits
    write_image(folder / "b_big.png", np.random.default_rng(0).random((200, 200, 3)).astype(np.float32))  # ~120 KB
    with _tmpfs(tmp_path / "full", "size=64k") as mounted:
        if not mounted:
            import bsgd_cli.io.images as images

            real_save = images._pillow_save

            def fills_disk(tmp, samples, *args):
                if samples.shape[0] > 100:
                    Path(tmp).write_bytes(b"\x89PNG half")
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real_save(tmp, samples, *args)

            monkeypatch.setattr(images, "_pillow_save", fills_disk)
        out = tmp_path / "full"
        result, files = _denoise_json([str(folder), "-o", str(out), "--tile", "64"], tiny_model_file)
        assert result.exit_code == EXIT_SOME_FAILED
        assert files["a_small.png"]["status"] == "done"
        assert files["b_big.png"]["status"] == "failed"
        assert "disk full; free space or choose another -o folder" in files["b_big.png"]["error"]
        assert sorted(p.name for p in out.iterdir()) == ["a_small.png"]  # no partial file left
        read_image(out / "a_small.png")


def test_output_inside_input_is_not_reprocessed(tmp_path: Path, tiny_model_file: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        write_image(folder / name, noisy_image(16, 20))
    out = folder / "clean"
    for run, expected in ((1, "done"), (2, "skipped")):
        result, files = _denoise_json([str(folder), "-o", str(out), "--recursive"], tiny_model_file)
        assert result.exit_code == 0, result.output
        assert {name: f["status"] for name, f in files.items()} == {"a.png": expected, "b.png": expected}, run
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert produced == ["a.png", "sub/b.png"]  # never clean/clean/...


def test_temporaries_fit_the_name_limit_and_stale_ones_are_recognised(tmp_path: Path) -> None:
    from bsgd_cli.io._atomic import remove_stale_temps, temp_path_for
    from bsgd_cli.io.imagedata import is_partial_name

    long_target, other = tmp_path / LONG, tmp_path / "other.png"
    temps = [temp_path_for(long_target), temp_path_for(other), temp_path_for(tmp_path / ("é" * 120 + ".png"))]
    for temp in temps:
        assert len(os.fsencode(temp.name)) <= 255 and is_partial_name(temp.name)
        temp.write_bytes(b"left by a killed run")
    assert remove_stale_temps([long_target]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(t.name for t in temps[1:])


# ------------------------------------------------------------------------------- 3. interruption


def _twelve_images(folder: Path) -> list[str]:
    folder.mkdir()
    names = [f"img{i:02d}.png" for i in range(12)]
    for i, name in enumerate(names):
        write_image(folder / name, noisy_image(SIDE, SIDE, seed=i))
    return names


def _run_until_outputs(args: list[str], out: Path, count: int, *, timeout: float = 600) -> subprocess.Popen:
    process = _spawn(args)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.is_dir() and len([p for p in out.iterdir() if not p.name.startswith(".")]) >= count:
            return process
        if process.poll() is not None:
            pytest.fail(f"bsgd exited early: {process.communicate()[1].decode(errors='replace')}")
        time.sleep(0.02)
    process.kill()
    pytest.fail("no outputs appeared in time")


def _check_visible_outputs(out: Path, size: tuple[int, int]) -> set[str]:
    names = set()
    for path in out.iterdir():
        if path.name.startswith("."):
            continue
        image = read_image(path)  # complete and decodable
        assert (image.height, image.width) == size
        names.add(path.name)
    return names


SIDE = 64
# Slow enough per image (about a second here) to be killed mid-batch, fast enough to start with.
SLOW = ["--mode", "bsgd", "--steps", "2", "--runs", "1", "--device", "cpu", "--workers", "1", "-q"]


@pytest.mark.slow
def test_sigkill_mid_batch_then_rerun_does_only_the_rest(tmp_path: Path, tiny_model_file: Path) -> None:
    names = _twelve_images(tmp_path / "in")
    before = _fingerprints(tmp_path / "in")
    out = tmp_path / "out"
    process = _run_until_outputs(
        ["denoise", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_file), *SLOW], out, 2
    )
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    finished = _check_visible_outputs(out, (SIDE, SIDE))
    assert 2 <= len(finished) < len(names), "the batch finished before the kill"
    # What a kill during a write leaves: a hidden temporary, never a visible output. Plant one for a
    # missing output (whatever the kill left is there too) and a stranger's hidden file.
    missing = sorted(set(names) - finished)
    (out / f".{missing[-1]}.0123abcd.partial.png").write_bytes(b"\x89PNG half written")
    (out / ".keep").write_text("not ours")
    result, files = _denoise_json([str(tmp_path / "in"), "-o", str(out)], tiny_model_file)
    assert result.exit_code == 0, result.output
    assert {name for name, f in files.items() if f["status"] == "skipped"} == finished
    assert {name for name, f in files.items() if f["status"] == "done"} == set(missing)
    assert _check_visible_outputs(out, (SIDE, SIDE)) == set(names)
    assert _partials(out) == [] and (out / ".keep").is_file()  # stale temporaries of ours removed
    assert _fingerprints(tmp_path / "in") == before


@pytest.mark.slow
def test_sigint_mid_batch_exits_130_cleanly(tmp_path: Path, tiny_model_file: Path) -> None:
    names = _twelve_images(tmp_path / "in")
    out = tmp_path / "out"
    process = _run_until_outputs(
        ["denoise", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_file), *SLOW], out, 2
    )
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    message = stderr.decode(errors="replace")
    assert process.returncode == EXIT_INTERRUPTED, message
    assert "interrupted" in message and "rerun the same command to continue" in message
    assert "Traceback" not in message and "KeyboardInterrupt" not in message
    finished = _check_visible_outputs(out, (SIDE, SIDE))
    assert 2 <= len(finished) < len(names)
    assert _partials(out) == []  # writes in flight were finished, not abandoned


@pytest.mark.slow
def test_train_sigkill_then_resume_loses_at_most_one_checkpoint_interval(tmp_path: Path) -> None:
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    for i in range(3):
        Image.fromarray(_u8(noisy_image(48, 48, seed=i))).save(noisy / f"n{i}.png")
    run = tmp_path / "run"
    every = 2
    args = ["--noisy-dir", str(noisy), "-o", str(run), "--preset", "tiny", "--batch", "1", "--patch", "40",
            "--log-every", "1", "--val-every", "100000", "--checkpoint-every", str(every), "--precision", "fp32",
            "--device", "cpu", "-q"]
    child = _spawn(["train", *args, "--steps", "100000"])
    log = run / "log.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and child.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= every + 1:
            break
        time.sleep(0.02)
    assert child.poll() is None, child.communicate()[1].decode(errors="replace")
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    logged = [json.loads(line)["step"] for line in log.read_text().splitlines() if line.strip().endswith("}")]
    saved = int(read_state(run)["step"])  # the state file survived the kill intact
    assert saved >= every and saved % every == 0
    assert 0 <= logged[-1] - saved <= every  # lost at most the steps since the last checkpoint
    total = logged[-1] + 1
    result = runner.invoke(app, ["train", *args, "--steps", str(total), "--resume"])
    assert result.exit_code == 0, result.output
    resumed = [json.loads(line)["step"] for line in log.read_text().splitlines()][len(logged):]
    assert resumed[0] == saved + 1 and resumed[-1] == total
    assert int(read_state(run)["step"]) == total
    assert load_model(run / "model.safetensors").info["steps_done"] == total


# ------------------------------------------------------------------------------ 4. model files


class _Armed:
    """Unpickling this runs ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _hostile_model(kind: str, path: Path, marker: Path) -> None:
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"weights": _Armed(marker)}))
    elif kind == "torch-zip":
        torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": _Armed(marker)}, str(path))
    elif kind == "wrong-shapes":
        from safetensors.torch import save_file

        save_model(path, BsgdModel(PRESETS["tiny"]))
        metadata = {"format": "bsgd-model", "format_version": "1", "sampler": "{}", "info": "{}",
                    "config": json.dumps(read_metadata(path)["config"])}
        save_file({k: v.contiguous() for k, v in BsgdModel(PRESETS["small"]).state_dict().items()}, str(path),
                  metadata=metadata)
    elif kind == "truncated":
        save_model(path, BsgdModel(PRESETS["tiny"]))
        path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    elif kind == "newer-format":
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(1)}, str(path),
                  metadata={"format": "bsgd-model", "format_version": "7", "bsgd_version": "9.0.0", "config": "{}"})


@pytest.mark.parametrize(
    ("kind", "words"),
    [("pickle", "not a safetensors model file"), ("torch-zip", "not a safetensors model file"),
     ("wrong-shapes", "do not match"), ("truncated", "truncated"), ("newer-format", "upgrade bsgd")],
)
def test_hostile_model_file_through_cli(tmp_path: Path, kind: str, words: str) -> None:
    marker = tmp_path / "payload_ran"
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Armed(proof)))  # the payload is live: unpickling it does create a file
    assert proof.exists()
    model = tmp_path / "model.safetensors"
    _hostile_model(kind, model, marker)
    write_image(tmp_path / "a.png", noisy_image(8, 8))
    result = runner.invoke(app, ["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(model),
                                 "--mode", "bsn", "--device", "cpu"])
    assert result.exit_code == EXIT_USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(model) in lines[0], result.stderr
    assert words in lines[0]
    assert "Traceback" not in result.output
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 5. properties over image kinds


def _write_input(path: Path, samples: np.ndarray) -> None:
    """PNG: Pillow for 8-bit, our encoder for 16-bit (Pillow cannot); TIFF: tifffile."""
    if path.suffix == ".tif":
        channels = 1 if samples.ndim == 2 else samples.shape[2]
        tifffile.imwrite(path, samples, photometric="rgb" if channels >= 3 else "minisblack",
                         extrasamples=("unassalpha",) if channels in (2, 4) else None)
    elif samples.dtype == np.uint8:
        Image.fromarray(samples).save(path)
    else:
        encode_png(path, samples)


def _stored(path: Path) -> np.ndarray:
    """Samples exactly as stored, (H, W, C)."""
    if path.suffix == ".tif":
        array = tifffile.imread(path)
    else:
        from bsgd_cli.io._decode import decode_with_pillow

        array = decode_with_pillow(path, 1.0).array
    return array.reshape(*array.shape[:2], -1)


@pytest.mark.slow
# No shrinking: one example costs about a second here, and shrinking a failure would take minutes.
@settings(max_examples=25, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    height=st.integers(1, 80), width=st.integers(1, 80), depth=st.sampled_from([8, 16]),
    channels=st.sampled_from([1, 2, 3, 4]), ext=st.sampled_from([".png", ".tif"]),
    tile=st.sampled_from([32, 48, 64]), overlap=st.sampled_from([8, 16, 32]), seed=st.integers(0, 1000),
)
# One-pixel strips gave the largest seams (1.3/255 with a quadratic blend ramp): always tried.
@example(height=1, width=80, depth=8, channels=3, ext=".png", tile=32, overlap=8, seed=0)
@example(height=80, width=1, depth=16, channels=4, ext=".tif", tile=32, overlap=8, seed=0)
def test_output_keeps_size_layout_depth_and_tiles_leave_no_seams(
    tmp_path_factory, tiny, height, width, depth, channels, ext, tile, overlap, seed
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    colour = noisy_image(height, width, seed=seed)
    alpha = np.linspace(0.2, 1.0, height * width, dtype=np.float32).reshape(height, width, 1)
    planes = {1: colour.mean(axis=2, keepdims=True), 2: np.dstack([colour.mean(axis=2), alpha]),
              3: colour, 4: np.dstack([colour, alpha])}[channels]
    top = 255 if depth == 8 else 65535
    samples = np.floor(planes * top + 0.5).astype(np.uint8 if depth == 8 else np.uint16)
    samples = samples[..., 0] if channels == 1 else samples
    source = folder / f"in{ext}"
    _write_input(source, samples)
    # batch=8: all tiles of an image in one or two network calls (results do not depend on it)
    tiling = TilingConfig(tile=tile, overlap=overlap, batch=8)
    options = DenoiseOptions(sampler=SamplerOverrides(mode="bsn"), runtime=CPU, tiling=tiling, workers=1)
    [result] = denoise_paths([source], folder / "out", tiny, options)
    assert result.status == "done", result.error
    output = Path(result.output)
    stored_in, stored_out = _stored(source), _stored(output)
    assert stored_out.shape == stored_in.shape and stored_out.dtype == stored_in.dtype
    if channels in (2, 4):
        assert np.array_equal(stored_out[..., -1], stored_in[..., -1])  # alpha passes through untouched
    # Tiled (as the batch ran) against one whole-image pass: no seams, within 1/255.
    pixels = read_image(source).pixels
    tiled = denoise_array(tiny, pixels, sampler=SamplerOverrides(mode="bsn"), tiling=tiling, runtime=CPU)
    whole = denoise_array(tiny, pixels, sampler=SamplerOverrides(mode="bsn"), tiling=TilingConfig(tile=128, overlap=0),
                          runtime=CPU)
    assert np.abs(tiled - whole).max() <= 1 / 255
    written = stored_out[..., : 1 if channels <= 2 else 3].astype(np.float32) / top
    expected = tiled.mean(axis=2, keepdims=True) if channels <= 2 else tiled
    assert np.abs(written - expected).max() <= 0.5 / top + 1e-6  # the file holds what the model made


# ------------------------------------------------------------- 6. second round: signals


@pytest.mark.slow
def test_sigterm_mid_batch_is_a_clean_stop_with_summary_and_exit_143(tmp_path: Path, tiny_model_file: Path) -> None:
    """U10: what timeout, docker stop and systemd send. Before: exit 143 (killed), no message, a .partial left."""
    names = _twelve_images(tmp_path / "in")
    out = tmp_path / "out"
    args = ["denoise", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_file), *SLOW[:-1], "--json"]
    process = _run_until_outputs(args, out, 2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr_bytes = process.communicate(timeout=60)
    stderr = stderr_bytes.decode(errors="replace")
    assert process.returncode == EXIT_TERMINATED, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("terminated (SIGTERM):")]
    finished = _check_visible_outputs(out, (SIDE, SIDE))
    assert 2 <= len(finished) < len(names)
    assert f"{len(finished)} denoised" in line and f"{len(names) - len(finished)} not started" in line, line
    report = json.loads(stdout)  # the report covers what was done
    assert report["summary"]["interrupted"] == "SIGTERM" and report["summary"]["done"] == len(finished)
    assert _partials(out) == []  # the write in flight was finished, the file being denoised dropped


@pytest.mark.slow
def test_sigterm_during_training_saves_the_state(tmp_path: Path) -> None:
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    for i in range(2):
        Image.fromarray(_u8(noisy_image(48, 48, seed=i))).save(noisy / f"n{i}.png")
    run = tmp_path / "run"
    child = _spawn(
        [
            "train",
            "--noisy-dir",
            str(noisy),
            "-o",
            str(run),
            "--preset",
            "tiny",
            "--batch",
            "1",
            "--patch",
            "40",
            "--log-every",
            "1",
            "--val-every",
            "100000",
            "--checkpoint-every",
            "100000",
            "--precision",
            "fp32",
            "--device",
            "cpu",
            "-q",
            "--steps",
            "100000",
        ]
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None and not (run / "log.jsonl").is_file():
        time.sleep(0.02)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == EXIT_TERMINATED, stderr.decode(errors="replace")
    assert b"--resume" in stderr and b"Traceback" not in stderr
    assert int(read_state(run)["step"]) >= 1  # saved on the way out, though no checkpoint was due


# ---------------------------------------------------------- 7. second round: model files


def _model_with_metadata(path: Path, source: Path, **changes: str) -> None:
    """The tensors of ``source`` with its bsgd metadata changed (a valid safetensors file)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = dict(handle.metadata())
    save_file(tensors, str(path), metadata={**metadata, **changes})


def _one_error(result) -> str:
    assert result.exit_code == EXIT_USAGE, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.stderr
    return lines[0]


def test_absurd_widths_in_metadata_are_refused_before_building(tmp_path: Path, tiny_model_file: Path) -> None:  # B6
    config = read_metadata(tiny_model_file)["config"]
    for where, width in (("blind_spot", 10**7), ("unet", 4096 * 1024)):
        changed = json.loads(json.dumps(config))
        changed[where]["width"] = width
        model = tmp_path / f"absurd_{where}.safetensors"
        _model_with_metadata(model, tiny_model_file, config=json.dumps(changed))
        write_image(tmp_path / "a.png", noisy_image(8, 8))
        result = runner.invoke(
            app, ["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(model)]
        )
        line = _one_error(result)
        assert str(model) in line and "out of range" in line
    # Within range but not what the tensors hold: refused from the header, before the weights are read.
    changed = json.loads(json.dumps(config))
    changed["unet"]["width"] = 16
    model = tmp_path / "other_width.safetensors"
    _model_with_metadata(model, tiny_model_file, config=json.dumps(changed))
    line = _one_error(
        runner.invoke(app, ["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(model)])
    )
    assert "weights do not match the stored config" in line and "of another shape" in line
    assert not (tmp_path / "out").exists()


def test_models_lists_a_broken_user_model_as_unreadable_and_goes_on(
    tmp_path: Path, tiny_model_file: Path, monkeypatch
) -> None:  # B7
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_model_file, folder / "good.safetensors")
    _model_with_metadata(folder / "listcfg.safetensors", tiny_model_file, config="[1, 2]")
    _model_with_metadata(folder / "listsampler.safetensors", tiny_model_file, sampler="[]")
    _model_with_metadata(folder / "badversion.safetensors", tiny_model_file, format_version="seven")
    (folder / "random.safetensors").write_bytes(os.urandom(4000))
    os.mkfifo(folder / "pipe.safetensors")  # must not hang
    os.symlink(folder / "gone", folder / "dangling.safetensors")
    monkeypatch.setenv("BSGD_MODEL_DIR", str(folder))
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    from bsgd_cli.catalogue import list_models

    rows = {row["name"]: row["measured"] for row in list_models()}
    assert not rows["good"].startswith("unreadable") and not rows["default"].startswith("unreadable")
    for name in ("listcfg", "listsampler", "badversion", "random", "pipe", "dangling"):
        assert rows[name].startswith("unreadable:"), (name, rows[name])
    assert "unreadabl" in result.stdout  # the command shows them (the table folds long cells)
    assert "config is a list" in rows["listcfg"] and "named pipe" in rows["pipe"]


def test_random_bytes_state_is_one_line(tmp_path: Path) -> None:  # U11
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.pt").write_bytes(os.urandom(5000))
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    Image.fromarray(_u8(noisy_image(48, 48))).save(noisy / "n.png")
    result = runner.invoke(app, ["train", "--noisy-dir", str(noisy), "-o", str(run), "--preset", "tiny", "--resume"])
    line = _one_error(result)
    assert "state.pt: not a bsgd training state" in line and "without --resume" in line
    torch.save({"step": 3}, run / "state.pt")  # torch's own format, another program's content
    line = _one_error(
        runner.invoke(app, ["train", "--noisy-dir", str(noisy), "-o", str(run), "--preset", "tiny", "--resume"])
    )
    assert "not a bsgd training state (no model_config" in line


def test_model_path_that_is_a_folder_or_a_pipe(tmp_path: Path, tiny_model_file: Path) -> None:  # U12
    write_image(tmp_path / "a.png", noisy_image(8, 8))
    denoise = ["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model"]
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert "is a folder, not a model file; it holds no .safetensors" in _one_error(
        runner.invoke(app, [*denoise, str(empty)])
    )
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_model_file, run / "best.safetensors")
    assert "give one of the model files in it (best.safetensors)" in _one_error(
        runner.invoke(app, [*denoise, str(run)])
    )
    os.mkfifo(tmp_path / "pipe.safetensors")
    assert "named pipe" in _one_error(runner.invoke(app, [*denoise, str(tmp_path / "pipe.safetensors")]))
    shutil.copy(tiny_model_file, run / "model.safetensors")  # a training run's folder stands for its model
    assert runner.invoke(app, [*denoise, str(run), "--mode", "bsn", "-q"]).exit_code == 0
