"""The allowed range of every numeric setting, in one place, and the checks that use them.

The command line attaches a :class:`Bounds` to each numeric option (a parser that refuses a bad value
with one line before any work starts), and the library checks the same bounds where a value enters
it (:class:`bsgd_cli.config.SamplerConfig`, :func:`bsgd_cli.batch.denoise.denoise_paths`, ...), so API
users get the same refusals. Non-finite values (nan, inf) are never in range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Bounds:
    """A closed range ``[low, high]`` (``low`` itself excluded when ``low_open``); None: unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False

    def _show(self, value: float) -> str:
        return str(int(value)) if self.integer else f"{value:g}"

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a finite number"
        low = None if self.low is None else self._show(self.low)
        high = None if self.high is None else self._show(self.high)
        if low is not None and high is not None:
            return f"{kind} above {low} and at most {high}" if self.low_open else f"{kind} from {low} to {high}"
        if low is not None:
            return f"{kind} above {low}" if self.low_open else f"{kind} of at least {low}"
        if high is not None:
            return f"{kind} of at most {high}"
        return kind

    def problem(self, value: float, shown: str | None = None) -> str | None:
        """None when ``value`` is allowed, else 'must be ..., got VALUE' (``shown``: the value as typed)."""
        bad = isinstance(value, bool) or not isinstance(value, int | float)
        if not bad:
            bad = not math.isfinite(value) or (self.integer and not float(value).is_integer())
        if not bad and self.low is not None:
            bad = value <= self.low if self.low_open else value < self.low
        if not bad and self.high is not None:
            bad = value > self.high
        return f"must be {self.describe()}, got {shown if shown is not None else value}" if bad else None

    def check(self, name: str, value: float | None) -> None:
        """Raise :class:`ConfigError` naming ``name`` unless ``value`` is None or allowed."""
        if value is None:
            return
        problem = self.problem(value)
        if problem is not None:
            raise ConfigError(f"{name} {problem}")


def _whole(low: float | None = None, high: float | None = None) -> Bounds:
    return Bounds(low, high, integer=True)


SEED = _whole(0, 2**63 - 1)
# Sampler (denoise, benchmark): the reported good settings are w 0.7-0.8, 8-16 steps, a few runs
# (../shared/design/method.md); w > 1 extrapolates. The caps stop a typo from starting a job of days.
GUIDANCE = Bounds(0.0, 3.0)
STEPS = _whole(1, 100)
RUNS = _whole(1, 32)
T_START = Bounds(0.0, 1.0)
T_START_NOISE = Bounds(0.0, 20.0)
STRENGTH = Bounds(0.0, 1.0)
WIENER_NOISE = Bounds(0.01, 100.0)
WIENER_PASSES = _whole(1, 8)
FUSION_WINDOW = _whole(3, 31)
FUSION_SCALE = Bounds(0.0, 100.0, low_open=True)
PROBABILITY = Bounds(0.0, 1.0)
# Images: a size limit above 10 gigapixels is no limit (a 50 MP photo peaks at 2 GB here).
MEGAPIXELS = Bounds(0.0, 10_000.0, low_open=True)
TILE = _whole(16, 65_536)
OVERLAP = _whole(0, 32_768)
TILE_BATCH = _whole(1, 1024)
WORKERS = _whole(1, 64)
QUALITY = _whole(1, 100)
# Training and distillation.
LEARNING_RATE = Bounds(0.0, 1.0, low_open=True)
TRAIN_STEPS = _whole(1, 100_000_000)
TRAIN_BATCH = _whole(1, 4096)
PATCH = _whole(8, 4096)
EVERY = _whole(1, 100_000_000)
PD_STRIDE = _whole(1, 16)
STUDENT_WIDTH = _whole(4, 512)
CROPS_PER_IMAGE = _whole(1, 1000)
CROP = _whole(32, 4096)
MINUTES = Bounds(0.0, 100_000.0, low_open=True)
ROUNDS = _whole(1, 20)
SHARE = Bounds(0.0, 1.0)
BIT_DEPTHS = (8, 16)
EIGHT_BIT_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".webp", ".avif", ".jxl")


def check_bit_depth(bit_depth: int | None, ext: str) -> None:
    """``--bit-depth`` is 8 or 16, and 16 only for an output format that can hold it."""
    if bit_depth is None:
        return
    if bit_depth not in BIT_DEPTHS:
        raise ConfigError(f"--bit-depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and "." + ext.lower() in EIGHT_BIT_EXTENSIONS:
        raise ConfigError(
            f"--bit-depth 16 cannot be stored in {ext.upper()}, which holds 8 bits; "
            "use --ext png or --ext tif, or leave --bit-depth out"
        )
