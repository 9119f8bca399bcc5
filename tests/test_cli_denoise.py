"""`bsgd denoise` end to end through Typer's runner on generated images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bsgd_cli.cli import app

from .conftest import noisy_image

runner = CliRunner()


def _u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(_u8(noisy_image(40, 56, 1))).save(folder / "a.png")
    Image.fromarray(_u8(noisy_image(48, 32, 2))).save(folder / "b.jpg", quality=95)
    Image.fromarray(_u8(noisy_image(36, 36, 3))).save(folder / "sub" / "c.png")
    return folder


def _denoise(args: list[str], model: Path):
    return runner.invoke(app, ["denoise", *args, "--model", str(model), "--mode", "bsn", "--quiet"])


def test_folder_in_mirrored_tree_out(photos: Path, tmp_path: Path, tiny_model_file: Path) -> None:
    out = tmp_path / "clean"
    result = _denoise([str(photos), "-o", str(out), "--recursive"], tiny_model_file)
    assert result.exit_code == 0, result.output
    assert (out / "a.png").is_file() and (out / "b.jpg").is_file() and (out / "sub" / "c.png").is_file()
    with Image.open(out / "a.png") as image:
        assert image.size == (56, 40) and image.mode == "RGB"
    assert not list(out.rglob("*.partial*"))


def test_rerun_skips_existing_and_overwrite_redoes(photos: Path, tmp_path: Path, tiny_model_file: Path) -> None:
    out = tmp_path / "clean"
    assert _denoise([str(photos / "a.png"), "-o", str(out)], tiny_model_file).exit_code == 0
    stamp = (out / "a.png").stat().st_mtime_ns
    result = runner.invoke(
        app,
        ["denoise", str(photos / "a.png"), "-o", str(out), "--model", str(tiny_model_file), "--mode", "bsn", "--json"],
    )
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["files"][0]["status"] == "skipped"
    assert (out / "a.png").stat().st_mtime_ns == stamp
    result = runner.invoke(
        app,
        [
            "denoise",
            str(photos / "a.png"),
            "-o",
            str(out),
            "--model",
            str(tiny_model_file),
            "--mode",
            "bsn",
            "--json",
            "--overwrite",
        ],
    )
    assert json.loads(result.stdout)["files"][0]["status"] == "done"


def test_bad_file_in_batch_is_reported_and_rest_done(photos: Path, tmp_path: Path, tiny_model_file: Path) -> None:
    (photos / "broken.jpg").write_bytes(b"this is not a jpeg")
    (photos / "empty.png").write_bytes(b"")
    out = tmp_path / "clean"
    result = runner.invoke(
        app, ["denoise", str(photos), "-o", str(out), "--model", str(tiny_model_file), "--mode", "bsn", "--json"]
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    status = {Path(f["input"]).name: f["status"] for f in report["files"]}
    assert status == {"a.png": "done", "b.jpg": "done", "broken.jpg": "failed", "empty.png": "failed"}
    errors = [f["error"] for f in report["files"] if f["status"] == "failed"]
    assert all("broken.jpg" in e or "empty.png" in e for e in errors)
    assert "Traceback" not in result.output


def test_name_collisions_never_overwrite(tmp_path: Path, tiny_model_file: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_u8(noisy_image(32, 32, 1))).save(folder / "x.png")
    Image.fromarray(_u8(noisy_image(32, 32, 2))).save(folder / "x.jpg")
    out = tmp_path / "out"
    result = _denoise([str(folder), "-o", str(out), "--ext", "png"], tiny_model_file)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["x_jpg.png", "x_png.png"]


def test_output_into_input_folder_needs_flag(photos: Path, tiny_model_file: Path) -> None:
    result = _denoise([str(photos / "a.png"), "-o", str(photos)], tiny_model_file)
    assert result.exit_code == 2
    assert "--in-place" in result.output
    result = _denoise([str(photos / "a.png"), "-o", str(photos), "--in-place"], tiny_model_file)
    assert result.exit_code == 2  # would replace the input itself
    result = _denoise([str(photos / "a.png"), "-o", str(photos), "--in-place", "--suffix", "_dn"], tiny_model_file)
    assert result.exit_code == 0 and (photos / "a_dn.png").is_file()


def test_sixteen_bit_png_stays_sixteen_bit(tmp_path: Path, tiny_model_file: Path) -> None:
    from bsgd_cli.io import read_image, write_image

    source = tmp_path / "deep.png"
    write_image(source, noisy_image(40, 40), bit_depth=16)
    assert read_image(source).bit_depth == 16
    out = tmp_path / "out"
    assert _denoise([str(source), "-o", str(out)], tiny_model_file).exit_code == 0
    assert read_image(out / "deep.png").bit_depth == 16


def test_compare_view_and_suffix(photos: Path, tmp_path: Path, tiny_model_file: Path) -> None:
    out = tmp_path / "out"
    result = _denoise([str(photos / "a.png"), "-o", str(out), "--suffix", "_dn", "--compare"], tiny_model_file)
    assert result.exit_code == 0, result.output
    assert (out / "a_dn.png").is_file()
    with Image.open(out / "a_dn_compare.png") as view:
        assert view.size[0] > 2 * 56 - 1


def test_missing_model_and_input_are_one_line_errors(photos: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["denoise", str(photos), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "none.safetensors")]
    )
    assert result.exit_code == 2 and "not found" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["denoise", str(tmp_path / "nothing"), "-o", str(tmp_path / "o"), "--mode", "bsn"])
    assert result.exit_code == 2 and "not found" in result.output


@pytest.mark.slow
def test_bsgd_mode_through_cli_is_deterministic(photos: Path, tmp_path: Path, tiny_model_file: Path) -> None:
    outputs = []
    for name in ("one", "two"):
        result = runner.invoke(app, ["denoise", str(photos / "a.png"), "-o", str(tmp_path / name), "--model",
                                     str(tiny_model_file), "--mode", "bsgd", "--steps", "2", "--runs", "2", "-q"])
        assert result.exit_code == 0, result.output
        outputs.append(np.asarray(Image.open(tmp_path / name / "a.png")))
    assert np.array_equal(outputs[0], outputs[1])


def test_wiener_noise_auto_chooses_on_the_photos(photos: Path, tmp_path: Path, tiny_model_file: Path) -> None:
    """--wiener-noise auto picks a candidate scale on the inputs, says so, and denoises them all with it."""
    from bsgd_cli.engine.wiener_choice import CANDIDATE_SCALES

    out = tmp_path / "out"
    result = runner.invoke(app, ["denoise", str(photos), "-o", str(out), "-r", "--model", str(tiny_model_file),
                                 "--mode", "fast", "--wiener-noise", "auto"])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if "chosen on 3 of these photos" in line]
    assert said, result.output
    chosen = float(said[0].split("Wiener noise scale ")[1].split(",")[0])
    assert chosen in CANDIDATE_SCALES and chosen != 3.0  # the tiny model stores 3: the check below can tell
    assert len(list(out.rglob("*.*"))) == 3
    # the photos were denoised with the chosen scale: the same files as when it is given as a number
    given = tmp_path / "given"
    result = runner.invoke(app, ["denoise", str(photos), "-o", str(given), "-r", "--model", str(tiny_model_file),
                                 "--mode", "fast", "--wiener-noise", f"{chosen:g}", "-q"])
    assert result.exit_code == 0, result.output
    for path in out.rglob("*.*"):
        assert path.read_bytes() == (given / path.relative_to(out)).read_bytes(), path


@pytest.mark.parametrize(("extra", "message"), [(["--mode", "bsgd"], "calibrated for the modes fast and bsn"),
                                                (["--mode", "fast", "--no-wiener"], "drop --no-wiener")])
def test_wiener_noise_auto_is_refused_where_it_was_not_calibrated(photos: Path, tmp_path: Path,
                                                                   tiny_model_file: Path, extra: list[str],
                                                                   message: str) -> None:
    result = runner.invoke(app, ["denoise", str(photos), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file),
                                 "--wiener-noise", "auto", *extra])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_the_choice_reads_a_spread_of_the_files(tmp_path: Path, tiny) -> None:
    from bsgd_cli.batch.wiener_choice import choose_on_files, spread
    from bsgd_cli.engine.runtime import resolve_runtime

    paths = [Path(f"{index:02d}.png") for index in range(30)]
    picked = spread(paths, 12)
    assert len(picked) == 12 and picked[0] == paths[0] and picked[-1] == paths[-1] and len(set(picked)) == 12
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert choose_on_files(tiny, [broken], mode="fast", runtime=resolve_runtime("cpu", "auto")) is None


@pytest.mark.slow
def test_the_real_entry_point_ends_quickly_with_every_output_written(tmp_path: Path, tiny_model_file: Path) -> None:
    # bsgd's main() skips the interpreter's teardown after denoise: the outputs, the JSON on stdout,
    # the exit code (1: one file failed) and atexit's work must all survive it.
    import subprocess
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_u8(noisy_image(40, 56, 1))).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    marker, torn = tmp_path / "atexit-ran", tmp_path / "torn-down"
    code = (
        "import atexit, pathlib, sys\n"
        f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')\n"
        "class Teardown:\n"
        f"    def __del__(self): pathlib.Path({str(torn)!r}).write_text('yes')\n"
        "kept = Teardown()\n"
        "from bsgd_cli.cli import main\n"
        f"sys.argv = ['bsgd', 'denoise', {str(folder)!r}, '-o', {str(tmp_path / 'out')!r}, '--model', "
        f"{str(tiny_model_file)!r}, '--json']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"]["done"] == 1 and report["summary"]["failed"] == 1
    assert Image.open(tmp_path / "out" / "good.png").size == (56, 40)
    assert marker.read_text() == "yes"
    assert not torn.exists()  # the teardown was skipped: with it, the object above is freed and writes
