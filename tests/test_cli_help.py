"""The help screens: every option explained, grouped in panels, and readable in an 80-column terminal."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from bsgd_cli.cli import app

runner = CliRunner()
COMMANDS = ["denoise", "train", "distill", "benchmark", "models", "samples", "plot"]


def _commands() -> dict:
    group = typer.main.get_command(app)
    return group.commands  # type: ignore[attr-defined]


def test_every_option_and_argument_has_help() -> None:
    missing = []
    for name, command in _commands().items():
        assert command.help, f"bsgd {name} has no help text"
        for param in command.params:
            if getattr(param, "hidden", False) or param.name == "help":
                continue
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"bsgd {name} {param.opts[0]}")
    assert not missing, f"options without help: {', '.join(missing)}"


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_fits_80_columns_uncut(command: str) -> None:
    result = runner.invoke(app, [command, "--help"] if command else ["--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output, result.output  # nothing cut short
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_denoise_options_are_grouped_in_panels() -> None:
    text = runner.invoke(app, ["denoise", "--help"], env={"COLUMNS": "100"}).output
    for panel in ("Sampler", "Tiling & device", "Output", "Batch"):
        assert f"─ {panel} " in text, panel
    assert "--output" in text and "-o" in text


def test_every_command_that_writes_takes_dash_o() -> None:
    for name in ("denoise", "train", "distill", "benchmark", "samples", "plot"):
        opts = {opt for param in _commands()[name].params for opt in param.opts}
        assert {"-o", "--output"} <= opts, name


def test_models_fits_80_columns(monkeypatch, tiny_model_file) -> None:
    monkeypatch.setenv("BSGD_MODEL_DIR", str(tiny_model_file.parent))
    result = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "…" not in result.output
    for label in ("size", "branches", "training data", "sampler", "measured", "path"):
        assert f"  {label}" in result.output
    assert "default" in result.output and "tiny" in result.output  # one block per model
    assert "later on strong noise: c=3" in " ".join(result.output.split())  # selfdistilled's start rule


@pytest.mark.slow
def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom bsgd_cli.cli import app\ntry:\n    app(['denoise', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "False"
