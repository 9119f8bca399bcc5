"""Precision by hardware: bf16 only where the device computes it natively (engine/runtime.py).

On a CPU with only AVX2, oneDNN emulates bf16 many times slower than fp32 and its fused convolutions
refuse it, so "auto" must mean fp32 there, a stored bf16 recipe must run in fp32, and an explicit
``--precision bf16`` must be refused before any work. The CPU's answer is patched both ways, so every
machine runs every branch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bsgd_cli.checkpoint import load_model
from bsgd_cli.cli import app
from bsgd_cli.config import SamplerOverrides
from bsgd_cli.engine import runtime
from bsgd_cli.engine.denoise import denoise_array
from bsgd_cli.errors import ConfigError

CPU = torch.device("cpu")


@pytest.fixture(params=[True, False], ids=["native-bf16", "no-native-bf16"])
def native(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(runtime, "_cpu_bf16", lambda: request.param)
    return bool(request.param)


def test_auto_is_bf16_only_where_the_cpu_computes_it(native: bool) -> None:
    expected = "bf16" if native else "fp32"
    assert runtime.resolve_precision("auto", "fast", CPU) == expected
    assert runtime.Runtime(CPU, "auto").precision_for("bsgd") == expected
    assert runtime.training_precision("auto", CPU) == expected
    assert runtime.resolve_precision("fp32", "fast", CPU) == runtime.training_precision("fp32", CPU) == "fp32"


def test_explicit_bf16_is_refused_up_front_without_native_bf16(native: bool) -> None:
    if native:
        assert runtime.check_runtime("cpu", "bf16") == CPU
        return
    with pytest.raises(ConfigError, match="no native bf16.*use --precision auto or fp32"):
        runtime.check_runtime("cpu", "bf16")
    result = CliRunner().invoke(app, ["denoise", "missing.png", "-o", "out", "--device", "cpu", "--precision", "bf16"])
    assert result.exit_code == 2 and "no native bf16" in result.output


def test_a_stored_bf16_recipe_runs_in_fp32_without_native_bf16(native: bool) -> None:
    with runtime.autocast_context(CPU, "bf16"):
        assert torch.is_autocast_enabled("cpu") is native
        out = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)


def test_auto_denoises_exactly_as_fp32_without_native_bf16(tiny_model_file: Path, monkeypatch) -> None:
    monkeypatch.setattr(runtime, "_cpu_bf16", lambda: False)
    model = load_model(tiny_model_file)
    image = np.random.default_rng(3).random((40, 44, 3), dtype=np.float32)
    for mode in ("fast", "bsn"):
        outputs = [denoise_array(model, image, sampler=SamplerOverrides(mode=mode), runtime=runtime.Runtime(CPU, p))
                   for p in ("auto", "fp32")]
        np.testing.assert_array_equal(outputs[0], outputs[1])
