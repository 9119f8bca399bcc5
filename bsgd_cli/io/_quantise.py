"""Float [0, 1] pixels to integer samples, a band of rows at a time (bit for bit the whole-array formula)."""

from __future__ import annotations

import numpy as np

QUANTISE_ROWS = 256
"""Rows converted at a time when writing: the float temporaries stay a band, not a whole 50 MP image."""


def clean_unit(x: np.ndarray) -> np.ndarray:
    """A float32 copy of ``x`` with NaN and -Inf as 0, +Inf as 1, everything clipped to [0, 1]."""
    part = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0, copy=True)
    return np.clip(part, 0.0, 1.0, out=part)


def quantise_rows(x: np.ndarray, top: float, dtype: type) -> np.ndarray:
    """``floor(clean_unit(x) * top + 0.5)`` as ``dtype``, a band of rows at a time (bit for bit the
    whole-array formula; peak memory the output plus one band)."""
    out: np.ndarray = np.empty(x.shape, dtype=dtype)
    for start in range(0, x.shape[0], QUANTISE_ROWS):
        part = clean_unit(x[start : start + QUANTISE_ROWS])
        part *= top
        part += 0.5
        out[start : start + QUANTISE_ROWS] = np.floor(part, out=part)
    return out
